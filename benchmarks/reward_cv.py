"""The train_reward stage's reward model under k-fold cross-validation: every pair predicted once, with a CI.

    python benchmarks/reward_cv.py [--pairs FILE] [--folds 5] [--variant LABEL:key=value,key=value ...]
                                   [--save-dir DIR] [--reuse]

A single 85/15 split of 1,200 pairs scores 180 held-out pairs, whose accuracy has a standard error of about
0.036: too wide to tell two settings apart. Here the pairs are grouped by their prompt (the dialogue before the
final assistant turn, case and whitespace folded), the groups are dealt into ``--folds`` folds by a hash of the
prompt, and each fold is predicted by a model trained on the others: 1,200 predictions per variant.

Each ``--variant`` is a label and ``reward`` overrides (``mean``, ``cls:pooling=cls``,
``len256:max_length=256``, ``ep3:epochs=3,lr=3e-5``); ``default`` is the params' own settings. A variant's
predictions are saved to ``--save-dir/<label>.json``; at the end every saved variant is compared with the first
one listed: accuracy with a 95% bootstrap CI that resamples prompts, and the paired difference (the same pairs,
the same folds) with its own CI. A setting is better only where that CI excludes 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tasks  # noqa: E402,F401
from benchmarks.cpu import describe as cpu_line  # noqa: E402
from tasks.config import load_params  # noqa: E402
from tasks.evalmath import bootstrap_ci  # noqa: E402
from tasks.heldout import split_point  # noqa: E402
from tasks.io import read_jsonl  # noqa: E402
from tasks.text import normalize  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "train-1200.jsonl"
TURN = "\n\nAssistant:"


def prompt_of_pair(chosen: str, rejected: str) -> str:
    """The dialogue both texts share, up to the start of the final assistant turn."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    shared = chosen[:n]
    cut = shared.rfind(TURN)
    return normalize(shared[:cut] if cut >= 0 else shared)


def fold_of(key: str, folds: int, salt: str = "reward-cv") -> int:
    return min(folds - 1, int(split_point(key, salt) * folds))


def correct(chosen_score: float, rejected_score: float) -> float:
    """1 when the chosen text scores higher, 0 when lower, 0.5 for a tie."""
    return 1.0 if chosen_score > rejected_score else 0.0 if chosen_score < rejected_score else 0.5


def parse_variant(text: str) -> tuple[str, dict]:
    label, _, spec = text.partition(":")
    overrides = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = value
    return label, overrides


def typed(cfg, overrides: dict):
    out = {}
    for key, value in overrides.items():
        current = getattr(cfg, key)
        out[key] = (value.lower() in ("1", "true", "yes")) if isinstance(current, bool) else type(current)(value)
    return dataclasses.replace(cfg, **out)


def run_variant(cfg, pairs: list[tuple[str, str]], groups: list[str], folds: int) -> dict:
    from tasks.reward import train_reward_model
    from tasks.rewardmodel import RewardModel

    fold = [fold_of(g, folds) for g in groups]
    preds: list[float | None] = [None] * len(pairs)
    seconds = []
    for k in range(folds):
        train = [p for p, f in zip(pairs, fold) if f != k]
        held = [i for i, f in enumerate(fold) if f == k]
        with tempfile.TemporaryDirectory() as out:
            stats = train_reward_model(train, [], cfg, Path(out))
            rm = RewardModel(out, cfg.max_length)
            chosen = rm.score([pairs[i][0] for i in held])
            rejected = rm.score([pairs[i][1] for i in held])
        for i, c, r in zip(held, chosen, rejected):
            preds[i] = correct(c, r)
        seconds.append(stats["train_seconds"])
        acc = sum(preds[i] for i in held) / len(held)
        print(f"  fold {k + 1}/{folds}: train {len(train)} pairs in {stats['train_seconds']:.1f} s, "
              f"held-out {len(held)} pairs, accuracy {acc:.4f}", flush=True)
    return {"correct": preds, "groups": groups, "train_seconds": seconds}


def summary(base_label: str, runs: dict[str, dict]) -> list[str]:
    lines = []
    base = runs[base_label]
    for label, run in runs.items():
        c, g = run["correct"], run["groups"]
        lo, hi = bootstrap_ci(c, g)
        line = (f"{label}: accuracy {sum(c) / len(c):.4f} (95% CI {lo:.4f}-{hi:.4f}) over {len(c)} pairs, "
                f"train {sum(run['train_seconds']) / len(run['train_seconds']):.0f} s per fold")
        if label != base_label and g == base["groups"]:
            diff = [a - b for a, b in zip(c, base["correct"])]
            dlo, dhi = bootstrap_ci(diff, g)
            verdict = "differs" if dlo > 0 or dhi < 0 else "within noise"
            line += (f"; minus {base_label}: {sum(diff) / len(diff):+.4f} (95% CI {dlo:+.4f} to {dhi:+.4f}, "
                     f"{verdict})")
        lines.append(line)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, default=DEFAULT)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--variant", action="append", default=None)
    ap.add_argument("--save-dir", type=Path, default=Path("reports/reward_cv"))
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--limit", type=int, default=None, help="the first N pairs only (a quick check)")
    ap.add_argument("--reuse", action="store_true", help="a variant saved in --save-dir with the same overrides "
                    "and pairs is read back, not trained again")
    args = ap.parse_args()
    print(cpu_line(), flush=True)
    if not args.pairs.exists():
        print(f"skipped: {args.pairs} not found (pass --pairs FILE with HH-format chosen/rejected dialogues)")
        return 0
    base_cfg = load_params(args.params).reward
    rows = read_jsonl(args.pairs)[:args.limit]
    pairs = [(r["chosen"], r["rejected"]) for r in rows]
    groups = [prompt_of_pair(c, r) for c, r in pairs]
    args.save_dir.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(v) for v in (args.variant or ["default"])]
    for label, overrides in variants:
        saved = args.save_dir / f"{label}.json"
        if args.reuse and saved.exists():
            old = json.loads(saved.read_text())
            if old.get("overrides") == overrides and old["groups"] == groups:
                print(f"{label}: read back from {saved}", flush=True)
                continue
        cfg = typed(base_cfg, overrides)
        print(f"{label}: pooling={cfg.pooling} max_length={cfg.max_length} epochs={cfg.epochs} lr={cfg.lr} "
              f"{args.folds} folds over {len(pairs)} pairs, {len(set(groups))} prompts", flush=True)
        t0 = time.perf_counter()
        run = run_variant(cfg, pairs, groups, args.folds)
        run.update(label=label, overrides=overrides, wall_seconds=time.perf_counter() - t0)
        (args.save_dir / f"{label}.json").write_text(json.dumps(run))
    runs = {label: json.loads((args.save_dir / f"{label}.json").read_text()) for label, _ in variants}
    runs.update({p.stem: json.loads(p.read_text()) for p in sorted(args.save_dir.glob("*.json"))
                 if p.stem not in runs})
    for line in summary(variants[0][0], runs):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

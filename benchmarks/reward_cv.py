"""The train_reward stage's reward model under k-fold cross-validation: every pair predicted once, with a CI.

    python benchmarks/reward_cv.py [--pairs FILE] [--folds 5] [--variant LABEL:key=value,key=value ...]
                                   [--ensemble LABEL=A+B+C ...] [--save-dir DIR] [--reuse] [--lengths]

A single 85/15 split of 1,200 pairs scores 180 held-out pairs, whose accuracy has a standard error of about
0.036: too wide to tell two settings apart. Here the pairs are grouped by their prompt (the dialogue before the
final assistant turn, case and whitespace folded), the groups are dealt into ``--folds`` folds by a hash of the
prompt, and each fold is predicted by a model trained on the others: 1,200 predictions per variant.

Each ``--variant`` is a label and ``reward`` overrides (``mean``, ``cls:pooling=cls``,
``len256:max_length=256``, ``ep3:epochs=3,lr=3e-5``); ``default`` is the params' own settings.
``--ensemble ENS=a+b+c`` scores the mean of saved variants' scores (one setting under three seeds, say), its
training time the members' added up. A variant's predictions and scores are saved to ``--save-dir/<label>.json``;
at the end every saved variant is compared with the first one listed: accuracy with a 95% bootstrap CI that resamples prompts, and the paired difference (the same pairs,
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

from tasks.runtime import setup_process  # noqa: E402

setup_process()                 # an entry point: offline, no telemetry, threads, before torch loads
from benchmarks.cpu import describe as cpu_line  # noqa: E402
from tasks.evalmath import bootstrap_ci  # noqa: E402
from tasks.heldout import split_point  # noqa: E402
from tasks.io import read_jsonl  # noqa: E402
from tasks.manifest import load_params  # noqa: E402
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


def final_exchange(text: str) -> str:
    """The last human turn and the reply to it: the part of a dialogue a pair's two texts differ in and answer."""
    cut = text.rfind("\n\nHuman:")
    return text[cut:] if cut >= 0 else text


def length_report(pairs: list[tuple[str, str]], base_cfg) -> list[str]:
    """How often left truncation at 128 and 256 tokens cuts into the final exchange, and into the dialogue."""
    from tasks.reward_training import base_path, load_tokenizer

    tok = load_tokenizer(base_path(base_cfg), 100_000)
    texts = [t for pair in pairs for t in pair]
    whole = [len(tok(t)["input_ids"]) for t in texts]
    final = [len(tok(final_exchange(t))["input_ids"]) for t in texts]
    lines = []
    for name, lengths in (("whole dialogue", whole), ("final exchange", final)):
        ranked = sorted(lengths)
        over = ", ".join(f"{sum(n > m for n in lengths) / len(lengths):.1%} over {m}" for m in (128, 256))
        lines.append(f"{name}: median {ranked[len(ranked) // 2]} tokens, 90th percentile "
                     f"{ranked[int(len(ranked) * 0.9)]}; {over} (of {len(lengths)} texts, [CLS] and [SEP] counted)")
    return lines


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
    from tasks.reward_model import RewardModel
    from tasks.reward_training import train_reward_model

    fold = [fold_of(g, folds) for g in groups]
    preds: list[float | None] = [None] * len(pairs)
    scores: list[list[float] | None] = [None] * len(pairs)
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
            scores[i] = [c, r]
        seconds.append(stats["train_seconds"])
        acc = sum(preds[i] for i in held) / len(held)
        print(f"  fold {k + 1}/{folds}: train {len(train)} pairs in {stats['train_seconds']:.1f} s, "
              f"held-out {len(held)} pairs, accuracy {acc:.4f}", flush=True)
    return {"correct": preds, "scores": scores, "groups": groups, "train_seconds": seconds}


def ensemble(members: list[dict]) -> dict:
    """The mean of the members' scores for each text (each member trained on the same folds with another seed),
    judged like one model; its training time is the members' times added up."""
    if any("scores" not in m for m in members) or len({tuple(m["groups"]) for m in members}) != 1:
        raise SystemExit("an ensemble needs members saved with their scores, over the same pairs")
    mean = [[sum(m["scores"][i][j] for m in members) / len(members) for j in (0, 1)]
            for i in range(len(members[0]["scores"]))]
    return {"correct": [correct(c, r) for c, r in mean], "scores": mean, "groups": members[0]["groups"],
            "train_seconds": [sum(t) for t in zip(*(m["train_seconds"] for m in members))],
            "members": [m["label"] for m in members]}


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
    ap.add_argument("--ensemble", action="append", default=[], metavar="LABEL=A+B+C",
                    help="also score the mean of saved variants A, B, C (the same settings, other seeds)")
    ap.add_argument("--lengths", action="store_true", help="only report how often 128 and 256 tokens cut into "
                    "the final exchange (the last human turn and its reply) and into the whole dialogue")
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
    if args.lengths:
        print("\n".join(length_report(pairs, base_cfg)))
        return 0
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
              f"seed={cfg.seed} "
              f"{args.folds} folds over {len(pairs)} pairs, {len(set(groups))} prompts", flush=True)
        t0 = time.perf_counter()
        run = run_variant(cfg, pairs, groups, args.folds)
        run.update(label=label, overrides=overrides, wall_seconds=time.perf_counter() - t0)
        (args.save_dir / f"{label}.json").write_text(json.dumps(run))
    for spec in args.ensemble:
        label, _, names = spec.partition("=")
        run = ensemble([json.loads((args.save_dir / f"{n}.json").read_text()) for n in names.split("+")])
        (args.save_dir / f"{label}.json").write_text(json.dumps(dict(run, label=label)))
    runs = {label: json.loads((args.save_dir / f"{label}.json").read_text()) for label, _ in variants}
    runs.update({p.stem: json.loads(p.read_text()) for p in sorted(args.save_dir.glob("*.json"))
                 if p.stem not in runs})
    for line in summary(variants[0][0], runs):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

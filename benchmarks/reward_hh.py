"""Train the train_reward stage's reward model on HH-RLHF-format pairs and report held-out accuracy.

    python benchmarks/reward_hh.py [--train FILE] [--eval FILE] [--seeds 0 1 2] [--max-length N] [--epochs E]
                                   [--lr LR] [--center C] [--pooling cls|mean]

Any JSONL of ``{"chosen": ..., "rejected": ...}`` full dialogues works. Without
``--eval``, each seed splits the training file 85/15 at random with that seed
(so the seeds differ in both the split and the training), and the run reports
the mean and standard deviation of held-out accuracy over the seeds. The model,
tokenizer, left truncation and trainer are exactly the stage's
(``tasks.reward_training.train_reward_model``), with ``reward`` settings from
``params.yaml`` unless overridden here. The last line is
``heldout_accuracy=<mean> sd=<sd> seeds=<n>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.runtime import setup_process  # noqa: E402

setup_process()                 # an entry point: offline, no telemetry, threads, before torch loads
from tasks.errors import RFTError  # noqa: E402
from tasks.io import read_jsonl  # noqa: E402
from tasks.manifest import load_params  # noqa: E402
from tasks.reward_training import train_reward_model  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "train-1200.jsonl"


def load_pairs(path: Path) -> list[tuple[str, str]]:
    return [(r["chosen"], r["rejected"]) for r in read_jsonl(path)]


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cpu import describe as cpu_line  # noqa: E402  (the CPU and its bf16 flags, printed first)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=DEFAULT)
    ap.add_argument("--eval", type=Path, default=None)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--center", type=float, default=None, help="center_rewards_coefficient")
    ap.add_argument("--pooling", choices=("cls", "mean"), default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--eval-fraction", type=float, default=0.15)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = ap.parse_args()
    print(cpu_line(), flush=True)          # the CPU and its bf16 flags (benchmarks/cpu.py)

    if not args.train.exists():
        print(f"skipped: {args.train} not found (pass --train FILE with HH-format pairs)")
        return 0
    try:
        cfg = load_params(args.params).reward
        overrides = {k: v for k, v in (("max_length", args.max_length), ("epochs", args.epochs), ("lr", args.lr),
                                        ("center_rewards_coefficient", args.center), ("pooling", args.pooling))
                     if v is not None}
        cfg = dataclasses.replace(cfg, **overrides)
        pairs = load_pairs(args.train)
        fixed_val = load_pairs(args.eval) if args.eval is not None else None
    except RFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    accs = []
    for seed in args.seeds:
        train = pairs[:]
        if fixed_val is not None:
            val = fixed_val
        else:
            random.Random(seed).shuffle(train)
            n_val = round(len(train) * args.eval_fraction)
            train, val = train[n_val:], train[:n_val]
        run_cfg = dataclasses.replace(cfg, seed=seed)
        print(f"seed={seed} train pairs={len(train)} eval pairs={len(val)} max_length={cfg.max_length} "
              f"epochs={cfg.epochs} lr={cfg.lr} center={cfg.center_rewards_coefficient} lora={cfg.lora} "
              f"pooling={cfg.pooling}", flush=True)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            stats = train_reward_model(train, val, run_cfg, Path(out))
        accs.append(stats["heldout_accuracy"])
        print(f"seed={seed} train_seconds={stats['train_seconds']:.1f} wall_seconds={time.perf_counter() - t0:.1f} "
              f"heldout_mean_margin={stats['heldout_mean_margin']:.4f} heldout_accuracy={accs[-1]:.4f}", flush=True)
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"heldout_accuracy={statistics.mean(accs):.4f} sd={sd:.4f} seeds={len(accs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

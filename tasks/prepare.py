"""Stage ``prepare``: split raw prompts into ``train`` and ``heldout`` with no prompt text in both.

The split is made over *distinct normalised prompt texts*, not rows, so two
rows with the same text (after case and whitespace folding) always land on the
same side. Held-out texts are also never the prompt of a bootstrap
demonstration, so evaluation runs on prompts the policy has not been trained on.
"""

from __future__ import annotations

import random
from pathlib import Path

from tasks.config import Params
from tasks.errors import DataError
from tasks.io import read_jsonl, write_jsonl

DEMOS = Path("data/corpus/demos.jsonl")
OUT = Path("data/prompts.jsonl")
REQUIRED = ("id", "prompt")


def normalize(text: str) -> str:
    return " ".join(str(text).lower().split())


def split_prompts(rows: list[dict], heldout_fraction: float, seed: int,
                  train_only: set[str] = frozenset()) -> list[dict]:
    """Assign ``split`` to each row. Texts in ``train_only`` (normalised) never go to heldout."""
    texts = sorted({normalize(r["prompt"]) for r in rows})
    eligible = [t for t in texts if t not in train_only]
    rng = random.Random(seed)
    rng.shuffle(eligible)
    heldout = set(eligible[:round(len(texts) * heldout_fraction)])
    return [{"id": str(r["id"]), "prompt": r["prompt"],
             "split": "heldout" if normalize(r["prompt"]) in heldout else "train",
             "source": r.get("source", "unknown")} for r in rows]


def run_prepare(params: Params) -> dict:
    import mlflow

    from tasks import tracking

    cfg = params.prepare
    inputs = [Path(cfg.input)] + ([DEMOS] if DEMOS.exists() else [])
    with tracking.stage_run("prepare", params.tracking, sections={"prepare": cfg}, inputs=inputs):
        rows = read_jsonl(cfg.input)
        for col in REQUIRED:
            missing = [(i, f"keys={sorted(r)}") for i, r in enumerate(rows, start=1) if col not in r]
            if missing:
                raise DataError(cfg.input, "required column", column=col, rows=missing,
                                detail=f"{len(missing)} of {len(rows)} rows lack '{col}'")
        demo_texts = {normalize(d["prompt"]) for d in read_jsonl(DEMOS)} if DEMOS.exists() else set()
        out = split_prompts(rows, cfg.heldout_fraction, cfg.seed, demo_texts)
        write_jsonl(OUT, out)
        metrics = {"prompts": len(out), "train": sum(r["split"] == "train" for r in out),
                   "heldout": sum(r["split"] == "heldout" for r in out)}
        mlflow.log_metrics(metrics)
    return metrics

"""Stage ``prepare``: the prompts split into training and held-out prompts, by a salted hash that keeps a prompt on
its side.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks import provenance
from tasks.errors import DataError
from tasks.heldout import is_heldout, prompt_digest
from tasks.io import file_md5, read_jsonl, write_jsonl
from tasks.paths import DEMOS, KEEP_IN_TRAIN
from tasks.paths import PROMPTS as OUT
from tasks.prepare import check_ids, split_prompts
from tasks.prompting import prompt_key, prompt_of
from tasks.stages.common import StageContext, stage_run


def run(ctx: StageContext) -> dict:
    import mlflow

    params = ctx.params
    cfg = params.prepare
    with stage_run("prepare", ctx):
        source = Path(cfg.input)
        if source.exists() and not source.resolve().is_relative_to(Path.cwd().resolve()):
            # Allowed: the run's lineage tags and dvc.lock record its hash, though git and DVC do not version it.
            print(f"prepare: reading {source.resolve()}, outside the project (md5 {file_md5(source)}); its hash "
                  "is in the run's dvc.md5 tag and dvc.lock, but the file itself is not versioned here",
                  file=sys.stderr, flush=True)
        rows = read_jsonl(cfg.input)
        missing = [(i, f"keys={sorted(r)}") for i, r in enumerate(rows, start=1) if "id" not in r]
        if missing:
            raise DataError(cfg.input, "required column", column="id", rows=missing,
                            detail=f"{len(missing)} of {len(rows)} rows lack 'id'")
        missing = [(i, f"keys={sorted(r)}") for i, r in enumerate(rows, start=1)
                   if ("prompt" in r) == ("messages" in r)]
        if missing:
            raise DataError(cfg.input, "required column", column="prompt", rows=missing,
                            detail=f"{len(missing)} of {len(rows)} rows need exactly one of 'prompt' (text) or "
                                   "'messages' (chat)")
        check_ids(rows, cfg.input)
        demo_texts = {prompt_key(prompt_of(d)) for d in read_jsonl(DEMOS)} if DEMOS.exists() else set()
        keep = provenance.read_keep(KEEP_IN_TRAIN)
        out = split_prompts(rows, cfg.heldout_fraction, cfg.salt, demo_texts, keep)
        sides = {side: sum(r["split"] == side for r in out) for side in ("train", "heldout")}
        if not all(sides.values()):          # each prompt is drawn on its own: a few prompts can leave one empty
            raise DataError(cfg.input, "prompts on both sides of the split",
                            detail=f"{len(out)} prompts gave {sides['train']} train and {sides['heldout']} held out at "
                                   f"prepare.heldout_fraction {cfg.heldout_fraction} (prepare.salt "
                                   f"{cfg.salt!r}); add prompts, or change the fraction")
        # Before writing: a held-out prompt this experiment trained on stops the stage with nothing written.
        provenance.check(out, str(cfg.input), mlflow.MlflowClient())
        write_jsonl(OUT, out)
        record = provenance.split_record(out, cfg.salt, cfg.heldout_fraction)
        mlflow.log_dict(record, provenance.HELDOUT_ARTIFACT)
        mlflow.set_tags(provenance.split_tags(record))
        # The same text under two ids is kept (both rows land in one split; the prompt weighs twice), counted.
        metrics = {"prompts": len(out), "train": sum(r["split"] == "train" for r in out),
                   "heldout": sum(r["split"] == "heldout" for r in out),
                   "repeated_texts": len(out) - len({prompt_key(prompt_of(r)) for r in out}),
                   # distinct texts the hash holds out that the keep-in-train file keeps in training
                   "kept_in_train": len({k for k in (prompt_key(prompt_of(r)) for r in rows)
                                         if k not in demo_texts and prompt_digest(k) in keep
                                         and is_heldout(k, cfg.salt, cfg.heldout_fraction)})}
        if metrics["kept_in_train"]:
            print(f"prepare: {metrics['kept_in_train']} prompt(s) the split would hold out stay in training "
                  f"({KEEP_IN_TRAIN}); {metrics['heldout']} of {metrics['prompts']} prompts are held out "
                  f"({metrics['heldout'] / metrics['prompts']:.1%}, against prepare.heldout_fraction "
                  f"{cfg.heldout_fraction})", file=sys.stderr, flush=True)
        mlflow.log_metrics(metrics)
    return metrics

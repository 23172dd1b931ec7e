"""Stage ``label``: preference labels for the cycle, from the labeler that ``label.source`` names.

The labelers live in ``tasks/labelers/`` (judge, simulated annotator, file).
Every row records its labeler (``ai:<judge>`` or ``human:<id>``). Counters
(pairs, dropped pairs and why, judge statistics such as position bias, and the
agreement with the hidden truth where the environment has one) go to MLflow.
"""

from __future__ import annotations

from pathlib import Path

from tasks.config import Params
from tasks.io import read_jsonl, write_jsonl
from tasks.paths import GENERATIONS, LABELS, PROMPTS
from tasks.prompting import prompt_of


def judge_context(params: Params, seed: int = 0):
    from tasks.judges import JudgeContext

    return JudgeContext(params.judges, params.task, params.truth, seed)


def run_label(params: Params) -> dict:
    import mlflow

    from tasks import tracking
    from tasks.labelers import get_labeler

    cfg = params.label
    inputs = [PROMPTS, GENERATIONS, Path(params.task.rubric)] + ([Path(cfg.file)] if cfg.file else [])
    with tracking.stage_run("label", params.tracking, sections={"label": cfg, "task": params.task},
                            inputs=inputs):
        prompts = {str(r["id"]): prompt_of(r) for r in read_jsonl(PROMPTS)}
        generations = read_jsonl(GENERATIONS) if cfg.source != "file" else None
        rows, stats = get_labeler(cfg.source)(cfg, judge_context(params), prompts, generations)
        if not rows:
            from tasks.errors import DataError

            raise DataError(cfg.file or GENERATIONS, "at least one usable preference pair",
                            detail=f"the {cfg.source} labeler produced no pairs ({stats})")
        write_jsonl(LABELS, rows)
        mlflow.log_metrics({tracking.metric_name(k): float(v) for k, v in stats.items()})
        mlflow.set_tag("labeler", rows[0]["labeler"])
    return stats

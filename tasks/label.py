"""Stage ``label``: preference labels for the cycle, from the labeler that ``label.source`` names.

The labelers live in ``tasks/labelers/`` (judge, simulated annotator, file).
Every row records its labeler (``ai:<judge>`` or ``human:<id>``). Counters
(pairs, dropped pairs and why, judge statistics such as position bias, and the
agreement with the hidden truth where the environment has one) go to MLflow.
"""

from __future__ import annotations


from tasks.config import Params
from tasks.io import read_jsonl, write_jsonl
from tasks.paths import GENERATIONS, LABELS, PROMPTS
from tasks.prompting import prompt_of


def run_label(params: Params) -> dict:
    import mlflow

    from tasks import tracking
    from tasks.judges import JudgeContext
    from tasks.labelers import get_labeler

    cfg = params.label
    with tracking.stage_run("label", params, extra_inputs=[cfg.file] if cfg.file else []):
        prompts = {str(r["id"]): prompt_of(r) for r in read_jsonl(PROMPTS)}
        generations = read_jsonl(GENERATIONS) if cfg.source != "file" else None
        rows, stats = get_labeler(cfg.source)(cfg, JudgeContext.of(params), prompts, generations)
        if not rows:
            from tasks.errors import DataError

            raise DataError(cfg.file or GENERATIONS, "at least one usable preference pair",
                            detail=f"the {cfg.source} labeler produced no pairs ({stats})")
        write_jsonl(LABELS, rows)
        mlflow.log_metrics({tracking.metric_name(k): float(v) for k, v in stats.items()})
        mlflow.set_tag("labeler", rows[0]["labeler"])
    return stats

"""Stage ``label`` (``dvc.yaml``; its inputs and outputs are declared in ``tasks/manifest.py``): the adapter
that opens its MLflow run, reads, calls ``tasks/label.py`` and the components, and writes and logs the outputs."""

from __future__ import annotations

from tasks import provenance, tracking
from tasks.errors import DataError
from tasks.io import iter_jsonl, read_jsonl, write_json, write_jsonl
from tasks.judges import JudgeContext, judge_files
from tasks.label import Usable, _finite, label_table, quality_report
from tasks.labelers import get_labeler
from tasks.paths import GENERATIONS, LABEL_QUALITY, LABELS, PROMPTS, RATINGS
from tasks.prompting import prompt_of
from tasks.shard import cluster
from tasks.stages.common import StageContext, stage_run


def run(ctx: StageContext) -> dict:
    import mlflow

    params = ctx.params
    cfg = params.label
    used = [cfg.judge] if cfg.source == "judge" else []
    used += [*cfg.quality_judges, *([cfg.comment_judge] if cfg.feedback == "comment" else [])]
    extra = ([cfg.file] if cfg.file else []) + judge_files(params.judges, used)
    # A cluster only when AI judges work here (people in Label Studio and files need none).
    with stage_run("label", ctx, extra_inputs=extra), cluster(params.scale if used else None) as scale:
        prompt_rows = read_jsonl(PROMPTS)
        prompts = {str(r["id"]): prompt_of(r) for r in prompt_rows}
        generations = iter_jsonl(GENERATIONS) if cfg.source != "file" else None
        judging = JudgeContext.of(params, scale=scale)
        labels = get_labeler(cfg.source)(cfg, judging, prompts, generations)
        metrics, report = quality_report(labels, cfg, judging, prompts)
        seen, held, dropped = Usable(cfg.ties), provenance.heldout_keys(prompt_rows), {}
        write_jsonl(LABELS, seen.check(
            provenance.without_heldout(labels.rows, prompts, held, dropped, "dropped_heldout_pairs"),
            lambda: DataError(cfg.file or GENERATIONS, "at least one usable preference pair",
                              detail=f"the {cfg.source} labeler produced no decided pairs whose prompt is not "
                                     f"held out ({labels.stats}, {dropped})")))
        stats, tags = labels.stats, labels.tags or {}      # complete once the rows are written
        write_jsonl(RATINGS, provenance.without_heldout(labels.ratings, prompts, held, dropped,
                                                        "dropped_heldout_ratings"))
        provenance.say_dropped(dropped)
        mlflow.log_metrics({k: float(v) for k, v in dropped.items()})
        write_json(LABEL_QUALITY, _finite(report))
        mlflow.log_metrics({tracking.metric_name(k): float(v) for k, v in stats.items()
                            if isinstance(v, (int, float))})
        mlflow.log_metrics({tracking.metric_name(f"quality.{k}"): float(v) for k, v in metrics.items()})
        if report:
            mlflow.log_dict(report, "label_quality.json")
        if seen.sample:
            mlflow.log_table(label_table(seen.sample, prompts), artifact_file="label_sample.json")
        if labels.annotations is not None:
            import json

            mlflow.log_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in labels.annotations.rows),
                            "annotations.jsonl")
        mlflow.set_tags({"labeler": seen.labeler,
                         "label.runner": scale.runner if scale else "local",
                         **{k: str(v)[:5000] for k, v in tags.items()}})
    return {**{k: v for k, v in stats.items() if isinstance(v, (int, float))},
            **{f"quality.{k}": v for k, v in metrics.items()}}

"""Stage ``label``: preference labels for the cycle, from the labeler that ``label.source`` names (its inputs and
outputs are declared in ``tasks/manifest.py``).

The labelers live in ``tasks/labelers/`` (judge, simulated annotator, file,
Label Studio). Every row records its labeler (``ai:<judge>`` or
``human:<id>``). Outputs:

- ``data/labels.jsonl``: the labels table (pairs; tied comparisons carry
  ``tie: true`` and are kept);
- ``data/ratings.jsonl``: single rated responses with their score (and ``good``
  for KTO) from Likert, multi-attribute and comment feedback; empty otherwise;
- ``reports/label/quality.json``: label quality of people's feedback
  (``tasks/labels/quality.py``): agreement between annotators, flagged
  annotators, throughput, and each of ``label.quality_judges`` against the people.

Counters (pairs, dropped pairs and why, judge statistics such as position bias,
the agreement with the hidden truth where the environment has one, and the
quality figures) go to MLflow.
"""

from __future__ import annotations

from tasks import provenance, tracking
from tasks.errors import DataError
from tasks.io import iter_jsonl, read_jsonl, write_json, write_jsonl
from tasks.judges import JudgeContext, build_judge, judge_files
from tasks.labelers import get_labeler
from tasks.labels.quality import annotator_quality, judge_agreement
from tasks.paths import GENERATIONS, LABEL_QUALITY, LABELS, PROMPTS, RATINGS
from tasks.prompting import label_prompt, prompt_of
from tasks.stages.common import StageContext, stage_run
from tasks.workers import cluster


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
        labels = get_labeler(cfg.source)(cfg, judging, prompts, generations,
                                         rows={str(r["id"]): r for r in prompt_rows})
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


def quality_report(labels, cfg, ctx, prompts: dict) -> tuple[dict, dict]:
    """(MLflow metrics, report) of people's labels; empty for AI labelers."""

    if labels.annotations is None or not labels.annotations.items:
        return {}, {}
    metrics, report = annotator_quality(labels.annotations.items, labels.annotations.seconds,
                                        cfg.flag_agreement_below, labels.weights)
    metrics["tie_rate"] = labels.stats.get("tie_rate", 0.0)
    report["tie_rate"] = metrics["tie_rate"]
    if cfg.quality_judges:
        of = [label_prompt(r, prompts) for r in labels.rows]
        judges = {name: build_judge(name, ctx) for name in cfg.quality_judges}
        jm, jr = judge_agreement(labels.rows, of, judges)
        metrics.update(jm)
        report["judges"] = jr
    return metrics, report


SAMPLE_ROWS = 40       # label rows logged to MLflow as a table a person reads


class Usable:
    """Passes label rows on (to be written) and, after the last, stops the stage unless one of them is a
    decided pair (or, with ``label.ties: symmetric``, any row at all). ``labeler`` is the labeler of the first
    decided pair, else of the first row; ``sample`` holds the first ``SAMPLE_ROWS`` rows."""

    def __init__(self, ties: str):
        self.ties, self.rows, self.decided, self.labeler = ties, 0, 0, None
        self.sample: list[dict] = []

    def check(self, rows, error):
        first = None
        for row in rows:
            self.rows += 1
            first = first or row["labeler"]
            if len(self.sample) < SAMPLE_ROWS:
                self.sample.append(row)
            if not row.get("tie"):
                self.decided += 1
                self.labeler = self.labeler or row["labeler"]
            yield row
        if not self.decided and not (self.rows and self.ties == "symmetric"):
            raise error()
        self.labeler = self.labeler or first


def label_table(rows: list[dict], prompts: dict) -> dict:
    """Columns of label rows for ``mlflow.log_table``: the prompt, both responses, who decided and how surely,
    and the judge's scores where it scored the responses."""
    def prompt(r):
        p = r.get("prompt", r.get("messages")) or prompts.get(str(r.get("prompt_id")), "")
        return p if isinstance(p, str) else "\n".join(f"{m['role']}: {m['content']}" for m in p)
    return {"prompt_id": [str(r.get("prompt_id", "")) for r in rows], "prompt": [prompt(r) for r in rows],
            "chosen": [r["chosen"] for r in rows], "rejected": [r["rejected"] for r in rows],
            "labeler": [r["labeler"] for r in rows], "tie": [bool(r.get("tie")) for r in rows],
            "confidence": [r.get("confidence") for r in rows],
            "score_chosen": [r.get("score_chosen") for r in rows],
            "score_rejected": [r.get("score_rejected") for r in rows]}


def _finite(obj):
    """NaN (an undefined agreement) as null, so the report stays strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and obj != obj else obj

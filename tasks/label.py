"""Stage ``label``: preference labels for the cycle, from the labeler that ``label.source`` names.

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

from tasks.judges import build_judge
from tasks.labels.quality import annotator_quality, judge_agreement
from tasks.prompting import label_prompt


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



"""The label-quality report of one cycle's human labels (logged to MLflow and written to reports/label/).

- **Inter-annotator agreement** on the overlap items (those two or more people
  labelled): Krippendorff's alpha (nominal for comparisons, interval for
  ratings), and Cohen's kappa when exactly two annotators share items.
- **Per annotator**: agreement with the others (the majority for comparisons;
  within 1 point of the others' median for ratings), labels, and labels per
  hour. Annotators below ``label.flag_agreement_below`` are *flagged*, never
  dropped.
- **Judges vs people**: each of ``label.quality_judges`` compares the decided
  human pairs; its agreement is the gate's (``tasks/judgemath.py::agreement``:
  the share it decides the people's way, a tie of the judge counting one half),
  reported with its tie count and tie rate. For a judge that asks in both orders:
  ``position_flip_rate``, the share of pairs whose verdict flips with the order
  (no direction), and ``position_bias``, the share of its asks that preferred the
  position shown first minus 0.5 (positive: it leans to the first response), with
  a 95% bootstrap CI over prompts (``position_bias_ci_low`` / ``_ci_high``).
"""

from __future__ import annotations

import math

from tasks.evalmath import bootstrap_ci
from tasks.judgemath import agreement, decision, position_bias
from tasks.labels.agreement import (cohen_kappa, flag_annotators, krippendorff_alpha, majority_agreement, overlap_units,
                                    throughput)
from tasks.labels.convert import Comparison, combine_attributes

RATING_TOLERANCE = 1.0


def item_labels(items: list, weights: dict | None = None) -> dict:
    """item -> {annotator: label}: the choice per pair for comparisons, the (combined) score per response."""
    labels: dict = {}
    for it in items:
        if isinstance(it, Comparison):
            labels.setdefault((it.prompt_id, it.a_id, it.b_id), {})[it.annotator] = it.choice
        else:
            value = combine_attributes(it.attributes, weights) if it.attributes else it.value
            labels.setdefault(it.response_id, {})[it.annotator] = value
    return labels


def _two_annotator_kappa(labels: dict) -> float | None:
    annotators = sorted({a for by in labels.values() for a in by})
    if len(annotators) != 2:
        return None
    u, v = annotators
    shared = [by for by in labels.values() if u in by and v in by]
    return cohen_kappa([by[u] for by in shared], [by[v] for by in shared]) if shared else None


def annotator_quality(items: list, seconds: dict, threshold: float, weights: dict | None = None) -> tuple[dict, dict]:
    """(metrics for MLflow, report) of the people's labels."""
    labels = item_labels(items, weights)
    nominal = bool(items) and isinstance(items[0], Comparison)
    units = overlap_units(labels)
    alpha = krippendorff_alpha(units, "nominal" if nominal else "interval") if units else float("nan")
    kappa = _two_annotator_kappa(labels)
    per = majority_agreement(labels, None if nominal else RATING_TOLERANCE)
    counts: dict = {}
    for by in labels.values():
        for a in by:
            counts[a] = counts.get(a, 0) + 1
    rate = throughput(seconds)
    flagged = flag_annotators(per, threshold)
    metrics = {"annotators": len(counts), "overlap_items": len(units),
               "overlap_share": len(units) / max(1, len(labels)), "iaa_krippendorff_alpha": alpha,
               "flagged_annotators": len(flagged)}
    if kappa is not None:
        metrics["iaa_cohen_kappa"] = kappa
    report = {"krippendorff_alpha": alpha, "cohen_kappa": kappa, "overlap_items": len(units),
              "agreement_threshold": threshold, "flagged": flagged,
              "annotators": {a: {"labels": counts[a], "agreement": per[a]["agreement"],
                                 "agreement_items": per[a]["items"], "labels_per_hour": rate.get(a),
                                 "flagged": a in flagged} for a in sorted(counts)}}
    for a, s in report["annotators"].items():
        if s["labels_per_hour"] is not None and not math.isnan(s["labels_per_hour"]):
            metrics[f"labels_per_hour.{a}"] = s["labels_per_hour"]
    return metrics, report


# The position-bias CI: percentile bootstrap over prompts (tasks/evalmath.py::bootstrap_ci), fixed so that a
# report is reproducible from its labels.
BIAS_BOOTSTRAP, BIAS_SEED = 2000, 0


def judge_agreement(rows: list[dict], prompts: list, judges: dict) -> tuple[dict, dict]:
    """Each judge's agreement with the people's decided pairs (``rows``, non-tie; chosen shown as A), its ties
    (counted one half in the agreement), and for judges that ask in both orders its position flip rate and
    directional position bias with a bootstrap CI."""

    decided = [(p, r) for p, r in zip(prompts, rows) if not r.get("tie")]
    metrics, report = {}, {}
    if not decided:
        return metrics, report
    ps, rs = [p for p, _ in decided], [r for _, r in decided]
    for name, judge in judges.items():
        v = judge.compare(ps, [r["chosen"] for r in rs], [r["rejected"] for r in rs],
                          keys=[(r["chosen_id"], r["rejected_id"]) for r in rs])
        ties = sum(decision(p) is None for p in v.p_a)
        entry = {"agreement": agreement(v.p_a, [True] * len(rs)), "pairs": len(rs), "ties": ties,
                 "tie_rate": ties / len(rs)}
        if "position_disagreement" in judge.stats:
            entry["position_flip_rate"] = judge.stats["position_disagreement"]
        if v.first is not None:
            lo, hi = bootstrap_ci(v.first, [r["prompt_id"] for r in rs], n_boot=BIAS_BOOTSTRAP, seed=BIAS_SEED)
            entry.update(position_bias=position_bias(v.first), position_bias_ci_low=lo - 0.5,
                         position_bias_ci_high=hi - 0.5)
        report[name] = entry
        metrics.update({f"judge.{name}.{k}": float(x) for k, x in entry.items()})
    return metrics, report

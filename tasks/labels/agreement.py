"""Label quality: agreement between annotators, between judges and people, and labelling throughput.

Pure functions: no I/O. Items are keyed by any hashable id; labels are any
hashable values (``a``/``b``/``tie`` for comparisons, 1-5 for Likert).
"""

from __future__ import annotations

from collections import Counter


def cohen_kappa(x: list, y: list) -> float:
    """Cohen's kappa of two annotators over the same items: ``(p_o - p_e) / (1 - p_e)``.

    Worked 2x2 example (20 items, labels a/b)::

                     y=a  y=b
               x=a    8    2      x says a 10 times, b 10 times
               x=b    3    7      y says a 11 times, b  9 times

    p_o = (8 + 7) / 20 = 0.75; p_e = (10*11 + 10*9) / 20**2 = 200/400 = 0.5;
    kappa = (0.75 - 0.5) / (1 - 0.5) = 0.5. When both annotators always give the
    same single label, p_e = 1 and kappa is undefined: NaN.
    """
    if len(x) != len(y) or not x:
        raise ValueError("cohen_kappa needs two equally long, non-empty label lists")
    n = len(x)
    p_o = sum(a == b for a, b in zip(x, y)) / n
    cx, cy = Counter(x), Counter(y)
    p_e = sum(cx[k] * cy[k] for k in set(cx) | set(cy)) / n ** 2
    return float("nan") if p_e == 1 else (p_o - p_e) / (1 - p_e)


def krippendorff_alpha(units: list[list], metric: str = "nominal") -> float:
    """Krippendorff's alpha: ``1 - D_o / D_e`` from the coincidence matrix of the pairable values.

    ``units`` holds, per item, the values its annotators gave; items with fewer
    than two values are not pairable and are skipped. With ``n`` pairable values,
    ``o_ck`` the coincidences and ``n_c`` the value totals::

        alpha = 1 - (n - 1) * sum_ck o_ck d(c,k) / sum_ck n_c n_k d(c,k)

    ``d`` is 0/1 (``nominal``) or ``(c - k)**2`` (``interval``). Worked example
    (nominal): units [a,a], [b,b], [a,b]. Coincidences: each unit of two values
    adds 1/(2-1) = 1 to o[v1,v2] and o[v2,v1]: o_aa = 2, o_bb = 2, o_ab = o_ba = 1;
    n_a = n_b = 3, n = 6. Disagreement sums: observed o_ab + o_ba = 2, expected
    n_a n_b + n_b n_a = 18. alpha = 1 - 5 * 2 / 18 = 4/9 = 0.444...
    """
    if metric not in ("nominal", "interval"):
        raise ValueError(f"metric {metric!r} is not nominal or interval")

    def d(c, k):
        return float(c != k) if metric == "nominal" else (float(c) - float(k)) ** 2

    coincidence: Counter = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    coincidence[(c, k)] += 1 / (m - 1)
    totals: Counter = Counter()
    for (c, _), v in coincidence.items():
        totals[c] += v
    n = sum(totals.values())
    if n < 2:
        return float("nan")
    observed = sum(v * d(c, k) for (c, k), v in coincidence.items())
    expected = sum(totals[c] * totals[k] * d(c, k) for c in totals for k in totals)
    return float("nan") if expected == 0 else 1 - (n - 1) * observed / expected


def _majority(labels: list):
    """The most common label, or None when two labels share the top count."""
    counts = Counter(labels).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def majority_agreement(labels: dict, tolerance: float | None = None) -> dict[str, dict]:
    """Per annotator: how often their label matches the *other* annotators of the item.

    ``labels`` maps item -> {annotator: label}. Nominal labels (``tolerance``
    None) match the others' majority; items where the others have no majority (a
    tie, or nobody else) are not counted. Numeric labels (a ``tolerance``) match
    when within ``tolerance`` of the others' median. Example (nominal): item 1
    {u: a, v: a, w: b}, item 2 {u: b, v: a, w: a}. For u: item 1 others (a, b) tie
    -> skipped; item 2 others (a, a) -> a, u said b: 0 of 1. For w: item 1 others
    (a, a), w said b -> 0; item 2 others (b, a) tie -> skipped: 0 of 1. For v: item
    1 others (a, b) tie; item 2 others (b, a) tie: nothing counted.
    """
    from statistics import median

    out: dict[str, dict] = {}
    for item, by in labels.items():
        for annotator, label in by.items():
            others = [v for k, v in by.items() if k != annotator]
            s = out.setdefault(annotator, {"items": 0, "agree": 0})
            if tolerance is None:
                ref = _majority(others)
                if ref is not None:
                    s["items"] += 1
                    s["agree"] += label == ref
            elif others:
                s["items"] += 1
                s["agree"] += abs(float(label) - float(median(others))) <= tolerance
    for s in out.values():
        s["agreement"] = s["agree"] / s["items"] if s["items"] else float("nan")
    return out


def flag_annotators(per_annotator: dict[str, dict], threshold: float, min_items: int = 1) -> list[str]:
    """Annotators whose agreement with the majority is below ``threshold`` (over at least ``min_items``)."""
    return sorted(a for a, s in per_annotator.items() if s["items"] >= min_items and s["agreement"] < threshold)


def overlap_units(labels: dict) -> list[list]:
    """The per-item value lists of the items that two or more annotators labelled."""
    return [list(by.values()) for by in labels.values() if len(by) >= 2]


def agreement_with(reference: dict, other: dict) -> tuple[float, int]:
    """(share of common items where ``other`` equals ``reference``, number of common items)."""
    common = [k for k in reference if k in other and reference[k] is not None and other[k] is not None]
    if not common:
        return float("nan"), 0
    return sum(reference[k] == other[k] for k in common) / len(common), len(common)


def throughput(seconds_by_annotator: dict[str, list[float]]) -> dict[str, float]:
    """Labels per hour per annotator: ``count / (sum of seconds spent) * 3600``. 12 labels in 600 s -> 72/h."""
    return {a: (len(s) * 3600 / sum(s) if sum(s) > 0 else float("nan")) for a, s in seconds_by_annotator.items()}

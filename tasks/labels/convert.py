"""Human feedback in four shapes, converted into one labels table. Pure functions: no I/O, no models.

Every shape starts as a list of *annotations* (one per annotator and item),
from Label Studio's export or from a file, and ends as rows of the labels
contract (``prompt_id``, ``chosen``, ``rejected``, ``chosen_id``,
``rejected_id``, ``labeler``, ``confidence``) plus, for the shapes that rate
single responses, rows of the ratings table (``response`` + ``score``, and
``good`` for KTO).

**Binary comparison** (``comparison``): an annotation says ``a``, ``b`` or
``tie`` about a pair, in the pair's canonical order (the display order is
undone before this point). The annotations of one pair are pooled: the side
with more votes is chosen and ``confidence`` is its share of the votes; equal
votes, or a majority for ``tie``, make a tie row (``tie: true``, kept and
counted). Bradley-Terry training leaves ties out unless ``label.ties:
symmetric`` (:func:`preference_pairs`).

**Likert rating** (``likert``): a 1-5 rating of one response. A response's
score is the mean of its ratings. Every two responses to the same prompt whose
scores differ by at least ``margin`` make a pair, the higher one chosen, with
``confidence`` 1. Each rated response is also a ratings row, ``good`` when its
score reaches the KTO threshold.

**Multi-attribute scores** (``attributes``): one rating per attribute (the
rubric's criteria, e.g. helpfulness, accuracy, safety). The response's score
is the weighted mean ``sum(w_a * s_a) / sum(w_a)`` of the per-attribute means,
with the rubric's weights; then pairs and ratings rows as for Likert. The
per-attribute means are kept in the rows (``attributes_chosen``, ...).

**Free-form comments** (``comment``): a comment on one response, turned into a
score by a judge (``label.comment_judge``). The score plays the part of the
rating: pairs for score differences of at least ``margin`` (in the judge's
units); the comments are kept in the rows.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from itertools import combinations

CHOICES = ("a", "b", "tie")


@dataclass(frozen=True)
class Comparison:
    """One annotator's verdict on one pair, in the pair's canonical (not displayed) order."""
    prompt_id: str
    a_id: str
    b_id: str
    a: str
    b: str
    choice: str                      # a | b | tie
    annotator: str
    prompt: object = None            # the prompt itself (text or messages) when the row must carry it
    at: str | None = None            # when it was given (ISO 8601)


@dataclass(frozen=True)
class Rating:
    """One annotator's rating of one response: ``value`` (Likert or judged comment) or ``attributes``."""
    prompt_id: str
    response_id: str
    response: str
    annotator: str
    value: float | None = None
    attributes: dict = field(default_factory=dict)
    comment: str | None = None
    prompt: object = None
    at: str | None = None


def _labeler(annotators) -> str:
    return "human:" + "+".join(sorted(set(annotators)))


def _latest(stamps) -> dict:
    stamps = [t for t in stamps if t]
    return {"annotated_at": max(stamps)} if stamps else {}


def _with_prompt(row: dict, prompt) -> dict:
    if prompt is not None:
        row["messages" if isinstance(prompt, list) else "prompt"] = prompt
    return row


def comparisons_to_rows(items: list[Comparison]) -> tuple[list[dict], dict]:
    """Pool the annotations of each pair into one labels row (see the module docstring).

    Example (worked by hand): annotations a, a, b on one pair -> ``a`` has 2 of 3
    votes: chosen = a, confidence = 2/3. Annotations a, b -> 1 vote each: a tie row.
    """
    pooled: OrderedDict[tuple, list[Comparison]] = OrderedDict()
    for c in items:
        if c.choice not in CHOICES:
            raise ValueError(f"choice {c.choice!r} is not one of {CHOICES}")
        pooled.setdefault((c.prompt_id, c.a_id, c.b_id), []).append(c)
    rows, ties = [], 0
    for (pid, a_id, b_id), group in pooled.items():
        votes = Counter(c.choice for c in group)
        first = group[0]
        top = max(votes.values())
        winners = [k for k in CHOICES if votes[k] == top]
        tie = len(winners) > 1 or winners[0] == "tie"
        a_wins = winners[0] == "a"
        chosen, rejected = ((first.a, a_id), (first.b, b_id)) if (tie or a_wins) else ((first.b, b_id), (first.a, a_id))
        row = {"prompt_id": pid, "chosen": chosen[0], "rejected": rejected[0], "chosen_id": chosen[1],
               "rejected_id": rejected[1], "labeler": _labeler(c.annotator for c in group),
               "confidence": 0.5 if tie else round(top / len(group), 6), "annotations": len(group),
               "votes": {k: votes[k] for k in CHOICES}, **_latest(c.at for c in group)}
        if tie:
            row["tie"] = True
            ties += 1
        rows.append(_with_prompt(row, first.prompt))
    return rows, {"annotations": len(items), "pairs": len(rows) - ties, "ties": ties,
                  "tie_rate": ties / max(1, len(rows))}


def combine_attributes(scores: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted mean of attribute scores, over the attributes that were scored.

    Example: helpfulness 4 (weight 2), safety 1 (weight 1) -> (2*4 + 1*1) / 3 = 3.0.
    """
    unknown = set(scores) - set(weights)
    if unknown:
        raise ValueError(f"attributes {sorted(unknown)} are not in the rubric ({sorted(weights)})")
    total = sum(weights[k] for k in scores)
    if not scores or total <= 0:
        raise ValueError("no scored attribute with a positive weight")
    return sum(weights[k] * v for k, v in scores.items()) / total


@dataclass
class _Scored:
    prompt_id: str
    response_id: str
    response: str
    prompt: object
    values: list = field(default_factory=list)
    annotators: list = field(default_factory=list)
    attributes: dict = field(default_factory=dict)     # attribute -> list of values
    comments: list = field(default_factory=list)
    stamps: list = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(self.values) / len(self.values)


def _pool_ratings(items: list[Rating], weights: dict[str, float] | None) -> "OrderedDict[str, _Scored]":
    pooled: OrderedDict[str, _Scored] = OrderedDict()
    for r in items:
        s = pooled.setdefault(r.response_id, _Scored(r.prompt_id, r.response_id, r.response, r.prompt))
        if r.attributes:
            if weights is None:
                raise ValueError(f"response {r.response_id}: attribute scores need the rubric's weights")
            s.values.append(combine_attributes(r.attributes, weights))
            for k, v in r.attributes.items():
                s.attributes.setdefault(k, []).append(v)
        elif r.value is not None:
            s.values.append(float(r.value))
        else:
            raise ValueError(f"response {r.response_id}: a rating needs a value or attribute scores")
        s.annotators.append(r.annotator)
        s.stamps.append(r.at)
        if r.comment:
            s.comments.append(r.comment)
    return pooled


def _extras(s: _Scored, side: str) -> dict:
    out = {}
    if s.attributes:
        out[f"attributes_{side}"] = {k: round(sum(v) / len(v), 6) for k, v in s.attributes.items()}
    if s.comments:
        out[f"comment_{side}"] = "\n".join(s.comments)
    return out


def ratings_to_rows(items: list[Rating], margin: float, weights: dict[str, float] | None = None,
                    threshold: float | None = None) -> tuple[list[dict], list[dict], dict]:
    """(pair rows, ratings rows, counters) from ratings of single responses.

    Example (worked by hand), margin 1: prompt p, responses x rated 5 and 4 (mean
    4.5), y rated 3 (mean 3), z rated 4 (mean 4). Pairs: x>y (4.5-3 = 1.5 >= 1),
    z>y (4-3 = 1 >= 1); x vs z differ by 0.5 < 1: no pair. With threshold 4,
    x and z are good, y is bad.
    """
    pooled = _pool_ratings(items, weights)
    by_prompt: OrderedDict[str, list[_Scored]] = OrderedDict()
    for s in pooled.values():
        by_prompt.setdefault(s.prompt_id, []).append(s)
    pairs, close = [], 0
    for pid, group in by_prompt.items():
        for x, y in combinations(group, 2):
            if abs(x.score - y.score) < margin or x.score == y.score:
                close += 1
                continue
            hi, lo = (x, y) if x.score > y.score else (y, x)
            row = {"prompt_id": pid, "chosen": hi.response, "rejected": lo.response, "chosen_id": hi.response_id,
                   "rejected_id": lo.response_id, "labeler": _labeler(hi.annotators + lo.annotators),
                   "confidence": 1.0, "score_chosen": round(hi.score, 6), "score_rejected": round(lo.score, 6),
                   **_extras(hi, "chosen"), **_extras(lo, "rejected"), **_latest(hi.stamps + lo.stamps)}
            pairs.append(_with_prompt(row, hi.prompt))
    ratings = []
    for s in pooled.values():
        row = {"prompt_id": s.prompt_id, "response_id": s.response_id, "response": s.response,
               "score": round(s.score, 6), "ratings": len(s.values), "labeler": _labeler(s.annotators),
               **_latest(s.stamps)}
        if threshold is not None:
            row["good"] = s.score >= threshold
        for k, v in _extras(s, "response").items():
            row[k.replace("_response", "")] = v
        ratings.append(_with_prompt(row, s.prompt))
    stats = {"annotations": len(items), "responses_rated": len(pooled), "pairs": len(pairs),
             "skipped_within_margin": close}
    if threshold is not None:
        stats["kto_good"] = sum(r["good"] for r in ratings)
        stats["kto_bad"] = len(ratings) - stats["kto_good"]
    return pairs, ratings, stats


def preference_pairs(rows: list[dict], ties: str = "drop") -> list[dict]:
    """The rows Bradley-Terry (and DPO) train on. ``ties: drop`` leaves tie rows out; ``symmetric`` turns
    each tie into both orders, whose loss ``-log s(d) - log s(-d)`` is smallest at equal rewards (d = 0)."""
    if ties not in ("drop", "symmetric"):
        raise ValueError(f"ties: {ties!r} is not drop or symmetric")
    out = []
    for r in rows:
        if not r.get("tie"):
            out.append(r)
        elif ties == "symmetric":
            out.append(r)
            out.append({**r, "chosen": r["rejected"], "rejected": r["chosen"], "chosen_id": r["rejected_id"],
                        "rejected_id": r["chosen_id"]})
    return out

"""Pure math of judges: from scores or position-swapped probabilities to verdicts, and ensembles. No I/O.

Each function is tested against values worked out by hand in ``tests/test_judge_math.py``.
"""

from __future__ import annotations

import math


def sigmoid(x: float) -> float:
    # The two forms of the logistic keep exp() from overflowing for large |x|.
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def decision(p_a: float) -> bool | None:
    """A verdict from a probability that A is better: True, False, or None for an exact tie."""
    return None if p_a == 0.5 else p_a > 0.5


def score_probability(score_a: float, score_b: float, scale: float) -> float:
    """P(A better) of a scoring judge: ``sigmoid(scale * (s_a - s_b))`` (Bradley-Terry with slope ``scale``)."""
    return sigmoid(scale * (score_a - score_b))


def two_choice_probability(logit_a: float, logit_b: float) -> float:
    """P(answer 'A') when only the two choice tokens count: softmax over their two logits."""
    return sigmoid(logit_a - logit_b)


def swap_average(p_first_ab: float, p_first_ba: float) -> tuple[float, bool]:
    """Combine two asks of a positional judge, with A shown first, then B shown first.

    ``p_first_ab`` is P(first shown is better) when A came first; ``p_first_ba``
    the same when B came first, so it is P(B better) in that order. The estimate
    is ``(p_first_ab + (1 - p_first_ba)) / 2``. The two orders *disagree* when
    their verdicts on A differ: a judge that always picks the first position has
    ``p_first_ab = p_first_ba = 1``, so the estimate is 0.5 and they disagree.
    """
    p_a_second_ask = 1.0 - p_first_ba
    disagree = decision(p_first_ab) != decision(p_a_second_ask)
    return (p_first_ab + p_a_second_ask) / 2.0, disagree


def combine_mean(member_probs: list[list[float]]) -> list[float]:
    """Ensemble by mean probability: for each comparison, the mean of the members' P(A better)."""
    return [sum(ps) / len(ps) for ps in zip(*member_probs)]


def combine_scores(member_scores: list[list[float]], scales: list[float]) -> list[float]:
    """Ensemble of scoring judges on one scale: for each response, ``mean_i scale_i * s_i``.

    A member's comparison is ``sigmoid(scale_i * (s_a - s_b))``, so ``scale_i * s`` is its score in logits. The
    ensemble compares by ``score_probability(S_a, S_b, 1)`` on these combined scores ``S``, which is
    ``sigmoid(mean_i logit_i)``, the mean of the members' logits: P(A better) > 0.5 exactly when ``S_a > S_b``,
    so the ensemble's reward and its comparison never disagree on a pair. The mean of the members'
    probabilities would not do: with three members at logits -3, 1, 1 it is (0.047 + 0.731 + 0.731) / 3 > 0.5
    while the logits sum to -1 (see ``tests/test_judge_math.py``).
    """
    if len(member_scores) != len(scales):
        raise ValueError(f"{len(member_scores)} members' scores for {len(scales)} scales")
    return [sum(k * s for k, s in zip(scales, ss)) / len(ss) for ss in zip(*member_scores)]


def first_preference(p_first_ab: float, p_first_ba: float) -> float:
    """Share of a positional judge's two asks (A first, then B first) that preferred the position shown first,
    an ask's tie counting half: 1 (first both times), 0.5 (the same response both times: no position
    preference), 0 (second both times). The mean over comparisons minus 0.5 is the judge's directional
    position bias (``position_bias``)."""
    def first(p: float) -> float:
        return 0.5 if decision(p) is None else float(decision(p))

    return (first(p_first_ab) + first(p_first_ba)) / 2.0


def position_bias(first_shares: list[float]) -> float:
    """Directional position bias: the mean share of asks preferring the first position, minus 0.5.

    Positive: the judge leans to the response shown first; negative: to the second; 0: no lean. Unlike the
    flip rate (``swap_average``'s disagreement), it has a sign, and flips to the first and to the second
    position cancel."""
    if not first_shares:
        raise ValueError("position bias of no comparisons")
    return sum(first_shares) / len(first_shares) - 0.5


def combine_majority(member_probs: list[list[float]]) -> list[float]:
    """Ensemble by majority vote: the share of members voting A, a tie counting half a vote."""
    out = []
    for ps in zip(*member_probs):
        votes = [0.5 if decision(p) is None else float(decision(p)) for p in ps]
        out.append(sum(votes) / len(votes))
    return out


def agreement_rate(member_probs: list[list[float]]) -> float:
    """Share of comparisons on which every member gives the same verdict (ties count as a verdict)."""
    rows = list(zip(*member_probs))
    if not rows:
        return 1.0
    return sum(len({decision(p) for p in ps}) == 1 for ps in rows) / len(rows)


def agreement(p_a: list[float], human_a: list[bool]) -> float:
    """Share of pairs where a judge's verdict matches the human's choice (a judge's tie counts half)."""
    if not p_a:
        raise ValueError("agreement of no pairs")
    hits = [0.5 if decision(p) is None else float(decision(p) == h) for p, h in zip(p_a, human_a)]
    return sum(hits) / len(hits)

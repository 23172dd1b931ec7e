"""Pure math of evaluation and promotion: win-rates, bootstrap CIs, KL, distinct-n. No I/O.

Each function is tested against values worked out by hand in ``tests/test_evalmath.py``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict


def outcome(a_better: bool | None) -> float:
    """A comparison's score for the first item: 1 win, 0 loss, 0.5 tie (None)."""
    return 0.5 if a_better is None else float(a_better)


def winrate(outcomes: list[float]) -> float:
    """Mean of outcomes (1 win, 0.5 tie, 0 loss)."""
    if not outcomes:
        raise ValueError("winrate of no comparisons")
    return sum(outcomes) / len(outcomes)


def bootstrap_ci(outcomes: list[float], groups: list, *, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the win-rate, resampling whole groups (prompts).

    Several comparisons of one prompt are not independent, so the bootstrap
    draws prompts with replacement and keeps all of each prompt's comparisons.
    """
    by_group: dict = defaultdict(list)
    for o, g in zip(outcomes, groups):
        by_group[g].append(o)
    sums = [(sum(v), len(v)) for v in by_group.values()]
    rng = random.Random(seed)
    stats = []
    for _ in range(n_boot):
        s = n = 0
        for _ in range(len(sums)):
            gs, gn = sums[rng.randrange(len(sums))]
            s += gs
            n += gn
        stats.append(s / n)
    stats.sort()
    lo = stats[int((alpha / 2) * n_boot)]
    hi = stats[min(n_boot - 1, int((1 - alpha / 2) * n_boot))]
    return lo, hi


def ngrams(tokens: list[str], n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Corpus-level distinct-n: unique n-grams / all n-grams over all texts (0 when there are none)."""
    grams = [g for t in texts for g in ngrams(t.lower().split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def sequence_kl(logp, logp_ref, mask):
    """Per-sequence Monte-Carlo KL estimate on sampled tokens: sum_t mask * (log pi - log pi_ref).

    Tensors of shape (batch, time); ``mask`` is 1 on response tokens. The mean
    over sequences sampled from pi estimates KL(pi || pi_ref).
    """
    return ((logp - logp_ref) * mask).sum(-1)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


# The paired series a grader's evaluation reports (``grader_metrics``), each with a bootstrap CI.
GRADER_SERIES = ("score", "score_champion", "pass_rate", "pass_rate_champion", "score_diff", "pass_diff")


def grader_metrics(cand: list[float], champ: list[float], threshold: float, groups: list, *, n_boot: int = 2000,
                   seed: int = 0) -> dict:
    """A grader's evaluation of the candidate against the champion: per ``GRADER_SERIES``, the mean and its
    95% bootstrap CI (``<series>_ci_low``, ``<series>_ci_high``) resampling prompts (``groups``).

    ``cand[i]`` and ``champ[i]`` are the scores of the i-th pair of samples of one prompt; a response passes
    when its score is at least ``threshold``. ``score_diff`` is ``cand[i] - champ[i]`` and ``pass_diff`` the
    difference of the two passes, so their CIs are those of paired differences. Every series draws the same
    resampled prompts (one seed), so the CIs of a difference and of its parts come from the same draws."""
    if not cand or len(cand) != len(champ) or len(cand) != len(groups):
        raise ValueError("grader_metrics: one score of each policy per comparison, and one group each")
    passed, passed_champ = [float(x >= threshold) for x in cand], [float(x >= threshold) for x in champ]
    series = {"score": cand, "score_champion": champ, "pass_rate": passed, "pass_rate_champion": passed_champ,
              "score_diff": [a - b for a, b in zip(cand, champ)],
              "pass_diff": [a - b for a, b in zip(passed, passed_champ)]}
    out = {}
    for name in GRADER_SERIES:
        values = series[name]
        lo, hi = bootstrap_ci(values, groups, n_boot=n_boot, seed=seed)
        out.update({name: mean(values), f"{name}_ci_low": lo, f"{name}_ci_high": hi})
    return out



def perplexity_metrics(nll_cand: list[float], nll_champ: list[float], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Each policy's perplexity on reference texts and their ratio, from each text's mean per-token NLL (nats).

    ``perplexity`` is ``exp(mean_i nll_i)`` (each text weighs the same), and ``ratio`` the candidate's over the
    champion's, ``exp(mean_i (cand_i - champ_i))``, with a 95% CI: ``exp`` of the bootstrap CI of that mean
    difference, resampling texts (paired: both policies read the same texts)."""
    if not nll_cand or len(nll_cand) != len(nll_champ):
        raise ValueError("perplexity_metrics: one NLL of each policy per text")
    diffs = [a - b for a, b in zip(nll_cand, nll_champ)]
    lo, hi = bootstrap_ci(diffs, list(range(len(diffs))), n_boot=n_boot, seed=seed)
    return {"perplexity": math.exp(mean(nll_cand)), "perplexity_champion": math.exp(mean(nll_champ)),
            "ratio": math.exp(mean(diffs)), "ratio_ci_low": math.exp(lo), "ratio_ci_high": math.exp(hi)}

"""Building preference pairs from the k responses to one prompt. Pure functions, no I/O.

A pair is ``(i, j)``: indices into the prompt's responses. Which of the two is
*chosen* is the labeler's decision, made afterwards.
"""

from __future__ import annotations

import itertools
import random


def best_vs_worst(scores: list[float]) -> list[tuple[int, int]]:
    """The highest- against the lowest-scored response; no pair when every score ties.

    Ties are broken by the lower index, so the result is deterministic.
    """
    if len(scores) < 2:
        return []
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    worst = min(range(len(scores)), key=lambda i: (scores[i], i))
    return [] if scores[best] == scores[worst] else [(best, worst)]


def all_pairs(k: int) -> list[tuple[int, int]]:
    """Every unordered pair: k*(k-1)/2 of them."""
    return list(itertools.combinations(range(k), 2))


def random_pairs(k: int, n: int, rng: random.Random) -> list[tuple[int, int]]:
    """``n`` distinct unordered pairs drawn without replacement (all of them when n >= k*(k-1)/2)."""
    pool = all_pairs(k)
    return pool if n >= len(pool) else sorted(rng.sample(pool, n))


def build_pairs(strategy: str, scores: list[float], *, n_random: int = 2,
                rng: random.Random | None = None) -> list[tuple[int, int]]:
    if strategy == "best_vs_worst":
        return best_vs_worst(scores)
    if strategy == "all_pairs":
        return all_pairs(len(scores))
    if strategy == "random_pairs":
        return random_pairs(len(scores), n_random, rng or random.Random(0))
    raise ValueError(f"unknown pair strategy {strategy!r}")

"""Pair building from k responses, against pairs worked out by hand."""

import random

from tasks.pairs import all_pairs, best_vs_worst, build_pairs, random_pairs


def test_best_vs_worst():
    # scores [0.1, 0.9, -0.3, 0.5]: best is index 1 (0.9), worst index 2 (-0.3).
    assert best_vs_worst([0.1, 0.9, -0.3, 0.5]) == [(1, 2)]


def test_best_vs_worst_ties():
    # All equal: no preference to learn, so no pair.
    assert best_vs_worst([0.2, 0.2, 0.2]) == []
    # Best ties between 0 and 2 (both 1.0): the lower index wins; worst ties between 1 and 3: lower index.
    assert best_vs_worst([1.0, 0.0, 1.0, 0.0]) == [(0, 1)]
    assert best_vs_worst([0.5]) == []


def test_all_pairs_counts_k_choose_2():
    # k=4 -> 4*3/2 = 6 pairs, in lexicographic order.
    assert all_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert all_pairs(1) == []


def test_random_pairs_distinct_and_seeded():
    a = random_pairs(5, 3, random.Random(7))
    b = random_pairs(5, 3, random.Random(7))
    assert a == b and len(set(a)) == 3 and all(i < j for i, j in a)
    # Asking for more than k*(k-1)/2 = 3 pairs (k=3) gives all of them.
    assert random_pairs(3, 10, random.Random(0)) == [(0, 1), (0, 2), (1, 2)]


def test_build_pairs_dispatch():
    assert build_pairs("best_vs_worst", [0.0, 1.0]) == [(1, 0)]
    assert len(build_pairs("all_pairs", [0.0] * 4)) == 6
    assert len(build_pairs("random_pairs", [0.0] * 4, n_random=2, rng=random.Random(1))) == 2

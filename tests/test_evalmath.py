"""Evaluation math against values worked out by hand."""

import pytest
import torch

from tasks.evalmath import bootstrap_ci, distinct_n, outcome, sequence_kl, winrate


def test_winrate_counts_ties_as_half():
    # wins 1, 1, 0 and one tie 0.5 -> (1 + 1 + 0 + 0.5) / 4 = 0.625
    assert winrate([outcome(True), outcome(True), outcome(False), outcome(None)]) == 0.625
    with pytest.raises(ValueError):
        winrate([])


def test_bootstrap_ci_degenerate_and_spread():
    # All wins: every resample has win-rate 1, so the CI is [1, 1].
    assert bootstrap_ci([1.0] * 10, list(range(10))) == (1.0, 1.0)
    # 50 wins and 50 losses over 100 prompts: the CI straddles 0.5; its half-width is near
    # 1.96 * sqrt(0.25 / 100) = 0.098.
    lo, hi = bootstrap_ci([1.0] * 50 + [0.0] * 50, list(range(100)), seed=1)
    assert lo < 0.5 < hi and 0.08 < (hi - lo) / 2 < 0.12


def test_bootstrap_resamples_prompts_not_comparisons():
    # Two prompts, each with 50 identical outcomes: prompt A all wins, prompt B all losses.
    # Resampling comparisons would give a tight CI around 0.5; resampling the 2 prompts gives
    # {AA: 1.0, AB/BA: 0.5, BB: 0.0}, so the 95% CI must reach both 0 and 1.
    outcomes = [1.0] * 50 + [0.0] * 50
    groups = ["A"] * 50 + ["B"] * 50
    assert bootstrap_ci(outcomes, groups, seed=0) == (0.0, 1.0)


def test_distinct_n_by_hand():
    texts = ["the cake was great", "the cake was bad"]
    # unigrams: the, cake, was, great, the, cake, was, bad -> 8 total, 5 unique -> 0.625
    assert distinct_n(texts, 1) == 5 / 8
    # bigrams: (the cake)(cake was)(was great)(the cake)(cake was)(was bad) -> 6 total, 4 unique
    assert distinct_n(texts, 2) == 4 / 6
    assert distinct_n(["great great great great"], 1) == 1 / 4
    assert distinct_n(["one"], 2) == 0.0


def test_sequence_kl_by_hand():
    # Sequence 1: log-ratios 0.5 and -0.2 on response tokens, third token masked -> 0.3.
    # Sequence 2: log-ratio 0.1 on its only response token -> 0.1.
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -9.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.8, -0.1], [-0.6, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(sequence_kl(logp, ref, mask), torch.tensor([0.3, 0.1]))


def test_key_metrics_keep_the_figures_a_person_compares():
    # reports/metrics.json: every win-rate with its CI bounds, KL, both mean rewards, and the reward model's
    # held-out accuracy; details such as distinct-n and judge statistics stay in the stage's own report.
    from tasks.evaluate import key_metrics

    evaluation = {"winrate_truth": 0.6, "winrate_truth_ci_low": 0.55, "winrate_truth_ci_high": 0.65,
                  "winrate_embedding": 0.5, "kl": 0.5, "reward_mean": 1.0, "reward_mean_champion": 0.8,
                  "distinct_2": 0.9, "judge_embedding.comparisons": 8.0, "mean_length": 12.0}
    assert key_metrics(evaluation, {"heldout_accuracy": 0.75, "train_loss": 0.3}) == {
        "winrate_truth": 0.6, "winrate_truth_ci_low": 0.55, "winrate_truth_ci_high": 0.65,
        "winrate_embedding": 0.5, "kl": 0.5, "reward_mean": 1.0, "reward_mean_champion": 0.8,
        "reward_model_accuracy": 0.75}
    assert "reward_model_accuracy" not in key_metrics(evaluation, {})


def test_grader_metrics_pair_the_samples_of_each_prompt():
    from tasks.evalmath import grader_metrics

    # Two prompts, two samples each. Candidate scores 1, 0 | 1, 0.5; champion 0, 0 | 1, 0; pass at 0.5.
    # Means: candidate 2.5 / 4 = 0.625, champion 1 / 4 = 0.25, score_diff (1 + 0 + 0 + 0.5) / 4 = 0.375.
    # Passes: candidate 1, 0 | 1, 1 -> 0.75; champion 0, 0 | 1, 0 -> 0.25; pass_diff 1, 0 | 0, 1 -> 0.5.
    m = grader_metrics([1.0, 0.0, 1.0, 0.5], [0.0, 0.0, 1.0, 0.0], 0.5, ["p", "p", "q", "q"], n_boot=500, seed=3)
    assert (m["score"], m["score_champion"], m["score_diff"]) == (0.625, 0.25, 0.375)
    assert (m["pass_rate"], m["pass_rate_champion"], m["pass_diff"]) == (0.75, 0.25, 0.5)
    # Each prompt's pass difference sums to 1 over its 2 samples: every resample of whole prompts has mean
    # 0.5, so the CI is [0.5, 0.5]. Score differences: p's are 1, 0 (sum 1), q's 0, 0.5 (sum 0.5); a resample
    # holds p twice (2 / 4 = 0.5), p and q (1.5 / 4 = 0.375) or q twice (1 / 4 = 0.25), each with 500 draws
    # of 2 prompts: the 2.5% and 97.5% points are the two extremes, [0.25, 0.5].
    assert (m["pass_diff_ci_low"], m["pass_diff_ci_high"]) == (0.5, 0.5)
    assert (m["score_diff_ci_low"], m["score_diff_ci_high"]) == (0.25, 0.5)
    for k in ("score", "pass_rate", "score_champion"):
        assert m[f"{k}_ci_low"] <= m[k] <= m[f"{k}_ci_high"]


def test_scored_outcomes():
    from tasks.evaluate import scored_outcomes

    # higher score wins; equal scores tie; equal texts (after folding) tie whatever the scores
    assert scored_outcomes([1, 0, 0.5, 0.9], [0, 1, 0.5, 0.1], ["a", "b", "c", "Same  text"],
                           ["x", "y", "z", "same text"]) == [1.0, 0.0, 0.5, 0.5]

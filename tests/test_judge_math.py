"""Pure math of judges against values worked out by hand."""

import math

import pytest

from tasks.judgemath import (agreement, agreement_rate, combine_majority, combine_mean, combine_scores, decision,
                             first_preference, position_bias, score_probability, sigmoid, swap_average,
                             two_choice_probability)


def test_score_probability_by_hand():
    # scale 10, margin 0.1 -> sigmoid(1) = 1 / (1 + e^-1) = 0.731059
    assert score_probability(0.3, 0.2, 10.0) == pytest.approx(0.731059, abs=1e-6)
    # equal scores: a coin
    assert score_probability(1.0, 1.0, 3.0) == 0.5
    # huge margins do not overflow
    assert score_probability(1e6, 0.0, 10.0) == 1.0 and score_probability(0.0, 1e6, 10.0) == 0.0


def test_two_choice_probability_by_hand():
    # log-probs -0.2 (A) and -1.8 (B): softmax over the two = sigmoid(1.6) = 0.832018
    assert two_choice_probability(-0.2, -1.8) == pytest.approx(0.832018, abs=1e-6)
    assert two_choice_probability(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)   # 0.3 / (0.3 + 0.1)


def test_swap_average_of_a_judge_that_always_picks_the_first_position():
    # Asked (A, B) it says "first" with p = 1; asked (B, A) it again says "first" (= B) with p = 1.
    # Estimate (1 + (1 - 1)) / 2 = 0.5, and the two orders disagree about A.
    p, disagree = swap_average(1.0, 1.0)
    assert p == 0.5 and disagree


def test_swap_average_of_a_consistent_judge():
    # A first: 0.8 for A; B first: 0.3 for B, so 0.7 for A -> (0.8 + 0.7) / 2 = 0.75, both orders prefer A.
    p, disagree = swap_average(0.8, 0.3)
    assert p == pytest.approx(0.75) and not disagree


def test_decision():
    assert decision(0.5) is None and decision(0.51) is True and decision(0.2) is False


def test_ensembles_by_hand():
    members = [[0.9, 0.4, 0.5], [0.7, 0.2, 0.8], [0.2, 0.3, 0.6]]
    # mean: (0.9+0.7+0.2)/3 = 0.6, (0.4+0.2+0.3)/3 = 0.3, (0.5+0.8+0.6)/3 = 0.633333
    assert combine_mean(members) == pytest.approx([0.6, 0.3, 0.633333], abs=1e-6)
    # majority: votes A,A,B -> 2/3; B,B,B -> 0; tie,A,A -> (0.5 + 1 + 1)/3 = 0.833333
    assert combine_majority(members) == pytest.approx([2 / 3, 0.0, 0.833333], abs=1e-6)
    # all three agree only on the second comparison -> 1/3
    assert agreement_rate(members) == pytest.approx(1 / 3)


def test_agreement_with_humans_by_hand():
    # verdicts A, B, tie vs humans A, A, A -> (1 + 0 + 0.5) / 3 = 0.5
    assert agreement([0.9, 0.1, 0.5], [True, True, True]) == pytest.approx(0.5)


def test_combine_scores_puts_members_on_one_scale_by_hand():
    # A reward model (scale 1) scores A 0.5, B 0; the embedding judge (scale 10) scores A 0, B 0.3.
    # In logits: A = (1 * 0.5 + 10 * 0) / 2 = 0.25, B = (1 * 0 + 10 * 0.3) / 2 = 1.5.
    assert combine_scores([[0.5, 0.0], [0.0, 0.3]], [1.0, 10.0]) == pytest.approx([0.25, 1.5])
    # P(A better) = sigmoid(0.25 - 1.5) = 1 / (1 + e^1.25) = 1 / 4.490343 = 0.222700 < 0.5: B, as B scores higher.
    assert score_probability(0.25, 1.5, 1.0) == pytest.approx(0.222700, abs=1e-6)
    # The mean of the raw scores would rank A first (0.25 > 0.15) while the members' mean probability
    # (sigmoid(0.5) + sigmoid(-3)) / 2 = (0.622459 + 0.047426) / 2 = 0.334943 prefers B: the old disagreement.
    assert (sigmoid(0.5) + sigmoid(-3.0)) / 2 == pytest.approx(0.334943, abs=1e-6)
    with pytest.raises(ValueError):
        combine_scores([[0.5]], [1.0, 10.0])


def test_the_mean_of_probabilities_has_no_score_that_agrees_with_it():
    # Three members at logits -3, 1, 1 for A over B: mean probability
    # (0.047426 + 0.731059 + 0.731059) / 3 = 0.503181 > 0.5 (A), yet the logits sum to -1 (B).
    # The logit mean, sigmoid(-1/3) = 0.417430, sides with the sum: why a scoring ensemble uses it.
    assert combine_mean([[sigmoid(-3.0)], [sigmoid(1.0)], [sigmoid(1.0)]]) == pytest.approx([0.503181], abs=1e-6)
    s = combine_scores([[-3.0], [1.0], [1.0]], [1.0, 1.0, 1.0])     # A's minus B's score per member
    assert s == pytest.approx([-1 / 3]) and sigmoid(s[0]) == pytest.approx(0.417430, abs=1e-6)


def test_first_preference_and_directional_position_bias_by_hand():
    # first shown preferred in both asks -> 1; second both times -> 0; the same response both times -> 0.5;
    # a tie in one ask (an unparsed answer) counts half: (1 + 0.5) / 2 = 0.75; ties in both -> 0.5.
    assert first_preference(0.9, 0.8) == 1.0 and first_preference(0.1, 0.3) == 0.0
    assert first_preference(0.8, 0.3) == 0.5 and first_preference(0.9, 0.5) == 0.75
    assert first_preference(0.5, 0.5) == 0.5
    # One comparison flipped to the first position, one to the second, two consistent: the flip rate is
    # 2/4 = 0.5, but the flips cancel: mean (1 + 0 + 0.5 + 0.5) / 4 = 0.5 -> bias 0.
    assert position_bias([1.0, 0.0, 0.5, 0.5]) == 0.0
    # Both flips to the first position: (1 + 1 + 0.5 + 0.5) / 4 = 0.75 -> bias +0.25, the same flip rate 0.5.
    assert position_bias([1.0, 1.0, 0.5, 0.5]) == 0.25
    with pytest.raises(ValueError):
        position_bias([])

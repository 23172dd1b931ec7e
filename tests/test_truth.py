"""The hidden ground truth and the simulated annotator."""

import math
import statistics

import pytest

from tasks.envs.reviews import corpus, truth


def test_preference_probability_by_hand():
    # s_a - s_b = 0.5, T = 0.25 -> sigmoid(2) = 1 / (1 + e^-2) = 0.880797
    p = truth.preference_probability(1.0, 0.5, 0.25, 0.0)
    assert p == pytest.approx(0.880797, abs=1e-6)
    # with noise 0.1: 0.9 * 0.880797 + 0.1 * 0.119203 = 0.792717 + 0.011920 = 0.804638
    assert truth.preference_probability(1.0, 0.5, 0.25, 0.1) == pytest.approx(0.804638, abs=1e-6)
    # equal scores: 0.5 whatever the noise
    assert truth.preference_probability(0.3, 0.3, 1.0, 0.4) == pytest.approx(0.5)


def test_preference_probability_is_stable_for_sharp_annotators():
    # (s_a - s_b) / T = +-1e4 would overflow a naive exp(); the limits are 1 and 0.
    assert truth.preference_probability(1.0, 0.0, 1e-4, 0.0) == 1.0
    assert truth.preference_probability(0.0, 1.0, 1e-4, 0.0) == 0.0
    assert truth.preference_probability(0.0, 1.0, 1e-4, 0.25) == 0.25


def test_sentiment_negation_and_intensifier():
    # "great" = 0.8 -> tanh(0.8 / 1.5) = tanh(0.5333) = 0.48792
    assert truth.sentiment(truth.tokenize("The soup was great.")) == pytest.approx(math.tanh(0.8 / 1.5))
    # "really great" = 0.8 * 1.5 = 1.2 -> tanh(0.8) = 0.66404
    assert truth.sentiment(truth.tokenize("The soup was really great.")) == pytest.approx(math.tanh(0.8))
    # "would not come back": phrase (come, back) = +0.8, negated -> tanh(-0.8/1.5)
    assert truth.sentiment(truth.tokenize("I would not come back.")) == pytest.approx(math.tanh(-0.8 / 1.5))


def test_fluent_review_beats_repeating_a_good_word():
    # Guards against a truth that counts a surface feature: a policy that repeats one
    # good word until max_length must lose to a fluent review.
    fluent = "The ramen was great. I would come back again."
    for spam in ("great " * 20, "delicious delicious delicious delicious.",
                 "The ramen was great. The ramen was great. The ramen was great."):
        assert truth.truth_score("ramen", fluent).total > truth.truth_score("ramen", spam).total + 0.5
    assert truth.truth_score("ramen", "great " * 20).fluency == 0.0


def test_truth_prefers_positive_on_topic_fluent():
    s = lambda r: truth.truth_score("pasta", r).total
    assert s("The pasta was delicious. I would come back again.") > s("The pasta was bland. I would not come back.")
    assert s("The pasta was delicious.") > s("The soup was delicious.")      # on topic
    assert s("The pasta was delicious.") > s("The pasta was delicious")      # ends a sentence
    assert s("pasta delicious was the.") < s("The pasta was fine.")          # word salad


def test_demonstrations_cover_a_range_of_truth_scores():
    # The base policy learns from these: positive demos must score higher than negative
    # ones, else RL toward the truth would have nothing to find.
    c = corpus.build_corpus(1, 10, 300, 10)
    by_tone = {t: [truth.truth_score(corpus.dish_of(d["prompt"]), d["response"]).total
                   for d in c.demos if d["tone"] == t] for t in ("pos", "mid", "neg")}
    assert statistics.mean(by_tone["pos"]) > statistics.mean(by_tone["mid"]) > statistics.mean(by_tone["neg"])


def test_simulated_annotator_is_deterministic_and_noisy_at_the_configured_rate():
    good, bad = "The cake was wonderful. Highly recommended.", "The cake was awful. Not recommended."
    prompt = "Write a review of the cake at Blue Door."
    first = truth.simulated_preference(prompt, good, bad, temperature=0.25, noise=0.2, key=(1,))
    assert first == truth.simulated_preference(prompt, good, bad, temperature=0.25, noise=0.2, key=(1,))
    # Hidden scores: good: wonderful 1.0 + recommended 0.9 = 1.9 -> tanh(1.9/1.5) = 0.8529, +0.5 on topic = 1.3529;
    # bad: awful -1.0 + "not recommended" -0.9 = -1.9 -> -0.8529, +0.5 = -0.3529. Gap = 1.7058.
    gap = truth.truth_score("cake", good).total - truth.truth_score("cake", bad).total
    assert gap == pytest.approx(1.7058, abs=1e-3)
    # sigmoid(1.7058 / 0.25) = sigmoid(6.823) = 0.99891; with noise 0.2:
    # 0.8 * 0.99891 + 0.2 * 0.00109 = 0.79935.
    wins = [truth.simulated_preference(prompt, good, bad, temperature=0.25, noise=0.2, key=(i,))[0]
            for i in range(2000)]
    assert 0.77 < sum(wins) / len(wins) < 0.83
    # Noise 0 and a sharp annotator (T = 0.05: sigmoid(34.1) = 1 - 1.5e-15) never flips.
    noiseless = [truth.simulated_preference(prompt, good, bad, temperature=0.05, noise=0.0, key=(i,))[0]
                 for i in range(200)]
    assert all(noiseless)


def test_stable_uniform_range_and_spread():
    xs = [truth.stable_uniform("k", i) for i in range(1000)]
    assert all(0 <= x < 1 for x in xs) and 0.45 < statistics.mean(xs) < 0.55


def test_the_simulated_annotators_scale_is_its_bradley_terry_slope():
    # sigmoid((s_a - s_b) / T) at T = 0.25 is sigmoid(4 (s_a - s_b)): scale 4, so that in a mean ensemble its
    # score counts in the logits its comparisons use. With no label noise, its comparison is exactly
    # score_probability at that scale: s = 0.3 vs 0.1 -> sigmoid(4 * 0.2) = sigmoid(0.8) = 0.689974.
    from tasks.config import TruthConfig
    from tasks.envs.reviews import SimulatedAnnotator
    from tasks.judgemath import score_probability

    judge = SimulatedAnnotator(TruthConfig(noise=0.0, temperature=0.25), seed=0)
    assert judge.scale == 4.0
    verdicts = judge.compare_scored(["p"], ["a"], ["b"], [0.3], [0.1])
    assert verdicts.p_a[0] == pytest.approx(score_probability(0.3, 0.1, judge.scale)) == pytest.approx(0.689974,
                                                                                                        abs=1e-6)

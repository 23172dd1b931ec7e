"""The promotion gate: pass, and fail on the CI, on KL, and on each reward-hacking alarm."""

from tasks.config import PromoteConfig
from tasks.promotion_gate import decide

CFG = PromoteConfig(winrate_source="truth", min_ci_low=0.5, max_kl=5.0, max_length_ratio=1.5, alarm_judge="judge")
GOOD = {"winrate_truth": 0.72, "winrate_truth_ci_low": 0.61, "winrate_judge": 0.70, "winrate_judge_ci_low": 0.6,
        "kl": 1.2, "reward_mean": 1.5, "reward_mean_champion": 0.2, "mean_length": 12.0, "mean_length_champion": 11.0,
        "distinct_2": 0.16, "distinct_2_champion": 0.176}


def test_pass():
    d = decide(GOOD, CFG)
    assert d.promote and d.summary.startswith("promoted: winrate_truth 0.720, 95% CI low 0.610 > 0.5")


def test_fail_on_ci():
    d = decide({**GOOD, "winrate_truth": 0.56, "winrate_truth_ci_low": 0.49}, CFG)
    assert not d.promote and "CI low 0.490 <= 0.5" in d.summary


def test_ci_exactly_at_bound_fails():
    # The bound is strict: a lower bound of exactly 0.5 does not exclude a coin flip.
    assert not decide({**GOOD, "winrate_truth_ci_low": 0.5}, CFG).promote


def test_fail_on_kl():
    d = decide({**GOOD, "kl": 7.5}, CFG)
    assert not d.promote and d.reasons == ["KL 7.500 > 5.0"]


def test_fail_on_reward_hacking_alarm():
    # The reward model likes the candidate more while the independent judge prefers the champion.
    d = decide({**GOOD, "winrate_judge": 0.41}, CFG)
    assert not d.promote and "reward-hacking alarm" in d.summary


def test_no_alarm_when_reward_falls_with_judge():
    # Judge win-rate below 0.5 but the reward model agrees (score fell): not hacking; the CI decides.
    assert decide({**GOOD, "winrate_judge": 0.41, "reward_mean": 0.1}, CFG).promote


def test_fail_on_length_alarm():
    # 17.0 / 11.0 = 1.545 > 1.5
    d = decide({**GOOD, "mean_length": 17.0}, CFG)
    assert not d.promote and "length alarm: mean length x1.55" in d.summary


def test_fail_on_diversity_alarm():
    # distinct-2 0.102 vs the champion's 0.176: 0.102 / 0.176 = 0.58 < 0.8 (the default share)
    d = decide({**GOOD, "distinct_2": 0.102}, CFG)
    assert not d.promote and d.reasons == ["diversity alarm: distinct-2 0.102 is x0.58 of the champion's 0.176 < x0.8"]
    # 0.16 / 0.176 = 0.909 >= 0.8 passes; null turns the alarm off
    assert decide(GOOD, CFG).promote
    off = PromoteConfig(winrate_source="truth", alarm_judge="judge", min_distinct_ratio=None)
    assert decide({**GOOD, "distinct_2": 0.102}, off).promote


def test_judge_as_winrate_source():
    cfg = PromoteConfig(winrate_source="judge", min_ci_low=0.5, max_kl=5.0, max_length_ratio=1.5, alarm_judge=None)
    assert not decide({**GOOD, "winrate_judge_ci_low": 0.45}, cfg).promote
    assert decide(GOOD, cfg).summary.startswith("promoted: winrate_judge 0.700")


def test_no_alarm_judge_turns_the_alarm_off():
    cfg = PromoteConfig(winrate_source="truth", min_ci_low=0.5, max_kl=5.0, max_length_ratio=1.5, alarm_judge=None)
    assert decide({**GOOD, "winrate_judge": 0.41}, cfg).promote


def test_a_win_rate_the_evaluation_lacks_is_an_error_not_a_verdict():
    # On a user's task the metrics hold no winrate_truth: asking the gate for it must not decide silently.
    import pytest

    from tasks.errors import ConfigError

    m = {k: v for k, v in GOOD.items() if "truth" not in k}
    with pytest.raises(ConfigError, match="promote.winrate_source: the evaluation has no winrate_truth"):
        decide(m, CFG)


def test_the_gate_judge_must_agree_with_people_when_asked():
    # A gold judge that agrees with held-out human pairs only 0.54 of the time cannot promote at a 0.6 bar,
    # however high its win-rate; at 0.62 it can.
    cfg = PromoteConfig(winrate_source="judge", max_kl=5.0, alarm_judge=None, min_judge_human_agreement=0.6)
    d = decide({**GOOD, "human_agreement_judge": 0.54}, cfg)
    assert not d.promote and d.reasons == ["judge agrees with people on 0.540 of the held-out human pairs < 0.6"]
    assert decide({**GOOD, "human_agreement_judge": 0.62}, cfg).promote
    import pytest

    from tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="promote.min_judge_human_agreement: the evaluation has no "
                                          "human_agreement_judge"):
        decide(GOOD, cfg)


def test_a_gate_judge_the_policy_trains_against_is_named_in_the_reasons():
    # Allowed by promote.allow_training_judge, the gate still decides on the win-rate, and says whose it is,
    # whether it promotes or refuses.
    cfg = PromoteConfig(winrate_source="judge", max_kl=5.0, alarm_judge=None, allow_training_judge=True)
    how = "a judge the policy trains against (optimize.reward: judge)"
    d = decide(GOOD, cfg, how)
    assert d.promote and d.reasons[-1] == (
        "caution: the gate's judge judge is a judge the policy trains against (optimize.reward: judge), allowed "
        "by promote.allow_training_judge: its win-rate measures the candidate by its own training target")
    refused = decide({**GOOD, "winrate_judge_ci_low": 0.45}, cfg, how)
    assert not refused.promote and "promote.allow_training_judge" in refused.summary
    assert "allow_training_judge" not in decide(GOOD, cfg).summary


def _graded(cand, champ, diff, lo, *, score_lo=0.01):
    return {**GOOD, "winrate_correct": 0.6, "winrate_correct_ci_low": 0.45,
            "grader_correct.pass_rate": cand, "grader_correct.pass_rate_champion": champ,
            "grader_correct.pass_diff": diff, "grader_correct.pass_diff_ci_low": lo,
            "grader_correct.score": cand, "grader_correct.score_champion": champ,
            "grader_correct.score_diff": diff, "grader_correct.score_diff_ci_low": score_lo}


def test_a_grader_gates_by_its_paired_difference():
    cfg = PromoteConfig(winrate_source="correct", max_kl=5.0, alarm_judge=None)
    # pass rate 0.42 vs 0.30: +0.12 with its CI low +0.04 > 0 -> promoted, though the win-rate's CI low is 0.45
    d = decide(_graded(0.42, 0.30, 0.12, 0.04), cfg)
    assert d.promote and d.reasons[0] == ("correct's pass rate 0.420 vs the champion's 0.300: paired difference "
                                          "+0.120, 95% CI low +0.040 > 0")
    # the same figures with a CI low of -0.01: refused, and the reason says why
    d = decide(_graded(0.42, 0.30, 0.12, -0.01), cfg)
    assert not d.promote and "95% CI low -0.010 <= 0" in d.summary
    # exactly 0 does not exclude "no better"
    assert not decide(_graded(0.42, 0.30, 0.12, 0.0), cfg).promote
    # score_diff reads the mean scores' difference; winrate the win-rate against min_ci_low (0.45 <= 0.5)
    by_score = PromoteConfig(winrate_source="correct", max_kl=5.0, alarm_judge=None, grader_statistic="score_diff")
    assert decide(_graded(0.42, 0.30, 0.12, -0.01, score_lo=0.02), by_score).promote
    by_winrate = PromoteConfig(winrate_source="correct", max_kl=5.0, alarm_judge=None, grader_statistic="winrate")
    assert not decide(_graded(0.42, 0.30, 0.12, 0.04), by_winrate).promote

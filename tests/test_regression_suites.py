"""Regression suites (evaluate.regression): the perplexity ratio and a grader suite's paired difference with
their CIs, and the gate that refuses a candidate which lost ground on one of them, naming the suite."""

import dataclasses
import json
import math

import pytest
from tiny_models import tiny_policy

from tasks.config import EvaluateConfig, GraderSuiteConfig, PerplexitySuiteConfig, PromoteConfig
from tasks.evalmath import perplexity_metrics
from tasks.evaluate import regression_metrics
from tasks.promotion_gate import decide, regression_verdict

pytestmark = pytest.mark.filterwarnings("ignore")

BASE = {"winrate_truth": 0.72, "winrate_truth_ci_low": 0.61, "kl": 1.2, "reward_mean": 1.5,
        "reward_mean_champion": 0.2, "mean_length": 12.0, "mean_length_champion": 11.0, "distinct_2": 0.16,
        "distinct_2_champion": 0.176}
CFG = PromoteConfig(winrate_source="truth", max_kl=5.0, alarm_judge=None)


def test_perplexity_metrics_by_hand():
    # NLLs per text: candidate 1, 2; champion 1, 1. Differences 0, 1, mean 0.5: ratio e^0.5 = 1.6487.
    # Perplexities: e^((1 + 2) / 2) = e^1.5 and e^1. A resample of the 2 texts has mean difference 0, 0.5 or 1,
    # each likely enough in 1,000 draws that the 2.5% and 97.5% points are the extremes: CI [e^0, e^1].
    m = perplexity_metrics([1.0, 2.0], [1.0, 1.0], n_boot=1000, seed=0)
    assert m["ratio"] == pytest.approx(math.exp(0.5)) and m["perplexity"] == pytest.approx(math.exp(1.5))
    assert m["perplexity_champion"] == pytest.approx(math.e)
    assert (m["ratio_ci_low"], m["ratio_ci_high"]) == pytest.approx((1.0, math.e))


def _perplexity(ratio, hi, bound=1.1):
    return {"regression_fluency.perplexity": 12.0 * ratio, "regression_fluency.perplexity_champion": 12.0,
            "regression_fluency.ratio": ratio, "regression_fluency.ratio_ci_low": ratio - 0.02,
            "regression_fluency.ratio_ci_high": hi, "regression_fluency.max_ratio": bound}


def _graded(diff, lo, bound=0.05):
    return {"regression_larger.gate_value": 0.8 + diff, "regression_larger.gate_value_champion": 0.8,
            "regression_larger.gate_on_score": 0.0, "regression_larger.gate_diff": diff,
            "regression_larger.gate_diff_ci_low": lo, "regression_larger.max_drop": bound}


def test_the_gate_refuses_a_candidate_that_may_have_regressed_and_names_the_suite():
    # perplexity x1.03 of the champion's, CI high x1.08 <= x1.10: held
    held = decide({**BASE, **_perplexity(1.03, 1.08)}, CFG)
    assert held.promote and ("regression suite fluency: perplexity 12.360 vs the champion's 12.000, ratio x1.030, "
                             "95% CI high x1.080 <= x1.100") in held.reasons
    # the CI reaches x1.12: a loss beyond the bound is not ruled out, so the candidate is refused
    lost = decide({**BASE, **_perplexity(1.05, 1.12)}, CFG)
    assert not lost.promote and lost.reasons == ["regression suite fluency: perplexity 12.600 vs the champion's "
                                                 "12.000, ratio x1.050, 95% CI high x1.120 > x1.100"]
    # a grader suite: pass rate 0.78 vs 0.80 (-0.02), CI low -0.04 >= -0.05 holds; CI low -0.07 is refused
    assert regression_verdict({**_graded(-0.02, -0.04)}, "larger")[0]
    refused = decide({**BASE, **_graded(-0.02, -0.07)}, CFG)
    assert not refused.promote and refused.reasons == [
        "regression suite larger: pass rate 0.780 vs the champion's 0.800, paired difference -0.020, 95% CI low "
        "-0.070 < -0.05"]
    # both suites at once: each is named
    both = decide({**BASE, **_perplexity(1.05, 1.12), **_graded(-0.02, -0.07)}, CFG)
    assert [r.split(":")[0] for r in both.reasons] == ["regression suite fluency", "regression suite larger"]


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    """A tiny policy and a copy of it whose weights were shaken: the copy reads the same texts worse."""
    import torch

    from tasks.policy import load_policy

    path = tiny_policy(tmp_path_factory.mktemp("champ"))
    champ, tok = load_policy(path, "cpu")
    cand, _ = load_policy(path, "cpu")
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in cand.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    return champ, cand, tok


def test_a_shaken_candidate_fails_the_perplexity_suite_the_champion_itself_passes(policies, tmp_path):
    champ, cand, tok = policies
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in
                             ["How do I bake bread? Mix flour and water.", "Which fruit is red? An apple.",
                              "Tell me a joke about a chicken.", "Bake it, then mix the yeast."] * 5))
    cfg = dataclasses.replace(EvaluateConfig(), n_boot=200, batch_size=8)
    suites = {"fluency": PerplexitySuiteConfig(texts=str(texts), max_increase=0.1)}
    same = regression_metrics(suites, None, champ, champ, tok, cfg, "cpu")
    assert same["regression_fluency.ratio"] == pytest.approx(1.0) and same["regression_fluency.texts"] == 20
    assert decide({**BASE, **same}, CFG).promote
    worse = regression_metrics(suites, None, cand, champ, tok, cfg, "cpu")
    assert worse["regression_fluency.ratio_ci_low"] > 1.1
    d = decide({**BASE, **worse}, CFG)
    assert not d.promote and d.reasons[0].startswith("regression suite fluency: perplexity")


def test_a_grader_suite_scores_both_policies_answers(policies, tmp_path):
    from tasks.judges.configs import RegexConfig
    from tasks.judges.graders import RegexGrader

    champ, cand, tok = policies
    prompts = tmp_path / "suite.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"Which fruit is red? Say it {i}."}) + "\n"
                               for i in range(6)))
    cfg = dataclasses.replace(EvaluateConfig(), n_boot=200, batch_size=8, max_new_tokens=6)
    anything = RegexGrader("any", RegexConfig(pattern=".*", mode="fullmatch", dotall=True))   # every answer passes
    suites = {"red": GraderSuiteConfig(prompts=str(prompts), grader="any", samples_per_prompt=2, max_drop=0.05)}
    m = regression_metrics(suites, lambda name: anything, cand, champ, tok, cfg, "cpu")
    # 6 prompts x 2 samples, every answer passes for both: pass rates 1, difference 0 with a CI of [0, 0]
    assert m["regression_red.prompts"] == 6 and m["regression_red.pass_rate"] == 1.0
    assert (m["regression_red.gate_diff"], m["regression_red.gate_diff_ci_low"]) == (0.0, 0.0)
    assert regression_verdict(m, "red")[0]

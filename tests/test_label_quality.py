"""Feedback-shape conversions and agreement statistics, against values worked out by hand."""

import math

import pytest

from tasks.judges.pairwise import PairwiseJudge
from tasks.labels.agreement import (agreement_with, cohen_kappa, flag_annotators, krippendorff_alpha,
                                    majority_agreement, overlap_units, throughput)
from tasks.labels.convert import (Comparison, Rating, combine_attributes, comparisons_to_rows, preference_pairs,
                                  ratings_to_rows)


def cmp(choice, annotator, a_id="x", b_id="y"):
    return Comparison("p1", a_id, b_id, f"text {a_id}", f"text {b_id}", choice, annotator)


def test_comparisons_majority_confidence_and_ties():
    rows, stats = comparisons_to_rows([cmp("a", "u1"), cmp("a", "u2"), cmp("b", "u3"),       # a: 2 of 3
                                       cmp("b", "u1", "x", "z"),                              # b alone
                                       cmp("a", "u1", "y", "z"), cmp("b", "u2", "y", "z"),    # 1-1: tie
                                       cmp("tie", "u1", "z", "w")])                           # said tie
    assert [(r["chosen_id"], r["rejected_id"]) for r in rows] == [("x", "y"), ("z", "x"), ("y", "z"), ("z", "w")]
    assert rows[0]["confidence"] == pytest.approx(2 / 3) and rows[0]["labeler"] == "human:u1+u2+u3"
    assert rows[0]["votes"] == {"a": 2, "b": 1, "tie": 0} and "tie" not in rows[0]
    assert rows[1]["chosen"] == "text z" and rows[1]["confidence"] == 1.0
    assert rows[2]["tie"] and rows[3]["tie"] and rows[2]["confidence"] == 0.5
    assert stats == {"annotations": 7, "pairs": 2, "ties": 2, "tie_rate": 0.5}


def test_comparison_rejects_unknown_choice():
    with pytest.raises(ValueError, match="choice 'c'"):
        comparisons_to_rows([cmp("c", "u1")])


def test_preference_pairs_ties():
    rows, _ = comparisons_to_rows([cmp("a", "u1"), cmp("tie", "u1", "z", "w")])
    assert [r["chosen_id"] for r in preference_pairs(rows)] == ["x"]
    sym = preference_pairs(rows, "symmetric")
    # the tie becomes both orders: z over w and w over z
    assert [(r["chosen_id"], r["rejected_id"]) for r in sym] == [("x", "y"), ("z", "w"), ("w", "z")]
    with pytest.raises(ValueError):
        preference_pairs(rows, "keep")


def rating(rid, value, annotator="u1", prompt_id="p", **kw):
    return Rating(prompt_id, rid, f"resp {rid}", annotator, value=value, **kw)


def test_likert_pairs_margin_and_kto():
    # The docstring's example: x = mean(5, 4) = 4.5, y = 3, z = 4; margin 1 -> x>y, z>y; x-z = 0.5 < 1.
    items = [rating("x", 5), rating("x", 4, "u2"), rating("y", 3), rating("z", 4), rating("q", 1, prompt_id="p2")]
    pairs, ratings, stats = ratings_to_rows(items, margin=1, threshold=4)
    assert [(r["chosen_id"], r["rejected_id"]) for r in pairs] == [("x", "y"), ("z", "y")]
    assert pairs[0]["score_chosen"] == 4.5 and pairs[0]["labeler"] == "human:u1+u2"
    assert {r["response_id"]: (r["score"], r["good"]) for r in ratings} == {
        "x": (4.5, True), "y": (3.0, False), "z": (4.0, True), "q": (1.0, False)}
    assert stats == {"annotations": 5, "responses_rated": 4, "pairs": 2, "skipped_within_margin": 1,
                     "kto_good": 2, "kto_bad": 2}
    # margin 0.5 admits x>z too; equal scores never make a pair
    assert len(ratings_to_rows(items, margin=0.5)[0]) == 3
    assert ratings_to_rows([rating("x", 3), rating("y", 3)], margin=0)[0] == []


def test_attributes_weighted_and_kept():
    # (2*4 + 1*1) / 3 = 3.0
    assert combine_attributes({"helpfulness": 4, "safety": 1}, {"helpfulness": 2, "safety": 1}) == 3.0
    # only scored attributes count: helpfulness alone -> 4
    assert combine_attributes({"helpfulness": 4}, {"helpfulness": 2, "safety": 1}) == 4.0
    with pytest.raises(ValueError, match="not in the rubric"):
        combine_attributes({"tone": 3}, {"safety": 1})
    w = {"helpfulness": 2.0, "safety": 1.0}
    items = [rating("x", None, attributes={"helpfulness": 5, "safety": 2}),     # (10 + 2) / 3 = 4
             rating("y", None, attributes={"helpfulness": 2, "safety": 5})]     # (4 + 5) / 3 = 3
    pairs, ratings, _ = ratings_to_rows(items, margin=1, weights=w)
    assert pairs[0]["chosen_id"] == "x" and pairs[0]["score_chosen"] == 4.0 and pairs[0]["score_rejected"] == 3.0
    assert pairs[0]["attributes_chosen"] == {"helpfulness": 5, "safety": 2}
    assert ratings[1]["attributes"] == {"helpfulness": 2, "safety": 5}
    with pytest.raises(ValueError, match="rubric's weights"):
        ratings_to_rows(items, margin=1)


def test_comments_kept_with_judged_scores():
    items = [rating("x", 0.8, comment="clear and kind"), rating("y", 0.1, comment="rude")]
    pairs, ratings, _ = ratings_to_rows(items, margin=0.5)
    assert pairs[0]["comment_chosen"] == "clear and kind" and pairs[0]["comment_rejected"] == "rude"
    assert ratings[1]["comment"] == "rude" and "good" not in ratings[1]


def test_cohen_kappa_two_by_two():
    # The docstring's table: (a,a) x8, (a,b) x2, (b,a) x3, (b,b) x7 -> kappa 0.5
    x = ["a"] * 10 + ["b"] * 10
    y = ["a"] * 8 + ["b"] * 2 + ["a"] * 3 + ["b"] * 7
    assert cohen_kappa(x, y) == pytest.approx(0.5)
    assert cohen_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    # always opposite on a balanced set: p_o = 0, p_e = 0.5 -> -1
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))


def test_krippendorff_alpha():
    assert krippendorff_alpha([["a", "a"], ["b", "b"], ["a", "b"]]) == pytest.approx(4 / 9)
    assert krippendorff_alpha([["a", "a"], ["b", "b"], ["a"]]) == pytest.approx(1.0)   # [a] is not pairable
    # Interval: units [1,2], [4,5]. o_12 = o_21 = o_45 = o_54 = 1, n = 4, n_c = 1 each.
    # observed = (o_12 + o_21) * (1-2)^2 + (o_45 + o_54) * (4-5)^2 = 2 + 2 = 4;
    # expected = sum over c != k of n_c n_k (c-k)^2 =
    # 2 * [(1-2)^2 + (1-4)^2 + (1-5)^2 + (2-4)^2 + (2-5)^2 + (4-5)^2] = 2 * 40 = 80
    # alpha = 1 - (n - 1) * 4 / 80 = 1 - 3 * 4 / 80 = 0.85
    assert krippendorff_alpha([[1, 2], [4, 5]], "interval") == pytest.approx(0.85)
    assert math.isnan(krippendorff_alpha([["a"], ["b"]]))


def test_majority_agreement_and_flags():
    labels = {1: {"u": "a", "v": "a", "w": "b"}, 2: {"u": "b", "v": "a", "w": "a"},
              3: {"u": "a", "v": "a", "w": "a"}}
    # item 3: everyone agrees with the other two. Items 1-2 as in the docstring.
    per = majority_agreement(labels)
    assert per["u"] == {"items": 2, "agree": 1, "agreement": 0.5}
    assert per["w"] == {"items": 2, "agree": 1, "agreement": 0.5}
    assert per["v"] == {"items": 1, "agree": 1, "agreement": 1.0}
    assert flag_annotators(per, 0.6) == ["u", "w"]
    assert flag_annotators(per, 0.6, min_items=3) == []
    assert overlap_units({1: {"u": "a"}, 2: {"u": "a", "v": "b"}}) == [["a", "b"]]


def test_agreement_with_and_throughput():
    assert agreement_with({1: "a", 2: "b", 3: "a"}, {1: "a", 2: "a", 4: "b"}) == (0.5, 2)
    assert math.isnan(agreement_with({1: "a"}, {2: "a"})[0])
    assert throughput({"u": [50.0] * 12, "v": [0.0]})["u"] == pytest.approx(72.0)


def test_majority_agreement_numeric_tolerance():
    # item 1: u=5, others (4, 2) -> median 3; |5-3| = 2 > 1: disagree. v=4, others (5, 2) -> 3.5: agree.
    # w=2, others (5, 4) -> 4.5: disagree.
    per = majority_agreement({1: {"u": 5, "v": 4, "w": 2}}, tolerance=1)
    assert {a: s["agree"] for a, s in per.items()} == {"u": 0, "v": 1, "w": 0}


class _Scripted(PairwiseJudge):
    """A judge that asks in both orders, answering P(first shown is better) from a script (first, second) -> p;
    0.5 is what an unparsed HTTP answer becomes."""

    def __init__(self, script):
        super().__init__("scripted", None)
        self.script = script

    def p_first(self, prompts, first, second):
        return [self.script[(f, s)] for f, s in zip(first, second)]


def _human_rows(n):
    # the people chose c<i> over r<i>; one tied row, which judges never see
    rows = [{"prompt_id": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "chosen_id": f"c{i}",
             "rejected_id": f"r{i}"} for i in range(1, n + 1)]
    return rows + [{"prompt_id": "p9", "chosen": "x", "rejected": "y", "chosen_id": "x", "rejected_id": "y",
                    "tie": True}]


def test_judge_agreement_counts_ties_half_and_reports_bias_apart_from_flips():
    from tasks.labels.quality import judge_agreement

    # p_first of (chosen first) and (rejected first) for each of 5 pairs:
    script = {("c1", "r1"): 0.9, ("r1", "c1"): 0.2,   # chosen both times: P(A) (0.9 + 0.8) / 2 = 0.85, agrees
              ("c2", "r2"): 0.8, ("r2", "c2"): 0.7,   # first both times: (0.8 + 0.3) / 2 = 0.55, agrees; flips
              ("c3", "r3"): 0.5, ("r3", "c3"): 0.5,   # unparsed both times: 0.5, a tie (counts 1/2)
              ("c4", "r4"): 0.3, ("r4", "c4"): 0.6,   # rejected both times: (0.3 + 0.4) / 2 = 0.35, disagrees
              ("c5", "r5"): 0.2, ("r5", "c5"): 0.1}   # second both times: (0.2 + 0.9) / 2 = 0.55, agrees; flips
    rows = _human_rows(5)
    metrics, report = judge_agreement(rows, [f"prompt {r['prompt_id']}" for r in rows], {"j": _Scripted(script)})
    j = report["j"]
    # agreement (1 + 1 + 0.5 + 0 + 1) / 5 = 0.7 (dropping the tie would give 3 / 4 = 0.75); 1 tie of 5 pairs
    assert j["agreement"] == pytest.approx(0.7) and j["ties"] == 1 and j["tie_rate"] == pytest.approx(0.2)
    assert j["pairs"] == 5
    # flips: pairs 2 and 5 -> 2 / 5 = 0.4. Share of asks preferring the first position per pair:
    # 0.5, 1, 0.5, 0.5, 0 -> mean 0.5 -> directional bias 0: one flip to each side cancels.
    assert j["position_flip_rate"] == pytest.approx(0.4) and j["position_bias"] == pytest.approx(0.0)
    assert j["position_bias_ci_low"] < 0.0 < j["position_bias_ci_high"]
    assert metrics["judge.j.ties"] == 1.0 and metrics["judge.j.position_bias"] == pytest.approx(0.0)
    assert "position_bias_rate" not in j and "judge.j.position_bias_rate" not in metrics


def test_a_judge_that_always_picks_the_first_position():
    from tasks.labels.quality import judge_agreement

    # P(first better) = 1 in every ask: every pair's two asks cancel to P(A) 0.5, a tie each, so agreement is
    # 5 * 0.5 / 5 = 0.5 with 5 ties (dropping ties left no pairs at all); every pair flips (rate 1) and every ask
    # prefers the first position: bias 1 - 0.5 = +0.5, a CI of [0.5, 0.5] as every resample is the same.
    script = {(f"{x}{i}", f"{y}{i}"): 1.0 for i in range(1, 6) for x, y in (("c", "r"), ("r", "c"))}
    rows = _human_rows(5)
    _, report = judge_agreement(rows, ["p"] * len(rows), {"j": _Scripted(script)})
    j = report["j"]
    assert j["agreement"] == 0.5 and j["ties"] == 5 and j["tie_rate"] == 1.0
    assert j["position_flip_rate"] == 1.0 and j["position_bias"] == 0.5
    assert j["position_bias_ci_low"] == j["position_bias_ci_high"] == 0.5

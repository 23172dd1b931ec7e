"""Graders: string_check, regex, text_similarity, python, score_model and multi, on values worked out by hand;
the formula language and its refusals; the python grader's worker limits; score_model against an OpenAI-format
stand-in server."""

import os
import re
import textwrap
import time

import pytest
import yaml
from chat_server import ScriptedChatServer

from tasks.config import parse_params
from tasks.errors import ConfigError
from tasks.formula import ANY_NAME, FormulaError, evaluate, names_in, parse
from tasks.judges import JudgeContext, build_judge, reference_fields
from tasks.judges.score_model import parse_score
from tasks.textsim import lcs_length, rouge_l, rouge_n, rouge_tokens, similarity

pytestmark = pytest.mark.filterwarnings("ignore")

RUBRIC = {"name": "t", "criteria": [{"name": "right", "description": "The answer is correct.", "weight": 1}]}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with a rubric and a package of grading functions, as the working directory."""
    (tmp_path / "rubric.yaml").write_text(yaml.safe_dump(RUBRIC))
    pkg = tmp_path / "mygrading"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "checks.py").write_text(textwrap.dedent('''
        import os, time

        def exact(row, response):
            return float(response == str(row["answer"]))

        def as_dict(row, response):
            return {"score": len(response) / 10, "note": "length"}

        def as_bool(row, response):
            return response.endswith("!")

        def boom(row, response):
            if response == "bad":
                raise ValueError("no way")
            return 1.0

        def slow(row, response):
            if response == "slow":
                time.sleep(30)
            return 0.5

        def die(row, response):
            if response == "die":
                os._exit(3)
            return 0.25

        def hog(row, response):
            if response == "hog":
                blob = bytearray(2_000_000_000)
                return float(len(blob))
            return 0.75

        def text(row, response):
            return "high"

        def nan(row, response):
            return float("nan")

        def secrets(row, response):
            return float("RFT_TEST_SECRET" in os.environ) + 10 * float("RFT_TEST_ALLOWED" in os.environ)

        def noisy(row, response):
            import sys
            print(42)                              # Python's stdout
            sys.__stdout__.write("7\\n")            # the real one
            sys.__stdout__.flush()
            os.system("echo 13; echo '{\\"seq\\": 1, \\"value\\": 99}'")   # a child process
            return 0.5

        def spawn(row, response):
            import subprocess
            child = subprocess.Popen(["sleep", "60"])
            open(row["pidfile"], "w").write(str(child.pid))
            time.sleep(60)
            return 1.0

        NOT_CALLABLE = 3
        '''))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def judge(project, name: str, judges: dict):
    params = parse_params({"task": {"env": "none", "rubric": str(project / "rubric.yaml")},
                           "judges": {"reward": {"kind": "reward_model"}, **judges}, "policy": {"base_model": "x"},
                           "label": {"judge": name, "pairs": "all_pairs"}, "evaluate": {"judges": [name]},
                           "promote": {"winrate_source": name, "alarm_judge": None}})
    return build_judge(name, JudgeContext.of(params)), params


ROWS = [{"id": "a", "prompt": "What is 2 + 3?", "answer": "5"}, {"id": "b", "prompt": "What is 7 - 9?", "answer": "-2"}]


# ---------------------------------------------------------------- the formula language

def test_the_formula_computes_what_it_says():
    # 0.7 * 1 + 0.3 * 0 = 0.7
    assert evaluate(parse("0.7 * correct + 0.3 * format", {"correct", "format"}),
                    {"correct": 1.0, "format": 0.0}) == pytest.approx(0.7)
    # * before +, unary minus tightest: -1 - (-2 * 3) + max(1, 1, 4) / 2 = -1 + 6 + 2 = 7
    assert evaluate(parse("-a - -2*3 + max(a,1,4)/2", ANY_NAME), {"a": 1.0}) == 7.0
    # parentheses: (1 + 2) * 3 = 9; left to right: 8 / 2 / 2 = 2; 1 - 2 - 3 = -4
    assert evaluate(parse("(1 + 2) * 3", ()), {}) == 9.0
    assert evaluate(parse("8 / 2 / 2", ()), {}) == 2.0
    assert evaluate(parse("1 - 2 - 3", ()), {}) == -4.0
    # clip(2 - 0.5, 0, 1) = 1; clip(-3, 0, 1) = 0; min(0.2, x=0.9) = 0.2
    assert evaluate(parse("clip(x - 1/2, 0, 1)", ANY_NAME), {"x": 2.0}) == 1.0
    assert evaluate(parse("clip(x, 0, 1)", ANY_NAME), {"x": -3.0}) == 0.0
    assert evaluate(parse("min(0.2, x)", ANY_NAME), {"x": 0.9}) == 0.2
    assert names_in(parse("a * b + a + max(c, 1)", ANY_NAME)) == ["a", "b", "c"]
    assert evaluate(parse("1e-1 * a + .5", ANY_NAME), {"a": 10.0}) == pytest.approx(1.5)


@pytest.mark.parametrize("text, says", [
    ("a ** 2", "expected a number"),                       # no power
    ('__import__("os")', "not allowed"),                  # no strings
    ("__import__(a)", "not a function of the language"),  # no other calls
    ("a.real", "'.' at position 2 is not allowed"),      # no attributes
    ("a / b", "divisor at position 5 names a grader"),    # a score could make it zero
    ("a / (2 - 2)", "divisor at position 5 is zero"),
    ("c + a", "'c' at position 1 is not a grader"),
    ("min(a)", "takes at least 2 arguments"),
    ("clip(a, 1)", "takes 3 arguments"),
    ("clip(a, 1, 0)", "low bound is above its high bound"),
    ("min + 1", "is a function: call it"),
    ("(a + b", "expected ')'"),
    ("a b", "unexpected 'b'"),
    ("a +", "found the end"),
    ("   ", "empty"),
    ("a; b", "';' at position 2 is not allowed"),
    ("1e999 * a", "is not finite"),
    ("a / (1e308 * 10)", "is not finite"),
    ("(" * 3000 + "a" + ")" * 3000, "nested too deeply"),
    ("-" * 5000 + "a", "nested too deeply"),
])
def test_the_formula_language_refuses(text, says):
    with pytest.raises(FormulaError, match=re.escape(says)):
        parse(text, {"a", "b"})


# ---------------------------------------------------------------- string_check and regex

def test_string_check_operations_fields_and_extraction(project):
    g, _ = judge(project, "correct", {"correct": {"kind": "string_check", "reference": "answer",
                                                  "extract": r"Answer:\s*(-?\d+)"}})
    assert g.fields == ("answer",)
    # "Answer: 5" extracts 5 == "5"; "Answer: 4" extracts 4; "5" alone has no "Answer:" so no match: a miss
    assert g.score([r["prompt"] for r in ROWS] + ["q"], ["Answer: 5", " Answer: -2 \n", "5"],
                   ROWS + [ROWS[0]]) == [1.0, 1.0, 0.0]
    assert g.score(["q"], ["Answer: 4"], ROWS[:1]) == [0.0]
    # without rows, a field cannot be read: an error that says so, never a silent 0
    with pytest.raises(ConfigError, match="judges.correct: reads the prompt rows' field 'answer'"):
        g.score(["q"], ["Answer: 5"])
    with pytest.raises(ConfigError, match="prompt 'x' has no usable 'answer' field"):
        g.score(["q"], ["Answer: 5"], [{"id": "x", "prompt": "q"}])

    lit, _ = judge(project, "polite", {"polite": {"kind": "string_check", "literal": "THANKS", "operation": "contains",
                                                  "ignore_case": True, "match_score": 2.0, "miss_score": -1.0,
                                                  "pass_threshold": 2.0}})
    assert lit.score(["q", "q"], ["many thanks!", "no"]) == [2.0, -1.0]
    # a list of acceptable strings: equals any; not_contains none of them
    rows = [{"answer": ["yes", "y"]}]
    any_of, _ = judge(project, "yes", {"yes": {"kind": "string_check", "reference": "answer"}})
    assert any_of.score(["q", "q", "q"], ["y", "yes", "no"], rows * 3) == [1.0, 1.0, 0.0]
    none_of, _ = judge(project, "clean", {"clean": {"kind": "string_check", "reference": "answer",
                                                    "operation": "not_contains"}})
    assert none_of.score(["q", "q"], ["no", "yes sir"], rows * 2) == [1.0, 0.0]


@pytest.mark.parametrize("op, response, target, ok", [
    ("equals", "Paris", "Paris", True), ("equals", "paris", "Paris", False),
    ("not_equals", "Rome", "Paris", True), ("contains", "in Paris.", "Paris", True),
    ("starts_with", "Paris is", "Paris", True), ("starts_with", "It is Paris", "Paris", False),
    ("ends_with", "It is Paris", "Paris", True), ("not_contains", "Rome", "Paris", True),
])
def test_string_check_each_operation(op, response, target, ok):
    from tasks.judges.graders import string_check

    assert string_check(op, response, target, False) is ok


def test_regex_modes_flags_and_scores(project):
    search, _ = judge(project, "f", {"f": {"kind": "regex", "pattern": r"answer: \d+", "ignore_case": True}})
    assert search.score(["q"] * 3, ["So, ANSWER: 12", "answer: x", ""]) == [1.0, 0.0, 0.0]
    full, _ = judge(project, "f", {"f": {"kind": "regex", "pattern": r"Answer: -?\d+", "mode": "fullmatch",
                                         "miss_score": -0.5}})
    # surrounding whitespace is stripped before matching; a trailing word fails a full match
    assert full.score(["q"] * 3, ["Answer: -3\n", "Answer: 3 ok", "answer: 3"]) == [1.0, -0.5, -0.5]
    lines, _ = judge(project, "f", {"f": {"kind": "regex", "pattern": r"^- \w+$", "multiline": True}})
    assert lines.score(["q", "q"], ["Items:\n- one", "Items: - one"]) == [1.0, 0.0]
    # two graded responses compare as sigmoid(scale * margin): scale 10, margin 1 -> 0.9999546
    v = search.compare(["q"], ["answer: 1"], ["none"])
    assert v.p_a == pytest.approx([0.9999546], abs=1e-6) and v.a_wins == [True]
    assert search.compare(["q"], ["answer: 1"], ["answer: 2"]).a_wins == [None]


# ---------------------------------------------------------------- text_similarity

def test_rouge_by_hand():
    # tokens: lower-cased, non-alphanumerics are spaces
    assert rouge_tokens("The Cat, sat!") == ["the", "cat", "sat"]
    # "the cat sat" vs "the cat sat down": 3 common unigrams; P = 3/3, R = 3/4, F1 = 2 * 1 * 0.75 / 1.75 = 6/7
    assert rouge_n("the cat sat", "the cat sat down", 1) == pytest.approx(6 / 7)
    # bigrams: {the cat, cat sat} vs {the cat, cat sat, sat down}: 2 common; P = 1, R = 2/3, F1 = 0.8
    assert rouge_n("the cat sat", "the cat sat down", 2) == pytest.approx(0.8)
    # LCS of "a b c d" and "a c b d" is 3 (a b d or a c d); P = R = 3/4, F1 = 0.75
    assert lcs_length(list("abcd"), list("acbd")) == 3
    assert rouge_l("a b c d", "a c b d") == pytest.approx(0.75)
    # clipped counts: "the the the" vs "the cat": 1 common unigram; P = 1/3, R = 1/2, F1 = 2/5
    assert rouge_n("the the the", "the cat", 1) == pytest.approx(0.4)
    assert rouge_n("", "the cat", 1) == 0.0
    # several references: the best one counts
    assert similarity("rouge1", "the cat", ["a dog", "the cat"]) == 1.0
    assert similarity("exact_match", "  The  cat ", ["the cat"], ignore_case=True) == 1.0
    assert similarity("exact_match", "The cat", ["the cat"]) == 0.0


def test_text_similarity_through_the_evaluate_module(project):
    import sacrebleu

    rows = [{"id": "a", "reference": "the cat sat on the mat"}, {"id": "b", "reference": ["a dog ran", "dogs run"]}]
    for metric, expect in (("rougeL", [1.0, 0.0]), ("exact_match", [1.0, 0.0])):
        g, _ = judge(project, "sim", {"sim": {"kind": "text_similarity", "metric": metric}})
        assert g.score(["q", "q"], ["the cat sat on the mat", "birds fly"], rows) == pytest.approx(expect)
    # BLEU and chrF are sacreBLEU's sentence scores / 100, all references read
    bleu, _ = judge(project, "sim", {"sim": {"kind": "text_similarity", "metric": "bleu"}})
    got = bleu.score(["q", "q"], ["the cat sat on a mat", "a dog ran fast"], rows)
    assert got == pytest.approx([sacrebleu.sentence_bleu("the cat sat on a mat", ["the cat sat on the mat"]).score / 100,
                                 sacrebleu.sentence_bleu("a dog ran fast", ["a dog ran", "dogs run"]).score / 100])
    assert 0 < got[0] < 1
    chrf, _ = judge(project, "sim", {"sim": {"kind": "text_similarity", "metric": "chrf"}})
    assert chrf.score(["q"], ["the cat sat on the mat"], rows[:1]) == pytest.approx([1.0])


def test_text_similarity_cosine(project):
    g, _ = judge(project, "sim", {"sim": {"kind": "text_similarity", "metric": "cosine"}})
    same, other, empty = g.score(["q"] * 3, ["The soup was hot.", "Stock markets fell sharply today.", ""],
                                 [{"reference": "The soup was hot."}] * 3)
    assert same == pytest.approx(1.0, abs=1e-4) and 0 <= other < 0.5 and empty == 0.0


# ---------------------------------------------------------------- python

def test_python_grader_values_and_shapes(project):
    g, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:exact", "fields": ["answer"]}})
    try:
        assert g.score(["q", "q"], ["5", "Answer: 5"], ROWS[:1] * 2) == [1.0, 0.0]
        assert g.stats == {"calls": 2.0, "errors": 0.0, "crashes": 0.0, "timeouts": 0.0}
    finally:
        g.close()
    for fn, expect in (("as_dict", [0.3]), ("as_bool", [1.0])):
        g, _ = judge(project, "code", {"code": {"kind": "python", "function": f"mygrading.checks:{fn}"}})
        assert g.score(["q"], ["ab!"]) == expect                # a dict's "score" 3 / 10; True is 1
        g.close()
    # a function that returns no number: error_score, counted
    for fn in ("text", "nan"):
        g, _ = judge(project, "code", {"code": {"kind": "python", "function": f"mygrading.checks:{fn}",
                                                "error_score": -1.0}})
        assert g.score(["q"], ["x"]) == [-1.0] and g.stats["errors"] == 1
        g.close()


def test_python_grader_survives_raises_timeouts_crashes_and_memory(project):
    boom, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:boom",
                                               "error_score": -1.0}})
    assert boom.score(["q"] * 3, ["ok", "bad", "ok"]) == [1.0, -1.0, 1.0]
    assert boom.stats["errors"] == 1
    boom.close()

    slow, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:slow", "timeout": 1.0}})
    t0 = time.monotonic()
    assert slow.score(["q"] * 3, ["fast", "slow", "fast"]) == [0.5, 0.0, 0.5]   # the next call gets a new worker
    assert time.monotonic() - t0 < 15 and slow.stats["timeouts"] == 1
    slow.close()

    die, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:die"}})
    assert die.score(["q"] * 3, ["ok", "die", "ok"]) == [0.25, 0.0, 0.25]
    assert die.stats["crashes"] == 1
    die.close()

    # 2 GB asked under a 256 MB cap: MemoryError in the worker, the response scores error_score
    hog, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:hog", "memory_mb": 256,
                                              "error_score": 0.1}})
    assert hog.score(["q"] * 2, ["hog", "ok"]) == [0.1, 0.75]
    assert hog.stats["errors"] + hog.stats["crashes"] == 1
    hog.close()


def test_python_grader_runs_without_the_projects_secrets(project, monkeypatch):
    monkeypatch.setenv("RFT_TEST_SECRET", "s3cret")
    monkeypatch.setenv("RFT_TEST_ALLOWED", "fine")
    g, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:secrets"}})
    assert g.score(["q"], ["x"]) == [0.0]             # neither variable reaches the worker
    g.close()
    g, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:secrets",
                                            "pass_env": ["RFT_TEST_ALLOWED"]}})
    assert g.score(["q"], ["x"]) == [10.0]            # the one it is allowed
    g.close()


def test_python_grader_with_several_workers_keeps_the_order(project):
    g, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:as_dict", "workers": 3}})
    texts = ["a" * n for n in range(9)]
    assert g.score(["q"] * 9, texts) == [n / 10 for n in range(9)]
    assert len(g.live) <= 3
    g.close()


@pytest.mark.parametrize("function, says", [
    ("nosuch.mod:f", "no module 'nosuch'"),
    ("mygrading.nothere:f", "no module 'mygrading.nothere'"),
    ("mygrading.checks.deeper:f", "'mygrading.checks' is a module, not a package"),
])
def test_a_python_grader_that_cannot_be_found_is_refused_on_load(project, function, says):
    with pytest.raises(ConfigError, match=f"judges.code.function: cannot import '{function}': {says}"):
        judge(project, "code", {"code": {"kind": "python", "function": function}})


@pytest.mark.parametrize("function, says", [
    ("mygrading.checks:missing", "AttributeError"),
    ("mygrading.checks:NOT_CALLABLE", "is a int, not a function"),
])
def test_a_python_grader_whose_function_is_not_there_is_refused_when_built(project, function, says):
    with pytest.raises(ConfigError, match=f"judges.code.function: cannot import '{function}': .*{says}"):
        judge(project, "code", {"code": {"kind": "python", "function": function}})


def test_python_grader_output_cannot_reach_its_protocol(project):
    g, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:noisy"}})
    # whatever the function, the real stdout or a child prints (JSON numbers, a forged answer) is not an answer
    assert g.score(["q"] * 3, ["a", "b", "c"]) == [0.5, 0.5, 0.5]
    assert g.stats == {"calls": 3.0, "errors": 0.0, "crashes": 0.0, "timeouts": 0.0}
    g.close()


def test_a_timeout_stops_the_processes_the_function_started(project, tmp_path):
    g, _ = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:spawn", "timeout": 2.0}})
    pidfile = tmp_path / "child.pid"
    assert g.score(["q"], ["x"], [{"pidfile": str(pidfile)}]) == [0.0] and g.stats["timeouts"] == 1
    pid = int(pidfile.read_text())
    time.sleep(0.5)
    try:                                  # gone, or a zombie waiting for init to reap it: not running
        state = open(f"/proc/{pid}/status").read().split("State:")[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), state
    g.close()


def test_a_python_graders_fields_reach_it_through_the_reward(project):
    from tasks.optimize import weighted_reward

    g, params = judge(project, "code", {"code": {"kind": "python", "function": "mygrading.checks:exact",
                                                 "fields": ["answer"]}})
    assert g.fields == ("answer",)
    assert reference_fields(params.judges, ["code"]) == {"answer": {"text": False, "judges": ["code"]}}
    by_prompt = {r["prompt"]: r for r in ROWS}
    reward = weighted_reward([g], [1.0], ["code"], rows_of=lambda ps: [by_prompt[p] for p in ps])
    # "5" is row a's answer, "-2" row b's: the rows reached the worker
    assert reward([ROWS[0]["prompt"], ROWS[1]["prompt"]], ["5", "3"]) == [1.0, 0.0]
    g.close()


# ---------------------------------------------------------------- score_model

@pytest.mark.parametrize("text, labels, expect", [
    ("7", None, 7.0), ("Score: 8.5/10", None, 8.5), ("I'd say 11", None, None), ("none", None, None),
    ("-1", None, None), ("Good.", {"good": 10, "bad": 0}, 10.0), ("it is BAD", {"good": 10, "bad": 0}, 0.0),
    ("fine", {"good": 10, "bad": 0}, None),
])
def test_parse_score(text, labels, expect):
    assert parse_score(text, 0, 10, labels) == expect


def test_score_model_over_http_samples_parses_and_counts(project):
    # The stand-in reads the response out of the question and answers: "9" for a response with "right", "2" for
    # one with "wrong", words otherwise; at temperature > 0 with seed 1 (the second sample) it answers 5 instead.
    def reply(body):
        text = body["messages"][0]["content"]
        response = text.split("Response:\n", 1)[1].split("\n\n", 1)[0]
        if body.get("seed") == 1 and body.get("temperature", 0) > 0:
            return "5"
        return "9" if "right" in response else "2" if "wrong" in response else "I cannot say"

    with ScriptedChatServer(reply) as server:
        api = {"kind": "http", "url": server.url, "model": "grader", "backoff": 0.01}
        one, _ = judge(project, "rubric", {"api": api, "rubric": {"kind": "score_model", "judge": "api",
                                                                  "unparsed_score": 0.5}})
        # (9 - 0) / 10 = 0.9; 0.2; unparsed -> 0.5
        assert one.score(["q"] * 3, ["right", "wrong", "hmm"]) == pytest.approx([0.9, 0.2, 0.5])
        assert one.stats["unparsed"] == 1 and one.stats["samples"] == 3
        asked = server.requests[-1]["messages"][0]["content"]
        assert "The answer is correct." in asked and "from 0 (worst) to 10 (best)" in asked
        two, _ = judge(project, "rubric", {"api": api, "rubric": {"kind": "score_model", "judge": "api", "samples": 2,
                                                                  "temperature": 0.7, "reference": "answer"}})
        # sample seed 0: 9 -> 0.9; seed 1: 5 -> 0.5; mean 0.7
        assert two.score(["q"], ["right"], ROWS[:1]) == pytest.approx([0.7])
        assert "Reference answer:\n5" in server.requests[-1]["messages"][0]["content"]
        assert two.fields == ("answer",)


def test_score_model_over_a_local_llm_judge(project, tmp_path):
    # A local llm judge's model generates the answers. A tiny GPT-2 whose final layer norm outputs one fixed
    # vector (weight 0, bias = 50 x the embedding of the token "7", scaled to norm 1) scores each token by its
    # (tied) embedding's dot product with it: 50 x 1 x 1 = 50 for "7", at most 50 x 0.5 x 1 = 25 for any other
    # (Cauchy-Schwarz, the other embeddings scaled to norm <= 0.5). Greedy decoding answers "7" to any question,
    # so the score is (7 - 0) / 10 = 0.7 for every response.
    import torch

    from tasks.policy import tiny_gpt, train_tokenizer

    tok = train_tokenizer(["Score 0 1 2 3 4 5 6 7 8 9 10, the answer is right or wrong."] * 20, 300)
    model = tiny_gpt(len(tok), 1, 2, 32, 1024, tok.eos_token_id)
    seven = tok.convert_tokens_to_ids("7")
    with torch.no_grad():
        wte = model.transformer.wte.weight
        wte.div_(2 * wte.norm(dim=1, keepdim=True).clamp(min=0.5))         # every norm <= 0.5
        wte[seven] = wte[seven] / wte[seven].norm()
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(50 * wte[seven])
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    local = {"kind": "llm", "model": str(tmp_path / "lm"), "batch_size": 2}
    grader, _ = judge(project, "rubric", {"local": local, "rubric": {"kind": "score_model", "judge": "local",
                                                                     "max_tokens": 1}})
    assert grader.score(["q"] * 3, ["right", "wrong", "hmm"]) == pytest.approx([0.7, 0.7, 0.7])
    assert grader.stats["samples"] == 3 and grader.stats["unparsed"] == 0
    # two tokens: "77", out of the range 0..10, is unparsed and scores unparsed_score
    two, _ = judge(project, "rubric", {"local": local, "rubric": {"kind": "score_model", "judge": "local",
                                                                  "max_tokens": 2, "unparsed_score": 0.25}})
    assert two.score(["q"] * 2, ["right", "wrong"]) == pytest.approx([0.25, 0.25])
    assert two.stats["unparsed"] == 2


# ---------------------------------------------------------------- multi, ensembles, config

def test_multi_combines_graders_by_its_formula(project):
    judges = {"correct": {"kind": "string_check", "reference": "answer", "extract": r"Answer: (-?\d+)"},
              "format": {"kind": "regex", "pattern": r"Answer: -?\d+", "mode": "fullmatch"},
              "total": {"kind": "multi", "formula": "0.7 * correct + 0.3 * format", "pass_threshold": 0.7}}
    g, params = judge(project, "total", judges)
    # "Answer: 5" correct and formatted: 1.0; "Answer: 4" formatted only: 0.3; "x Answer: 5 y" correct only: 0.7
    assert g.score(["q"] * 3, ["Answer: 5", "Answer: 4", "x Answer: 5 y"], ROWS[:1] * 3) == pytest.approx([1.0, 0.3, 0.7])
    assert g.fields == ("answer",)
    assert reference_fields(params.judges, ["total"]) == {"answer": {"text": True, "judges": ["correct"]}}


@pytest.mark.parametrize("judges, key, says", [
    ({"x": {"kind": "multi", "formula": "zz + 1"}}, "judges.x.formula", "'zz' is not another judge"),
    ({"x": {"kind": "multi", "formula": "x + 1"}}, "judges.x.formula", "'x' is not another judge"),
    ({"x": {"kind": "multi", "formula": "c ** 2"}}, "judges.x.formula", "expected a number"),
    ({"m": {"kind": "multi", "formula": "c"}, "x": {"kind": "multi", "formula": "m + c"}}, "judges.x.formula",
     "formulas do not nest"),
    ({"x": {"kind": "string_check"}}, "judges.x.reference", "exactly one of reference"),
    ({"x": {"kind": "string_check", "reference": "id"}}, "judges.x.reference", "not a reference field"),
    ({"x": {"kind": "string_check", "literal": "a", "pass_threshold": 2}}, "judges.x.pass_threshold", "above the best"),
    ({"x": {"kind": "regex", "pattern": "("}}, "judges.x.pattern", "not a regular expression"),
    ({"x": {"kind": "python", "function": "bad"}}, "judges.x.function", "not package.module:function"),
    ({"x": {"kind": "score_model", "judge": "c"}}, "judges.x.judge", "a score model is an llm or http"),
    ({"x": {"kind": "score_model", "judge": "zz"}}, "judges.x.judge", "no judge named 'zz'"),
    ({"x": {"kind": "score_model", "judge": "c", "samples": 3}}, "judges.x.temperature", "one answer repeated"),
    ({"x": {"kind": "score_model", "judge": "c", "labels": {"good": 11}}}, "judges.x.labels.good", "not a number"),
    ({"x": {"kind": "text_similarity", "metric": "meteor"}}, "judges.x.metric", "must be one of"),
])
def test_grader_settings_are_checked_on_load(project, judges, key, says):
    with pytest.raises(ConfigError, match=f"{key}: .*{says}"):
        parse_params({"judges": {"reward": {"kind": "reward_model"}, "embedding": {"kind": "embedding"},
                                 "c": {"kind": "string_check", "literal": "a"}, **judges}})


def test_gating_on_a_formula_of_the_training_rewards_needs_allow_training_judge(project):
    judges = {"reward": {"kind": "reward_model"}, "embedding": {"kind": "embedding"},
              "correct": {"kind": "string_check", "reference": "answer"},
              "format": {"kind": "regex", "pattern": "^A"},
              "total": {"kind": "multi", "formula": "correct + 0.5 * format"}}
    raw = {"task": {"env": "none", "rubric": str(project / "rubric.yaml")}, "judges": judges,
           "policy": {"base_model": "x"}, "optimize": {"reward": ["correct", "format"]},
           "evaluate": {"judges": ["total"]}, "promote": {"winrate_source": "total", "alarm_judge": None}}
    with pytest.raises(ConfigError, match="promote.winrate_source: 'total' is judging only with what makes a judge"):
        parse_params(raw)
    raw["promote"]["allow_training_judge"] = True
    parse_params(raw)


def test_a_grader_is_a_reward_and_a_label_judge(project):
    p = parse_params({"judges": {"reward": {"kind": "reward_model"}, "embedding": {"kind": "embedding"},
                                 "c": {"kind": "string_check", "reference": "answer"}},
                      "optimize": {"reward": ["c"]}, "label": {"judge": "c"}})
    assert p.optimize.reward == ["c"]
    from tasks.config import prompt_fields

    assert prompt_fields(p) == {"answer": {"text": True, "judges": ["c"]}}


def test_an_ensemble_passes_rows_to_its_graders(project):
    judges = {"c": {"kind": "string_check", "reference": "answer"},
              "f": {"kind": "regex", "pattern": "^-?\\d+$"},
              "panel": {"kind": "ensemble", "members": ["c", "f"], "combine": "mean"}}
    g, _ = judge(project, "panel", judges)
    # mean of scale * score: "5" on row a: (10 * 1 + 10 * 1) / 2 = 10; "6": (0 + 10) / 2 = 5
    assert g.score(["q", "q"], ["5", "6"], ROWS[:1] * 2) == pytest.approx([10.0, 5.0])
    assert g.fields == ("answer",)
    assert os.environ.get("RFT_TEST_SECRET") is None

"""The arithmetic environment's generator and the example's graders, without training anything."""

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from tasks.config import parse_params, prompt_fields
from tasks.envs.arithmetic import DEMO_WRONG, FACTS, TEMPLATES, answer, build_corpus
from tasks.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _checked():
    spec = importlib.util.spec_from_file_location("graders", ROOT / "examples/arithmetic/graders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.checked


def test_the_corpus_is_seeded_and_no_question_is_a_demonstration():
    a, b = build_corpus(13, 50, 600, 1200), build_corpus(13, 50, 600, 1200)
    assert a == b and build_corpus(14, 50, 600, 1200) != a
    questions = [r["prompt"] for r in a.prompts]
    assert len(set(questions)) == 1200 == len(FACTS) * (len(TEMPLATES) - 1)
    assert not set(questions) & {d["prompt"] for d in a.demos}
    assert {r["skill"] for r in a.prompts} == {"arithmetic"}
    # every answer field is the question's result, which the python grader recomputes on its own
    checked = _checked()
    for row in a.prompts:
        x, op, y = re.search(r"(\d+) ([-+*]) (\d+)", row["prompt"]).groups()
        assert row["answer"] == str(answer(int(x), op, int(y)))
        assert checked(row, f"Answer: {row['answer']}") == 1.0
        assert checked(row, f"Answer: {int(row['answer']) + 1}") == 0.0
    assert checked(a.prompts[0], "The answer is " + a.prompts[0]["answer"]) == 0.0


def test_the_demonstrations_are_often_wrong_as_the_docstring_says():
    built = build_corpus(13, 10, 4000, 10)
    arithmetic = [d for d in built.demos if not d["prompt"].startswith(("Which", "Name"))]
    wrong = 0
    for d in arithmetic:
        x, op, y = re.search(r"(\d+) ([-+*]) (\d+)", d["prompt"]).groups()
        m = re.fullmatch(r"Answer: (-?\d+)", d["response"])
        wrong += bool(m) and int(m.group(1)) != answer(int(x), op, int(y))
    # 30% of the demonstrations give a wrong number: 4,000 draws put the share within 0.03 of it
    assert abs(wrong / len(arithmetic) - DEMO_WRONG) < 0.03


def test_more_questions_than_the_task_has_is_a_config_error():
    with pytest.raises(ConfigError, match="corpus.n_prompts: the arithmetic task has 1200 distinct questions"):
        build_corpus(13, 10, 10, 1201)


def test_the_examples_params_load_and_name_the_answer_field():
    raw = yaml.safe_load((ROOT / "examples/arithmetic/params.yaml").read_text())
    p = parse_params(raw)
    assert p.task.env == "arithmetic" and p.optimize.reward == ["correct", "format"]
    assert prompt_fields(p) == {"answer": {"text": True, "judges": ["correct"]}}


def test_each_environment_writes_the_suites_the_registry_lists(tmp_path):
    from tasks.config import CorpusConfig
    from tasks.envs import REGISTRY, load_env

    for name, info in REGISTRY.items():
        if not info.writes_corpus:
            continue
        out = tmp_path / name
        out.mkdir()
        load_env(name).write_corpus(CorpusConfig(n_texts=20, n_demos=20, n_prompts=20), out)
        assert sorted(p.name for p in (out / "regression").glob("*.jsonl")) == sorted(info.suites), name


def test_a_suite_the_environment_does_not_write_is_refused_on_load():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())          # the demo's fluency suite
    raw["task"] = {"env": "arithmetic", "rubric": "tasks/envs/arithmetic/rubric.yaml"}
    raw["promote"].update(winrate_source="embedding", alarm_judge=None)      # no hidden truth here
    with pytest.raises(ConfigError, match="evaluate.regression.fluency.texts: task.env arithmetic writes no "
                                          "data/corpus/regression/texts.jsonl"):
        parse_params(raw)


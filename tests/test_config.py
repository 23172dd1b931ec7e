"""params.yaml is validated on load; every bad value is reported with its key."""

import re
import subprocess

import pytest
import yaml
from conftest import ROOT

from tasks.config import Params, describe, parse_params
from tasks.errors import ConfigError
from tasks.manifest import load_params


def test_project_params_load_and_match_defaults_types():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.generate.k >= 2 and p.label.source == "judge" and p.task.env == "reviews"


@pytest.mark.parametrize("raw, key", [
    ({"generate": {"temprature": 1.0}}, "generate.temprature"),          # typo: unknown key
    ({"generate": {"temperature": -1}}, "generate.temperature"),          # bound: > 0
    ({"generate": {"k": "four"}}, "generate.k"),                          # type
    ({"generate": {"k": True}}, "generate.k"),                            # bool is not an int here
    ({"label": {"source": "crowd"}}, "label.source"),                     # choices
    ({"label": {"pairs": "best"}}, "label.pairs"),
    ({"truth": {"noise": 0.7}}, "truth.noise"),                           # <= 0.5
    ({"prepare": {"heldout_fraction": 1.0}}, "prepare.heldout_fraction"), # < 1
    ({"bootstrap": {"n_embd": 30, "n_head": 4}}, "bootstrap.n_embd"),     # divisibility
    ({"corpus": {"demo_sentiment": [0.5, 0.6, 0.1]}}, "corpus.demo_sentiment"),
    ({"optimise": {}}, "optimise"),                                       # unknown section
    ({"generate": [1, 2]}, "generate"),                                   # section not a mapping
    ({"task": {"env": "atari"}}, "task.env"),                             # unknown environment
    ({"judges": {"j": {"kind": "oracle"}}}, "judges.j.kind"),             # unknown judge kind: no default
    ({"judges": {"j": {"relevance": 1}}}, "judges.j.kind"),               # kind missing
    ({"judges": {"j": {"kind": "llm"}}}, "judges.j.model"),               # required setting
    ({"judges": {"j": {"kind": "http", "url": "u", "model": "m", "timeout": 0}}}, "judges.j.timeout"),
    ({"judges": {"Bad-Name": {"kind": "embedding"}}}, "judges.Bad-Name"),
    ({"judges": {"truth": {"kind": "embedding"}}}, "judges.truth"),       # reserved for the environment
    ({"label": {"judge": "nobody"}}, "label.judge"),
    ({"evaluate": {"judges": ["nobody"]}}, "evaluate.judges"),
    ({"promote": {"winrate_source": "reward"}}, "promote.winrate_source"),  # not among evaluate.judges
    ({"promote": {"alarm_judge": "reward"}}, "promote.alarm_judge"),
    ({"label": {"source": "file"}}, "label.file"),                       # file labeler without a file
    ({"label": {"source": "file", "file": "../shared/x.jsonl"}}, "label.file"),   # outside data/incoming
    ({"corpus": {"texts": "data/incoming/t.jsonl"}}, "corpus.texts"),   # reviews writes its own corpus
    ({"judges": {"a": {"kind": "embedding"}, "e": {"kind": "ensemble", "members": ["a"]}}}, "judges.e.members"),
    ({"judges": {"a": {"kind": "embedding"}, "e": {"kind": "ensemble", "members": ["a", "zz"]}}},
     "judges.e.members"),
    # best_vs_worst needs scores; an llm judge only compares pairs
    ({"judges": {"l": {"kind": "llm", "model": "m"}, "embedding": {"kind": "embedding"}},
      "label": {"judge": "l"}}, "label.pairs"),
    # people's feedback
    ({"label": {"source": "label_studio"}}, "label.pairs"),                # nobody has scored responses yet
    ({"label": {"feedback": "likert"}}, "label.feedback"),                 # a judge only compares pairs
    ({"label": {"source": "label_studio", "pairs": "all_pairs", "feedback": "comment"}}, "label.comment_judge"),
    ({"label": {"source": "label_studio", "pairs": "all_pairs", "feedback": "comment", "comment_judge": "zz"}},
     "label.comment_judge"),
    ({"judges": {"l": {"kind": "llm", "model": "m"}, "embedding": {"kind": "embedding"}},
      "label": {"source": "label_studio", "pairs": "all_pairs", "feedback": "comment", "comment_judge": "l"}},
     "label.comment_judge"),                                               # comments need a scoring judge
    ({"judges": {"people": {"kind": "label_studio"}, "embedding": {"kind": "embedding"}},
      "label": {"quality_judges": ["people"]}}, "label.quality_judges"),  # people are not an AI judge
    ({"label": {"quality_judges": ["nobody"]}}, "label.quality_judges"),
    ({"label": {"completion": 0}}, "label.completion"),
    ({"label_studio": {"project_prefix": "x" * 21}}, "label_studio.project_prefix"),
    ({"judges": {"p": {"kind": "label_studio", "wait": "forever"}}}, "judges.p.wait"),
    ({"promote": {"min_judge_human_agreement": 0.6}}, "promote.min_judge_human_agreement"),  # no human pairs
    ({"promote": {"min_judge_human_agreement": 0.6}, "evaluate": {"human_pairs": "data/incoming/h.jsonl"}},
     "promote.min_judge_human_agreement"),                                 # the truth is not an AI judge
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as exc:
        parse_params(raw)
    assert key in str(exc.value)


def test_int_is_accepted_where_float_is_expected():
    assert parse_params({"generate": {"temperature": 1}}).generate.temperature == 1.0


def test_every_field_has_help():
    text = describe()
    assert "generate:" in text and "# Sampling temperature." in text
    assert "#  \n" not in text and not any(line.rstrip().endswith("#") for line in text.splitlines())


def test_cli_reports_bad_params_without_traceback(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({"generate": {"max_new_tokens": 0}}))
    out = subprocess.run(["rft", "--params", str(bad), "check-params"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "generate.max_new_tokens: must be >= 1, got 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_or_invalid_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text("generate: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "p.yaml")


USER_TASK = {"task": {"env": "none", "rubric": "data/incoming/rubric.yaml"},
             "policy": {"base_model": "models/my-model"},
             "promote": {"winrate_source": "embedding"}}


def test_a_user_task_loads():
    p = parse_params(USER_TASK)
    assert p.task.env == "none" and p.promote.winrate_source == "embedding"


GOLD = {"kind": "reward_model", "path": "data/incoming/gold"}


@pytest.mark.parametrize("judges, optimize, gate, trained", [
    # the training reward itself
    ({}, {}, "reward", "a judge the policy trains against (optimize.reward: reward)"),
    # this cycle's reward model again, under another name
    ({"again": {"kind": "reward_model", "path": "./models/reward"}}, {}, "again",
     "judging only with what makes a judge the policy trains against (optimize.reward: reward)"),
    # an ensemble of the training rewards only
    ({"emb2": {"kind": "embedding"}, "panel": {"kind": "ensemble", "members": ["reward", "emb2"]}},
     {"reward": ["reward", "emb2"]}, "panel",
     "judging only with what makes a judge the policy trains against (optimize.reward: reward, "
     "optimize.reward: emb2)"),
    # a member of an ensemble reward
    ({"panel": {"kind": "ensemble", "members": ["reward", "embedding"]}}, {"reward": ["panel"]}, "embedding",
     "judging only with what makes a judge the policy trains against (optimize.reward: panel)"),
    # the algorithm's own training judge
    ({}, {"algorithm": "online_dpo", "online_dpo": {"judge": "embedding"}}, "embedding",
     "a judge the policy trains against (optimize.online_dpo.judge: embedding)"),
    # DPO trains on the labels: against the judge that labelled them (label.judge, embedding by default)
    ({}, {"algorithm": "dpo"}, "embedding", "a judge the policy trains against (label.judge: embedding)"),
])
def test_the_gate_judge_may_not_be_the_training_reward_unless_allowed(judges, optimize, gate, trained):
    raw = {**USER_TASK, "judges": {"embedding": {"kind": "embedding"}, "reward": {"kind": "reward_model"},
                                   **judges},
           "optimize": optimize, "evaluate": {"judges": [gate]}, "promote": {"winrate_source": gate,
                                                                            "alarm_judge": None}}
    with pytest.raises(ConfigError) as exc:
        parse_params(raw)
    assert str(exc.value).startswith(f"params.yaml: promote.winrate_source: {gate!r} is {trained}; ")
    assert "promote.allow_training_judge: true" in str(exc.value)
    from tasks.config import gate_training_judge

    allowed = parse_params({**raw, "promote": {**raw["promote"], "allow_training_judge": True}})
    assert allowed.promote.allow_training_judge and gate_training_judge(allowed) == trained


@pytest.mark.parametrize("judges, optimize, alarm, trained", [
    ({}, {}, "reward", "a judge the policy trains against (optimize.reward: reward)"),
    ({"again": {"kind": "reward_model", "path": "./models/reward"}}, {}, "again",
     "judging only with what makes a judge the policy trains against (optimize.reward: reward)"),
    ({}, {"algorithm": "online_dpo", "online_dpo": {"judge": "embedding"}}, "embedding",
     "a judge the policy trains against (optimize.online_dpo.judge: embedding)"),
])
def test_the_reward_hacking_alarm_may_not_watch_the_training_reward(judges, optimize, alarm, trained):
    # The alarm fires when the training reward rose while an independent judge's win-rate fell; watching the
    # training reward itself, it could never fire. No flag lets it through.
    raw = {**USER_TASK, "judges": {"embedding": {"kind": "embedding"}, "reward": {"kind": "reward_model"},
                                   "gold": GOLD, **judges},
           "optimize": optimize, "evaluate": {"judges": ["gold", alarm]},
           "promote": {"winrate_source": "gold", "alarm_judge": alarm, "allow_training_judge": True}}
    with pytest.raises(ConfigError) as exc:
        parse_params(raw)
    assert str(exc.value).startswith(f"params.yaml: promote.alarm_judge: {alarm!r} is {trained}; ")
    independent = {"winrate_source": "gold", "alarm_judge": "gold"}
    assert parse_params({**raw, "evaluate": {"judges": ["gold"]}, "promote": independent}).promote.alarm_judge
    # Whatever the algorithm, the alarm may not be the reward model whose score it is compared with.
    for algorithm in ("dpo", "grpo"):
        same = {**raw, "optimize": {"algorithm": algorithm, "reward": ["embedding"]},
                "evaluate": {"judges": ["gold", "reward"]},
                "promote": {"winrate_source": "gold", "alarm_judge": "reward"}}
        with pytest.raises(ConfigError, match=r"promote.alarm_judge: 'reward' is this cycle's reward model"):
            parse_params(same)
    # DPO learns from the pairs label.judge labelled, not from a reward it optimizes: that judge may watch.
    offline = {**raw, "optimize": {"algorithm": "dpo"}, "evaluate": {"judges": ["gold", "embedding"]},
               "promote": {"winrate_source": "gold", "alarm_judge": "embedding"}}
    assert parse_params(offline).promote.alarm_judge == "embedding"


@pytest.mark.parametrize("judges, optimize, gate", [
    ({"gold": GOLD}, {}, "gold"),                                   # an independent reward model
    ({"gold": GOLD, "panel": {"kind": "ensemble", "members": ["reward", "gold"]}}, {}, "panel"),  # partly its own
    ({}, {}, "embedding"),                                          # not what optimize.reward names
    ({}, {"algorithm": "dpo"}, "reward"),                           # DPO: optimize.reward is only the probe
])
def test_an_independent_gate_judge_loads_without_the_flag(judges, optimize, gate):
    from tasks.config import gate_training_judge

    raw = {**USER_TASK, "judges": {"embedding": {"kind": "embedding"}, "reward": {"kind": "reward_model"},
                                   **judges},
           "optimize": optimize, "evaluate": {"judges": [gate]}, "promote": {"winrate_source": gate,
                                                                            "alarm_judge": None}}
    p = parse_params(raw)
    assert not p.promote.allow_training_judge and gate_training_judge(p) is None


@pytest.mark.parametrize("change, key", [
    ({"label": {"source": "simulated"}}, "label.source"),                 # no simulated annotator
    ({"promote": {"winrate_source": "truth"}}, "promote.winrate_source"),  # no truth win-rate
    ({"judges": {"embedding": {"kind": "embedding"}, "sim": {"kind": "simulated"}}}, "judges.sim.kind"),
    ({"task": {"rubric": "tasks/envs/reviews/rubric.yaml"}}, "task.rubric"),  # the demo's food rubric
    ({"policy": {"base_model": None}}, "corpus.texts"),                  # nothing to bootstrap a policy from
    # no rubric-reading judge at all, but people would read the food rubric as their instructions
    ({"task": {"rubric": "tasks/envs/reviews/rubric.yaml"}, "judges": {"reward": {"kind": "reward_model"}},
      "evaluate": {"judges": ["reward"]}, "promote": {"winrate_source": "reward", "alarm_judge": None},
      "label": {"source": "label_studio", "pairs": "all_pairs", "judge": "reward"}}, "task.rubric"),
])
def test_user_task_refuses_what_only_the_demo_has(change, key):
    raw = {k: dict(v) for k, v in USER_TASK.items()}
    for section, values in change.items():
        raw[section] = values if section == "judges" else {**raw.get(section, {}), **values}
    with pytest.raises(ConfigError) as exc:
        parse_params(raw)
    assert str(exc.value).startswith(f"params.yaml: {key}:")


def test_cli_refuses_truth_on_a_user_task_with_exit_2(tmp_path):
    raw = {**USER_TASK, "promote": {"winrate_source": "truth"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out = subprocess.run(["rft", "--params", str(tmp_path / "params.yaml"), "check-params"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "promote.winrate_source: truth needs an environment" in out.stderr
    assert "Traceback" not in out.stderr


def _params_text(tmp_path, old: str, new: str):
    """The project's params.yaml with ``old`` replaced by ``new``, written to tmp_path."""
    text = (ROOT / "params.yaml").read_text()
    assert old in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    # YAML loaders keep the last of two equal keys without a word: the user's first value would vanish.
    path = _params_text(tmp_path, "  k: 4 ", "  k: 4\n  k: 8 ")
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("  k: 8"))
    with pytest.raises(ConfigError, match=f"line {line}: k: written twice in one mapping \\(first on line "
                                          f"{line - 1}\\)"):
        load_params(path)


def test_a_tab_in_the_indentation_names_the_line(tmp_path):
    path = _params_text(tmp_path, "  k: 4 ", "\tk: 4 ")
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("\tk"))
    with pytest.raises(ConfigError, match=f"line {line}: a tab in the indentation"):
        load_params(path)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    # Nine levels of nine aliases each: 9**9 (387 million) strings once expanded, from a 1 kB file.
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expand to more than 100,000 values; refused"):
        load_params(path)
    # A few aliases, as a user may write them to share a value, are fine (YAML merges stay ordinary YAML).
    small = tmp_path / "small.yaml"
    small.write_text("generate: &g\n  k: 4\nevaluate:\n  samples_per_prompt: 2\n")
    from tasks.yamlfile import read_yaml

    assert read_yaml(small, "")["generate"] == {"k": 4}


def test_a_section_that_is_not_a_mapping_or_a_quoted_number_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="generate: must be a mapping of keys to values, got list"):
        parse_params({"generate": [4]})
    with pytest.raises(ConfigError, match="the top level must be a mapping of sections"):
        parse_params(["generate"])
    # A number in quotes is a string; saying so beats a bare "expected int".
    path = _params_text(tmp_path, "  max_new_tokens: 48", '  max_new_tokens: "48"')
    with pytest.raises(ConfigError, match=re.escape("generate.max_new_tokens: expected int, got str '48' (a number "
                                                    "in quotes is a string: write it without them)")):
        load_params(path)


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-4 as a string; YAML 1.2 and DVC read a float. The loader reads what DVC reads.
    path = _params_text(tmp_path, "    lr: 2.0e-4", "    lr: 2e-4")
    assert load_params(path).optimize.grpo.lr == 2e-4


@pytest.mark.parametrize("raw, message", [
    ({"validate": {"prompt_min_chars": 600, "prompt_max_chars": 512}},
     "validate.prompt_min_chars: 600 is more than prompt_max_chars (512)"),
    ({"optimize": {"grpo": {"batch_size": 12, "num_generations": 8}}},
     "optimize.grpo.batch_size: 12 is not a multiple of num_generations (8)"),
])
def test_rules_across_fields_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_params(raw)


def test_cuda_asked_for_on_a_machine_without_one_is_named_before_any_stage(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from tasks.policy import check_devices

    for raw, key in (({"generate": {"device": "cuda"}}, "generate.device"),
                     ({"evaluate": {"device": "cuda"}}, "evaluate.device")):
        with pytest.raises(ConfigError, match=f"{key}: 'cuda' was asked for but no CUDA device is available"):
            check_devices(parse_params(raw))
    path = _params_text(tmp_path, "  device: auto             # auto | cpu | cuda", "  device: cuda")
    out = subprocess.run(["rft", "--params", str(path), "check-params"], capture_output=True, text=True)
    assert out.returncode == 2 and "generate.device: 'cuda' was asked for" in out.stderr
    assert "Traceback" not in out.stderr

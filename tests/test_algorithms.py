"""Every optimizer of the registry: config, a CPU smoke run each on the tiny project, and their small pure parts."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import pytest
import yaml
from conftest import TINY_SECTIONS, merge

from tasks.algorithms import REGISTRY
from tasks.config import OptimizeConfig, parse_params
from tasks.errors import ConfigError
from tasks.io import read_jsonl


def test_every_registered_algorithm_has_its_config_section():
    sections = {f.name for f in dataclasses.fields(OptimizeConfig) if dataclasses.is_dataclass(f.default_factory)}
    assert sections == set(REGISTRY) == set(TINY_SECTIONS)
    for name, algo in REGISTRY.items():
        assert dataclasses.fields(OptimizeConfig)  # typed section with help on every field
        assert all(f.metadata.get("help") for f in dataclasses.fields(algo.config)), name


def test_unknown_algorithm_is_a_config_error_not_a_default():
    with pytest.raises(ConfigError, match="optimize.algorithm: must be one of grpo, rloo, ppo"):
        parse_params({"optimize": {"algorithm": "ppo2"}})


@pytest.mark.parametrize("raw, message", [
    ({"optimize": {"grpo": {"batch_size": 30}}}, "optimize.grpo.batch_size: 30 is not a multiple"),
    ({"optimize": {"ppo": {"rollout_batch_size": 31}}}, "optimize.ppo.rollout_batch_size: 31 must split"),
    ({"optimize": {"dpo": {"loss_type": "sigmoidd"}}}, "optimize.dpo.loss_type: must be one of"),
    ({"optimize": {"dpo": {"label_smoothing": 0.5}}}, "optimize.dpo.label_smoothing: must be < 0.5"),
    ({"optimize": {"reward": ["nope"]}}, "optimize.reward: no judge named 'nope'"),
    ({"optimize": {"reward": ["truth_judge"]}, "judges": {"truth_judge": {"kind": "simulated"},
                                                          "embedding": {"kind": "embedding"}}},
     "optimize.reward: 'truth_judge' is the hidden truth's annotator"),
    ({"optimize": {"reward_weights": [1.0, 2.0]}}, "optimize.reward_weights: 2 weights for 1 judges"),
    ({"optimize": {"algorithm": "online_dpo", "online_dpo": {"judge": "missing"}}},
     "optimize.online_dpo.judge: no judge named 'missing'"),
    ({"optimize": {"algorithm": "constitutional", "constitutional": {"critic": "embedding"}}},
     "optimize.constitutional.critic: 'embedding' is a embedding judge; the critic writes text"),
])
def test_bad_optimize_settings_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_params(raw)


def test_only_the_active_section_is_declared_and_logged():
    from tasks.manifest import declared_params, logged_params

    p = parse_params({"optimize": {"algorithm": "kto"}})
    declared = declared_params("optimize", p)
    assert "optimize.kto" in declared and not {f"optimize.{n}" for n in REGISTRY if n != "kto"} & set(declared)
    logged = logged_params("optimize", p)
    assert logged["optimize.kto.beta"] == 0.1 and not [k for k in logged if k.startswith("optimize.grpo")]


def test_constitution_comes_from_the_rubric():
    from tasks.rubric import parse_rubric

    crit = {"criteria": [{"name": "kind", "description": "The reply is kind."}]}
    derived = parse_rubric(crit, "r.yaml").constitution()
    assert [p.name for p in derived] == ["kind"] and "The reply is kind." in derived[0].critique
    own = parse_rubric({**crit, "principles": [{"name": "brief", "critique": "Too long?", "revision": "Shorten."}]},
                       "r.yaml").constitution()
    assert [(p.name, p.critique, p.revision) for p in own] == [("brief", "Too long?", "Shorten.")]
    with pytest.raises(ConfigError, match=r"r.yaml: principles\[0\].revision: must be a non-empty string"):
        parse_rubric({**crit, "principles": [{"name": "x", "critique": "c"}]}, "r.yaml")


def test_critique_and_revision_requests_carry_the_conversation():
    from tasks.algorithms.constitutional import critique_request, draw_principles, revision_request
    from tasks.rubric import Principle

    p = Principle("kind", "Is it unkind?", "Make it kind.")
    msgs = revision_request("Say hi.", "Go away.", "It is rude.", p)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[2]["content"] == "Critique request: Is it unkind?" and msgs[3]["content"] == "It is rude."
    assert msgs[:3] == critique_request("Say hi.", "Go away.", p)
    draws = draw_principles(4, 2, 3, seed=0)
    assert draws == draw_principles(4, 2, 3, seed=0) and all(0 <= d < 3 for row in draws for d in row)


def test_best_of_n_keeps_each_prompts_best_above_the_threshold():
    from tasks.algorithms.best_of_n import select_best

    # prompt a: scores 0.1, 0.9, 0.5 -> index 1; prompt b: 0.3, 0.3 -> the first of the tie, index 3.
    ids, scores = ["a", "a", "a", "b", "b"], [0.1, 0.9, 0.5, 0.3, 0.3]
    assert select_best(ids, scores, None) == [1, 3]
    # threshold 0.4 drops b's best (0.3)
    assert select_best(ids, scores, 0.4) == [1]


def test_online_dpo_orders_pairs_by_the_verdict_and_drops_ties():
    from tasks.algorithms.online_dpo import round_pairs

    assert round_pairs(["p", "q", "r"], ["a1", "a2", "a3"], ["b1", "b2", "b3"], [True, None, False]) == \
        [("p", "a1", "b1"), ("r", "b3", "a3")]


def test_weighted_reward_sums_judge_scores():
    from tasks.optimize import weighted_reward

    from tasks.judging import ScoringJudge

    class Const(ScoringJudge):
        def __init__(self, v, fields=()):
            super().__init__()
            self.v, self.name, self.fields = v, f"ai:c{v}", fields

        def score(self, prompts, responses, rows=None):
            # with a field: the response's length times the row's number; without: times v
            return [len(r) * (row["k"] if self.fields else self.v) for r, row in zip(responses, rows or responses)]

    # responses "ab" and "c": judge 1 gives 2, 1; judge 2 gives 20, 10; weights 1 and 0.5 -> 2+10=12, 1+5=6
    reward = weighted_reward([Const(1), Const(10)], [1.0, 0.5], ["one", "ten"])
    assert reward(["p", "p"], ["ab", "c"]) == [12.0, 6.0]
    # each judge's mean, unweighted: (2 + 1) / 2 = 1.5 and (20 + 10) / 2 = 15
    assert reward.parts == {"one": 1.5, "ten": 15.0}
    # a judge that reads a field gets the prompts' rows: "ab" on prompt p (k 3) -> 6, "c" on q (k 5) -> 5
    rows = {"p": {"k": 3}, "q": {"k": 5}}
    graded = weighted_reward([Const(0, fields=("k",))], [2.0], rows_of=lambda ps: [rows[p] for p in ps])
    assert graded(["p", "q"], ["ab", "c"]) == [12.0, 10.0]


def _workspace(built_project, tmp_path, monkeypatch, name: str, section: dict, **common):
    """A copy of the built tiny project to train in, and its params with ``name`` active and ``section`` set
    (``common``: other optimize keys)."""
    work = tmp_path / "proj"
    shutil.copytree(built_project[0], work)
    monkeypatch.chdir(work)
    raw = merge(yaml.safe_load((work / "params.yaml").read_text()),
                {"optimize": {"algorithm": name, name: section, "checkpoint_every": 1, **common},
                 # an absolute store: MLflow keeps one engine per URI, and a relative one would outlive the chdir
                 "tracking": {"uri": f"sqlite:///{work}/mlruns.db"}})
    return work, parse_params(raw)


@pytest.mark.matrix
@pytest.mark.parametrize("name", list(TINY_SECTIONS))
def test_each_algorithm_trains_a_candidate(name, built_project, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from tasks.paths import CHECKPOINTS
    from tasks.stages.common import StageContext
    from tasks.stages.optimize import run as run_optimize

    work, params = _workspace(built_project, tmp_path, monkeypatch, name, TINY_SECTIONS[name])
    out = run_optimize(StageContext(params))
    report = json.loads((work / "reports/optimize/metrics.json").read_text())
    assert report["algorithm"] == name and out["registry_version"] >= 2
    # The policy moved, and the checkpoints were cleared once the candidate was saved.
    assert (work / "models/candidate/model.safetensors").read_bytes() != \
        (work / "models/champion/model.safetensors").read_bytes()
    assert not any(CHECKPOINTS.iterdir()) if CHECKPOINTS.exists() else True
    assert math.isfinite(out["final_probe_kl"]) and 0 <= out["final_probe_eos_rate"] <= 1
    if name in ("dpo",):
        assert out["pairs"] == len([r for r in read_jsonl(work / "data/labels.jsonl") if not r.get("tie")])
    if name == "kto":
        assert report["kto_source"] == "pairs" and out["kto_good"] == out["kto_bad"] > 0
    if name == "best_of_n":
        assert out["kept"] == out["sampled"] / 3

    # MLflow: only the active section's params, and the algorithm's own metrics.
    mlflow.set_tracking_uri(params.tracking.uri)
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("rft-cycle").experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert run.data.tags["rft.params"].count(f"optimize.{name}") == 1
    assert not [k for k in run.data.params if k.split(".")[1] in set(REGISTRY) - {name}]
    assert f"optimize.{name}.lr" in run.data.params
    # One axis for every algorithm, one value per step: the curve's steps rise to where training ended, and
    # MLflow's history of the probe is the curve (two-phase Constitutional AI and online DPO's rounds included).
    curve = [r.split(",") for r in (work / "reports/optimize/curve.csv").read_text().splitlines()[1:]]
    steps = [int(r[0]) for r in curve]
    assert steps == sorted(set(steps)) and steps[-1] == out.get("steps", steps[-1]), steps
    history = client.get_metric_history(run.info.run_id, "health/probe_reward")
    assert sorted((m.step, m.value) for m in history) == [(int(r[0]), float(r[1])) for r in curve]
    if name == "constitutional":
        # every prompt was critiqued and revised; the MLflow table holds each step's text
        table = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/constitutional/revisions.json")
        assert out["revised"] == 6 and len(table["data"]) == 6
        assert {"initial", "principle_0", "critique_0", "revision_0"} <= set(table["columns"])
    if name == "ppo":
        for key in ("objective/kl", "objective/rlhf_reward", "policy/approx_kl", "policy/clipfrac", "val/clipfrac",
                    "val/explained_variance", "policy/entropy", "response/length", "response/eos_rate"):
            assert key in run.data.metrics, key


@pytest.mark.matrix
@pytest.mark.parametrize("name", ["grpo", "rloo", "ppo", "best_of_n"])
def test_graders_reward_each_online_algorithm(name, built_project, tmp_path, monkeypatch):
    """Two graders as optimize.reward, one reading a reference field of the prompts' rows: the algorithm trains,
    each reward is a curve of its own, and the probe's reward is their weighted sum."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.io import write_jsonl
    from tasks.stages.common import StageContext
    from tasks.stages.optimize import run as run_optimize

    work, params = _workspace(built_project, tmp_path, monkeypatch, name, TINY_SECTIONS[name])
    rows = read_jsonl(work / "data/prompts.jsonl")
    write_jsonl(work / "data/prompts.jsonl", [{**r, "keyword": ["the", "a"] if i % 2 else "the"}
                                              for i, r in enumerate(rows)])
    raw = merge(yaml.safe_load((work / "params.yaml").read_text()), {
        "judges": {"mentions": {"kind": "string_check", "reference": "keyword", "operation": "contains"},
                   "short": {"kind": "regex", "pattern": "^.{0,40}$", "mode": "fullmatch", "dotall": True}},
        "optimize": {"algorithm": name, name: TINY_SECTIONS[name], "reward": ["mentions", "short"],
                     "reward_weights": [1.0, 0.5]},
        "tracking": {"uri": f"sqlite:///{work}/mlruns.db"}})
    params = parse_params(raw)
    out = run_optimize(StageContext(params))
    assert (work / "models/candidate/model.safetensors").read_bytes() != \
        (work / "models/champion/model.safetensors").read_bytes()
    mlflow.set_tracking_uri(params.tracking.uri)
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("rft-cycle").experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]

    def history(key):
        return {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
    total, mentions, short = (history(f"health/probe_reward{k}") for k in ("", ".mentions", ".short"))
    # every probe: the reward is 1 x mentions + 0.5 x short, each a share of the probe's samples in [0, 1]
    assert total and set(total) == set(mentions) == set(short)
    for step in total:
        assert total[step] == pytest.approx(mentions[step] + 0.5 * short[step])
        assert 0 <= mentions[step] <= 1 and 0 <= short[step] <= 1
    assert out["final_probe_reward"] == pytest.approx(total[max(total)])
    assert (run.data.tags["optimize.reward_weight.mentions"], run.data.tags["optimize.reward_weight.short"]) == \
        ("1", "0.5")
    if name in ("grpo", "rloo"):          # TRL logs each reward function under its judge's name
        assert "train/rewards_mentions_mean" in run.data.metrics and "train/rewards_short_mean" in run.data.metrics


@pytest.mark.parametrize("lora", [False, True])
def test_select_best_chooses_a_better_earlier_checkpoint_and_survives_a_resume(tmp_path, lora):
    """A scripted judge scores step 0 best (0.8), then 0.3 and 0.5: the model of step 0 is restored into the
    trained one, whose weights were changed since. A new Selector on the same folder (a resumed run) keeps the
    history and the best. With LoRA, the adapters train (the base stays frozen) and are merged at the end, as
    train_policy does: the restored weights are step 0's merged ones."""
    import copy

    import torch
    from tiny_models import tiny_policy

    from tasks.config import OptimizeConfig
    from tasks.judging import ScoringJudge
    from tasks.optimize import Selector, _with_lora
    from tasks.policy import load_policy

    class Scripted(ScoringJudge):
        def __init__(self, values):
            super().__init__()
            self.values, self.calls = list(values), 0

        def score(self, prompts, responses, rows=None):
            value = self.values[self.calls]
            self.calls += 1
            return [value] * len(responses)

    model, tok = load_policy(tiny_policy(tmp_path / "policy"), "cpu")
    cfg = dataclasses.replace(OptimizeConfig(), select="best", select_judge="x", probe_max_new_tokens=4, lora=lora)
    if lora:
        model = _with_lora(model, cfg)
        with torch.no_grad():                       # adapters that already moved (B = 0 would merge to nothing)
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.add_(0.05)
    start = {k: v.clone() for k, v in (copy.deepcopy(model).merge_and_unload() if lora else model).state_dict().items()}
    logged = []
    sel = Selector(Scripted([0.8, 0.3, 0.5]), ["Which fruit is red?", "Bake bread?"], [{}, {}], cfg, tok,
                   lambda k, v, step: logged.append((k, v, step)), tmp_path / "ckpt")
    for step in (0, 5, 10):
        sel(model, step)
        with torch.no_grad():                       # training moves the weights between the scorings
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.1)
    assert logged == [("select/score", 0.8, 0), ("select/score", 0.3, 5), ("select/score", 0.5, 10)]
    assert sel.best() == (0, 0.8)
    trained = model.merge_and_unload() if lora else model
    assert not all(torch.equal(v, start[k]) for k, v in trained.state_dict().items())
    resumed = Selector(Scripted([]), [], [], cfg, tok, None, tmp_path / "ckpt")
    assert resumed.best() == (0, 0.8) and [tuple(h) for h in resumed.history] == [(0, 0.8), (5, 0.3), (10, 0.5)]
    assert resumed.restore(trained) == (0, 0.8)
    assert all(torch.equal(v, start[k]) for k, v in trained.state_dict().items())


def test_whole_state_is_what_merging_the_adapters_leaves(tmp_path):
    # whole_state computes W + delta for each adapted layer without merging: equal, key for key, to
    # merge_and_unload on a copy (the tied lm_head kept once, under the embedding's key), and the adapted model
    # is left as it was.
    import copy

    import torch
    from tiny_models import tiny_policy

    from tasks.config import OptimizeConfig
    from tasks.optimize import _with_lora, whole_state
    from tasks.policy import load_policy

    model, _ = load_policy(tiny_policy(tmp_path / "policy"), "cpu")
    peft = _with_lora(model, dataclasses.replace(OptimizeConfig(), lora=True))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.1)
    before = {k: v.clone() for k, v in peft.state_dict().items()}
    state = whole_state(peft)
    merged = copy.deepcopy(peft).merge_and_unload().state_dict()
    assert set(merged) - set(state) == {"lm_head.weight"} and set(state) <= set(merged)
    assert all(torch.equal(state[k], merged[k]) for k in state)
    assert not torch.equal(state["transformer.h.0.attn.c_attn.weight"],
                           before["base_model.model.transformer.h.0.attn.c_attn.base_layer.weight"])
    assert all(torch.equal(v, before[k]) for k, v in peft.state_dict().items())


def test_an_algorithms_judge_key_left_empty_is_refused_on_load():
    # judge_keys: a key set to null names no judge (Constitutional AI's critic: the policy itself); "" is a name
    # that no judge has, refused on load with the key, not at the first round of training.
    with pytest.raises(ConfigError, match=r"optimize\.online_dpo\.judge"):
        parse_params({"optimize": {"algorithm": "online_dpo", "online_dpo": {"judge": ""}}})
    assert REGISTRY["constitutional"].judges(parse_params({"optimize": {"algorithm": "constitutional"}}).optimize) \
        == {"rl_judge": "reward"}


def test_select_best_is_refused_under_accelerate():
    with pytest.raises(ConfigError, match="optimize.select: best keeps the best checkpoint in the stage's process"):
        parse_params({"judges": {"embedding": {"kind": "embedding"}, "reward": {"kind": "reward_model"},
                                 "short": {"kind": "regex", "pattern": "^.{0,40}$"}},
                      "optimize": {"select": "best", "select_judge": "short", "launcher": "accelerate"}})


@pytest.mark.matrix
def test_select_best_through_the_optimize_stage(built_project, tmp_path, monkeypatch):
    """select: best with a grader: a validation share of the training prompts is set apart, every probe step is
    scored and logged, and the candidate is the best-scored step's model."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.stages.common import StageContext
    from tasks.stages.optimize import run as run_optimize

    work, _ = _workspace(built_project, tmp_path, monkeypatch, "grpo", {})
    raw = merge(yaml.safe_load((work / "params.yaml").read_text()), {
        "judges": {"short": {"kind": "regex", "pattern": "^.{0,40}$", "mode": "fullmatch", "dotall": True}},
        "optimize": {"algorithm": "grpo", "select": "best", "select_judge": "short", "select_share": 0.3,
                     "select_samples": 2, "log_every": 1, "checkpoint_every": 0},
        "tracking": {"uri": f"sqlite:///{work}/mlruns.db"}})
    params = parse_params(raw)
    out = run_optimize(StageContext(params))
    mlflow.set_tracking_uri(params.tracking.uri)
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("rft-cycle").experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    scores = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "select/score")}
    assert sorted(scores) == list(range(out["steps"] + 1))           # step 0 and every step (log_every 1)
    best = max(scores.values())
    assert out["select_score"] == best and scores[out["selected_step"]] == best
    assert out["selected_step"] == min(s for s, v in scores.items() if v == best)   # the earliest of equals
    assert out["validation_prompts"] > 0
    # the validation prompts were set apart: GRPO trained on the others
    from tasks.optimize import validation_share
    from tasks.prompting import prompt_key, prompt_of

    train = [r for r in read_jsonl(work / "data/prompts.jsonl") if r["split"] == "train"]
    held = validation_share(train, 0.3)
    assert sum(prompt_key(prompt_of(r)) in held for r in train) == out["validation_prompts"]
    assert out["prompts"] == len(train) - out["validation_prompts"]


def test_probe_budget_admits_a_probe_only_within_its_share():
    from tasks.optimize import within_budget

    # 1 s of probes so far, 1 s expected, 30 s elapsed: (1 + 1) / (30 + 1) = 6.5% of the time -> within 10%,
    # not within 5%; no budget admits everything.
    assert within_budget(1.0, 1.0, 30.0, 0.10)
    assert not within_budget(1.0, 1.0, 30.0, 0.05)
    assert within_budget(100.0, 1.0, 0.0, None)
    # the boundary: (1 + 1) / (39 + 1) = 5% exactly is admitted
    assert within_budget(1.0, 1.0, 39.0, 0.05)


def test_prober_skips_probes_past_the_budget_and_counts_them(monkeypatch):
    """A fake clock: each probe takes 1 s, each step 9 s, probes due at every step, budget 10%."""
    from types import SimpleNamespace

    import tasks.optimize as opt

    now = [0.0]

    def fake_probe(*a, **k):
        now[0] += 1.0
        return {"probe_reward": 0.5, "probe_kl": 0.0, "probe_length": 3.0, "probe_eos_rate": 1.0}

    monkeypatch.setattr(opt, "probe", fake_probe)
    logged, curve = [], []
    log = lambda k, v, step: logged.append((k, v, step))  # noqa: E731
    log.many = lambda metrics, step: logged.extend((k, v, step) for k, v in metrics.items())
    s = SimpleNamespace(ref=None, tok=None, reward=None, probe_prompts=[])
    cfg = SimpleNamespace(probe_temperature=1.0, probe_max_new_tokens=4, seed=0, probe_budget=0.10)
    do_probe = opt.prober(s, cfg, log, curve, clock=lambda: now[0])
    ran = []
    for step in range(6):
        ran.append(bool(do_probe(None, step)))
        now[0] += 9.0
    # step 0 always (1 s spent, t=10 after the step); step 1 at t=10: (1+1)/(10+1) = 18% > 10% -> skipped;
    # step 2 at t=19: 2/20 = 10% -> runs (2 s spent, t=29 after); step 3 at t=29: 3/30 = 10% -> runs (t=39);
    # step 4 at t=39: 4/40 = 10% -> runs (t=49); step 5 at t=49: 5/50 = 10% -> runs.
    assert ran == [True, False, True, True, True, True]
    assert [c["step"] for c in curve] == [0, 2, 3, 4, 5]
    assert ("health/probes_skipped", 1.0, 1) in logged
    # With no budget every due probe runs.
    now[0], curve2 = 0.0, []
    do_all = opt.prober(s, SimpleNamespace(**{**vars(cfg), "probe_budget": None}), log, curve2,
                        clock=lambda: now[0])
    for step in range(6):
        do_all(None, step)
        now[0] += 0.1
    assert [c["step"] for c in curve2] == list(range(6))


def _figures(reward: float) -> dict:
    return {"probe_reward": reward, "probe_kl": 0.1, "probe_length": 3.0, "probe_eos_rate": 1.0}


def test_final_figures_are_the_curves_last_point():
    """One step, one value: the scheduled probe of the last step is the candidate's figures (no second probe
    with another seed beside it); when none ran there, the candidate is probed once, and that figure is logged
    at the last step and joins the curve."""
    from tasks.optimize import curve_row, final_figures

    logged, calls = [], []
    log = lambda k, v, step: logged.append((k, v, step))  # noqa: E731
    curve = [curve_row(0, _figures(-1.2)), curve_row(60, _figures(2.7))]
    assert final_figures(curve, 60, lambda: calls.append(1) or _figures(2.8), log) == _figures(2.7)
    assert not calls and not logged and len(curve) == 2
    # The budget skipped step 60 (the last probe ran at 55): one probe, logged at 60, and the curve's end.
    curve = [curve_row(0, _figures(-1.2)), curve_row(55, _figures(2.5))]
    assert final_figures(curve, 60, lambda: _figures(2.8), log) == _figures(2.8)
    assert curve[-1] == curve_row(60, _figures(2.8)) and ("health/probe_reward", 2.8, 60) in logged
    # Only the last point stands for the candidate: an earlier probe that happens to carry the step count (a
    # round of online DPO with no pairs, so no steps) was of an earlier model.
    curve = [curve_row(0, _figures(-1.2)), curve_row(4, _figures(1.0)), curve_row(3, _figures(0.5))]
    assert final_figures(curve, 4, lambda: _figures(2.0), log) == _figures(2.0) and curve[-1]["step"] == 4
    # An algorithm that counts no steps: the probe is returned, nothing is logged at a made-up step.
    logged.clear()
    assert final_figures([curve_row(0, _figures(0.0))], None, lambda: _figures(1.0), log) == _figures(1.0)
    assert not logged


def test_the_trainer_callback_probes_the_last_step_whatever_log_every():
    """Probed steps follow from the step count: 0, every log_every, and the last (13 is no multiple of 5)."""
    from types import SimpleNamespace

    from tasks.algorithms.base import mlflow_callback

    probed = []
    cb = mlflow_callback(lambda *a: None, lambda model, step: probed.append(step), log_every=5)
    state = SimpleNamespace(global_step=0, max_steps=13)
    cb.on_train_begin(None, state, None)
    for step in range(1, 14):
        state.global_step = step
        cb.on_step_end(None, state, None)
    assert probed == [0, 5, 10, 13]
    # A second phase (Constitutional AI's RL after its SFT) goes on from the first phase's 13 steps: no probe at
    # its start (the first phase's last probe is of the same model), and its own steps counted after 13.
    from tasks.algorithms.base import continue_steps

    logged = []
    cb2 = mlflow_callback(lambda k, v, step: logged.append(step), lambda model, step: probed.append(step), 5)
    continue_steps(SimpleNamespace(callbacks=[cb2]), 13)
    state = SimpleNamespace(global_step=0, max_steps=6)
    cb2.on_train_begin(None, state, None)
    for step in range(1, 7):
        state.global_step = step
        cb2.on_step_end(None, state, None)
        cb2.on_log(None, state, None, logs={"loss": 1.0})
    assert probed == [0, 5, 10, 13, 18, 19] and logged == [14, 15, 16, 17, 18, 19]


def test_clip_ratios_are_not_logged_when_every_update_is_on_policy():
    """On-policy GRPO (one iteration per generation, one optimizer step per generation): the ratio is 1, so TRL's
    clip_ratio/* are 0 at every step and would only lead the charts. Off-policy settings keep them."""
    from types import SimpleNamespace

    from tasks.algorithms.base import constant_metrics, mlflow_callback

    on = SimpleNamespace(num_iterations=1, steps_per_generation=1, gradient_accumulation_steps=1)
    assert constant_metrics(on) == ("clip_ratio",)
    assert constant_metrics(SimpleNamespace(**{**vars(on), "num_iterations": 2})) == ()
    assert constant_metrics(SimpleNamespace(**{**vars(on), "steps_per_generation": 4})) == ()
    assert constant_metrics(SimpleNamespace(learning_rate=1e-5)) == ()          # DPO's arguments: no such metric
    logged = {}
    cb = mlflow_callback(lambda k, v, step: logged.__setitem__(k, v), lambda m, step: None, log_every=5)
    state = SimpleNamespace(global_step=0, max_steps=3)
    cb.on_train_begin(on, state, None)
    cb.on_log(on, state, None, logs={"clip_ratio/low_mean": 0.0, "reward": 1.5, "kl": 0.1})
    assert logged == {"train/reward": 1.5, "train/kl": 0.1}


@pytest.mark.slow
def test_probes_never_change_the_training_run(built_project, tmp_path, monkeypatch):
    """GRPO samples its completions from torch's global random stream; a probe at every step (which seeds its
    own sample) must leave that stream alone, so the candidate is the same as with no probe after the first."""
    from tasks.stages.common import StageContext
    from tasks.stages.optimize import run as run_optimize

    weights = []
    for i, every in enumerate((1, 10**6)):
        work, params = _workspace(built_project, tmp_path / str(i), monkeypatch, "grpo", {},
                                  log_every=every, probe_budget=None, checkpoint_every=0)
        out = run_optimize(StageContext(params))
        curve = (work / "reports/optimize/curve.csv").read_text().splitlines()
        # a probe at each step 0..steps, or at step 0 and the last step (the candidate's figures)
        assert len(curve) - 1 == (out["steps"] + 1 if every == 1 else 2), curve
        weights.append((work / "models/candidate/model.safetensors").read_bytes())
    assert weights[0] == weights[1]


def _policy_reward_model(champion, dest):
    """A reward model on the policy's own tokenizer: GPT-2 with a one-logit score head, from the champion."""
    import torch
    from transformers import AutoTokenizer, GPT2ForSequenceClassification

    tok = AutoTokenizer.from_pretrained(champion)
    model = GPT2ForSequenceClassification.from_pretrained(champion, num_labels=1,
                                                          pad_token_id=tok.pad_token_id or tok.eos_token_id)
    torch.nn.init.normal_(model.score.weight, std=0.5, generator=torch.Generator().manual_seed(0))
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest, model


@pytest.mark.slow
def test_ppo_value_model_starts_from_a_reward_model_on_the_policys_tokens(built_project, tmp_path):
    import torch

    from tasks.algorithms.ppo import Critic, forward, value_from_reward_model
    from tasks.policy import load_policy

    path, _, _ = built_project
    policy, tok = load_policy(path / "models/champion")
    rm_dir, rm = _policy_reward_model(path / "models/champion", tmp_path / "policy-rm")
    backbone, head = value_from_reward_model(rm_dir, tok)
    assert torch.equal(head.weight, rm.score.weight)             # the score head is the value head's start
    critic = Critic(policy, backbone, head)
    enc = tok(["A review of the soup:"] * 2, return_tensors="pt")
    ids = torch.cat([enc["input_ids"], enc["input_ids"][:, :3]], 1)
    _, _, values = forward(policy, critic, ids, torch.ones_like(ids), enc["input_ids"].shape[1], 1.0)
    # V at the response's first position is the reward model's score head on the prompt's last state:
    # the same number the reward model gives the prompt alone (GPT-2's classifier reads the last token).
    with torch.no_grad():
        assert values[0, 0].item() == pytest.approx(rm(**enc).logits[0, 0].item(), abs=1e-5)
    # The cycle's MiniLM reward model reads other tokens: refused, naming the key.
    with pytest.raises(ConfigError, match="optimize.ppo.value_init: reward_model needs a reward model on the "
                                          "policy's tokenizer"):
        value_from_reward_model(path / "models/reward", tok)


def test_value_init_from_a_reward_model_needs_a_separate_value_model_and_a_reward_model_judge():
    with pytest.raises(ConfigError, match="optimize.ppo.value_init: reward_model starts a separate"):
        parse_params({"optimize": {"ppo": {"value_init": "reward_model"}}})
    with pytest.raises(ConfigError, match="optimize.ppo.value_init: reward_model starts the value model from a "
                                          "reward model, but no judge"):
        parse_params({"optimize": {"algorithm": "ppo", "reward": ["embedding"],
                                   "ppo": {"value_init": "reward_model", "value_model": "separate"}}})


@pytest.mark.slow
def test_constitutional_rl_phase_can_be_grpo_against_the_reward_model(built_project, tmp_path, monkeypatch):
    from tasks.stages.common import StageContext
    from tasks.stages.optimize import run as run_optimize

    _, params = _workspace(built_project, tmp_path, monkeypatch, "constitutional",
                           {**TINY_SECTIONS["constitutional"], "rl": "grpo", "rl_steps": 2, "rl_num_generations": 2})
    out = run_optimize(StageContext(params))
    # 6 revisions at batch 4 -> 2 SFT steps, then 2 GRPO steps; no AI preference pairs were drawn
    assert out["revised"] == 6 and out["steps"] == 4 and "ai_pairs" not in out and math.isfinite(out["rl_loss"])


@pytest.mark.slow
def test_lora_adapters_are_trained_and_merged_into_a_plain_candidate(built_project, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from tasks.stages.common import StageContext
    from tasks.stages.optimize import run as run_optimize

    work, params = _workspace(built_project, tmp_path, monkeypatch, "dpo", TINY_SECTIONS["dpo"], lora=True,
                              lora_r=4, lora_alpha=8)
    run_optimize(StageContext(params))
    # The candidate is a plain model (adapters merged, no adapter files), and its weights moved.
    assert not (work / "models/candidate/adapter_config.json").exists()
    cand = AutoModelForCausalLM.from_pretrained(work / "models/candidate")
    base = AutoModelForCausalLM.from_pretrained(work / "models/champion")
    assert not any("lora" in k for k in cand.state_dict())
    moved = [k for k, v in cand.state_dict().items() if not (v == base.state_dict()[k]).all()]
    assert moved and all("attn" in k or "mlp" in k for k in moved)   # LoRA targets the linear layers only

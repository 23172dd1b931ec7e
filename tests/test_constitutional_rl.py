"""Constitutional AI's RL phase, with the trainers and the sampler replaced by recorders (no training):
DPO's reference is the supervised (SL-CAI) model, and the RL phase samples at its own configured temperature."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.algorithms import constitutional
from tasks.algorithms.base import Run


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    from tiny_models import tiny_policy

    return tiny_policy(tmp_path_factory.mktemp("cai") / "policy")


def _run(tiny_path, tmp_path, monkeypatch, **section):
    """A Run of the constitutional algorithm on the tiny policy; the trainers, ``fit`` and the sampler are
    recorders. The fake SFT trainer moves the policy's weights, as training would."""
    import torch
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = {"complete": [], "dpo": None}

    class FakeSFT:
        def __init__(self, model, **kwargs):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01)
            self.model = model

    class FakeDPO:
        def __init__(self, model, ref_model, **kwargs):
            seen["dpo"] = {"model": model, "ref_model": ref_model,
                           "model_state": {k: v.clone() for k, v in model.state_dict().items()}}
            self.model = model

    def fake_complete(model, tok, prompts, *, max_new_tokens, temperature, seed, **kwargs):
        seen["complete"].append({"temperature": temperature, "seed": seed})
        return [f"reply {i} to it" for i in range(len(prompts))]

    monkeypatch.setattr(trl, "SFTTrainer", FakeSFT)
    monkeypatch.setattr(trl, "DPOTrainer", FakeDPO)
    monkeypatch.setattr("tasks.algorithms.base.fit", lambda trainer, run, *a: {"train_loss": 0.5, "steps": 1})
    monkeypatch.setattr("tasks.rollout.complete", fake_complete)

    tok = AutoTokenizer.from_pretrained(tiny_path)
    policy, champion = AutoModelForCausalLM.from_pretrained(tiny_path), AutoModelForCausalLM.from_pretrained(tiny_path)
    judge = SimpleNamespace(compare=lambda ps, a, b, keys, rows=None: SimpleNamespace(a_wins=[True] * len(ps)))
    rubric = SimpleNamespace(constitution=lambda: [SimpleNamespace(name="kind", critique="Is it kind?",
                                                                   revision="Make it kind.")])
    cfg = constitutional.Config(prompts=2, rl_prompts=2, max_new_tokens=4, batch_size=2, **section)
    run = Run(cfg=cfg, common=SimpleNamespace(seed=0, checkpoint_every=0), policy=policy, reference=champion,
              tok=tok, data=["How do I bake bread?", "Which fruit is red?"], reward=None, reward_funcs=[],
              reward_weights=[], callbacks=[], log=lambda *a: None, probe=lambda *a: {},
              checkpoint_dir=tmp_path / "ckpt", champion=tiny_path, judge=lambda name: judge, rubric=rubric)
    return run, seen


def test_rl_phase_dpo_reference_is_the_supervised_model_not_the_champion(tiny_path, tmp_path, monkeypatch):
    run, seen = _run(tiny_path, tmp_path, monkeypatch, rl="dpo")
    constitutional.train(run)
    dpo = seen["dpo"]
    ref, sft_state = dpo["ref_model"], dpo["model_state"]
    champion_state = run.reference.state_dict()
    assert ref is not run.reference and ref is not dpo["model"]          # TRL refuses the policy itself
    ref_state = ref.state_dict()
    assert set(ref_state) == set(sft_state)
    # the reference holds the supervised model's weights (the champion's plus the fake SFT step), frozen
    assert all((ref_state[k] == sft_state[k]).all() for k in sft_state)
    assert any((ref_state[k] != champion_state[k]).any() for k in champion_state)
    assert not any(p.requires_grad for p in ref.parameters()) and not ref.training


@pytest.mark.parametrize("rl", ["dpo", "grpo"])
def test_rl_phase_samples_at_the_configured_rl_temperature(rl, tiny_path, tmp_path, monkeypatch):
    seen_grpo = {}

    def fake_grpo_train(run):
        seen_grpo["temperature"] = run.cfg.temperature
        return run.policy, {"train_loss": 0.1, "steps": 1}

    monkeypatch.setattr("tasks.algorithms.grpo.train", fake_grpo_train)
    # 0.3 is below the 0.7 the phase used to force with max(temperature, 0.7)
    run, seen = _run(tiny_path, tmp_path, monkeypatch, rl=rl, temperature=0.2, rl_temperature=0.3)
    constitutional.train(run)
    rl_calls = [c for c in seen["complete"] if c["seed"] == 10_000]          # the RL phase's reply pairs
    sl_calls = [c for c in seen["complete"] if c["seed"] != 10_000]          # replies, critiques, revisions
    assert sl_calls and {c["temperature"] for c in sl_calls} == {0.2}
    if rl == "dpo":
        assert rl_calls and {c["temperature"] for c in rl_calls} == {0.3}
    else:
        assert not rl_calls and seen_grpo["temperature"] == 0.3


def test_rl_temperature_is_a_checked_key():
    from tasks.config import parse_params
    from tasks.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optimize\.constitutional\.rl_temperature: must be > 0"):
        parse_params({"optimize": {"algorithm": "constitutional", "constitutional": {"rl_temperature": 0}}})


def test_rl_phase_grpo_reference_is_the_supervised_model(tiny_path, tmp_path, monkeypatch):
    # TRL's GRPOTrainer loads a full policy's reference from config._name_or_path: that folder must hold the
    # supervised model, not the champion the policy was loaded from.
    import torch
    from transformers import AutoModelForCausalLM

    seen = {}

    def fake_grpo_train(run):
        seen["name"] = run.policy.config._name_or_path
        seen["state"] = {k: v.clone() for k, v in run.policy.state_dict().items()}
        return run.policy, {"train_loss": 0.1, "steps": 1}

    monkeypatch.setattr("tasks.algorithms.grpo.train", fake_grpo_train)
    run, _ = _run(tiny_path, tmp_path, monkeypatch, rl="grpo")
    before = run.policy.config._name_or_path
    trained, _ = constitutional.train(run)
    assert Path(seen["name"]) == run.checkpoint_dir / "sft-reference"
    ref = AutoModelForCausalLM.from_pretrained(seen["name"]).state_dict()
    champion = run.reference.state_dict()
    assert all(torch.equal(ref[k], seen["state"][k]) for k in ref)              # the supervised weights
    assert any(not torch.equal(ref[k], champion[k]) for k in ref)                 # not the champion's
    assert trained.config._name_or_path == before                                 # the name given back


def test_rl_phase_grpo_under_lora_disables_to_the_supervised_model(tiny_path, tmp_path):
    # With LoRA, TRL's reference is the policy with its adapters disabled: the supervised adapters must be merged
    # in, and a fresh adapter train on top.
    import torch
    from transformers import AutoModelForCausalLM

    from tasks.optimize import _with_lora

    policy = _with_lora(AutoModelForCausalLM.from_pretrained(tiny_path), SimpleNamespace(lora_r=4, lora_alpha=8))
    with torch.no_grad():                      # the supervised phase's progress, in the adapters
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    ids = torch.tensor([[1, 2, 3, 4]])
    supervised = policy(ids).logits
    anchored = constitutional.anchored_to_itself(policy, tmp_path / "unused")
    with anchored.disable_adapter():
        reference = anchored(ids).logits
    assert torch.allclose(reference, supervised, atol=1e-5)
    assert not torch.allclose(reference, AutoModelForCausalLM.from_pretrained(tiny_path)(ids).logits, atol=1e-3)
    assert any(p.requires_grad for n, p in anchored.named_parameters() if "lora_" in n)
    assert not (tmp_path / "unused").exists()

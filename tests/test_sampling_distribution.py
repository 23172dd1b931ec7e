"""The policy samples from the distribution its log-probabilities assume: plain temperature sampling.

PPO's old log-probs, every KL estimate and the probe score the sampled tokens with ``token_logprobs``
(log-softmax of the logits over the temperature). That is only the sampled distribution if ``generate``
applies nothing else: no top-k of 50 (transformers' global default), and none of the settings a checkpoint's
own ``generation_config.json`` carries (repetition penalty, top-k, min-p, n-gram blocking). Here the scores
``generate`` sampled from are read back and compared with ``token_logprobs`` token by token.
"""

import copy
import json

import pytest

from tasks.policy import load_policy

pytestmark = pytest.mark.filterwarnings("ignore")

PROMPTS = ["Write a review of the ramen at Blue Door.", "How was the pie?", "Review the tea at Old Mill."]
# What a downloaded checkpoint may carry: every one of these changes the distribution generate samples from.
CHECKPOINT_SETTINGS = {"do_sample": True, "temperature": 1.3, "top_k": 5, "top_p": 0.8, "min_p": 0.2,
                       "repetition_penalty": 5.0, "no_repeat_ngram_size": 2}


def _tiny(path, settings=None):
    import torch

    from tasks.policy import tiny_gpt, train_tokenizer

    torch.manual_seed(0)
    tok = train_tokenizer(PROMPTS * 20 + ["The soup was great. I would come back again."] * 20, 300)
    tiny_gpt(len(tok), 2, 2, 32, 128, tok.eos_token_id).save_pretrained(path)
    tok.save_pretrained(path)
    if settings is not None:
        own = json.loads((path / "generation_config.json").read_text())
        (path / "generation_config.json").write_text(json.dumps({**own, **settings}))
    return path


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return load_policy(_tiny(tmp_path_factory.mktemp("plain")))


@pytest.fixture(scope="module")
def opinionated(tmp_path_factory):
    return load_policy(_tiny(tmp_path_factory.mktemp("opinionated"), CHECKPOINT_SETTINGS))


def sample_with_scores(model, tok, monkeypatch, **kwargs):
    """``rollout.sample`` as it runs, with the log-softmax of the scores ``generate`` sampled from (the logits
    after every processor) read back at the sampled tokens: (rollout, log-probs (N, T))."""
    import torch

    from tasks.rollout import sample

    seen = {}
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    real = inner.generate

    def spy(*args, **kw):
        if kw.get("generation_config") is not None:
            kw["generation_config"] = copy.deepcopy(kw["generation_config"])
            kw["generation_config"].output_scores = True
            kw["generation_config"].return_dict_in_generate = True
        else:
            kw.update(output_scores=True, return_dict_in_generate=True)
        out = real(*args, **kw)
        seen["scores"] = torch.stack(out.scores, 1)
        return out.sequences

    monkeypatch.setattr(inner, "generate", spy)
    r = sample(model, tok, PROMPTS, 2, **kwargs)
    monkeypatch.undo()
    new = r.input_ids[:, r.prompt_len:]
    logp = torch.log_softmax(seen["scores"].float(), -1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
    return r, torch.where(r.response_mask.bool(), logp, torch.zeros_like(logp))


def test_at_step_0_the_sampler_and_token_logprobs_agree_to_1e6_at_temperature_0_7(plain, monkeypatch):
    # Fails where generate samples with transformers' default top_k=50 (the vocabulary has 300 tokens).
    from tasks.rollout import token_logprobs

    model, tok = plain
    r, sampled = sample_with_scores(model, tok, monkeypatch, temperature=0.7, max_new_tokens=12, seed=3)
    assert int(r.response_mask.sum()) > 20
    assert float((sampled - token_logprobs(model, r, 0.7)).abs().max()) <= 1e-6


def test_a_checkpoints_own_generation_config_does_not_change_the_sampled_distribution(opinionated, monkeypatch):
    from tasks.rollout import token_logprobs

    model, tok = opinionated
    assert model.generation_config.repetition_penalty == 5.0 and model.generation_config.top_k == 5
    r, sampled = sample_with_scores(model, tok, monkeypatch, temperature=0.7, max_new_tokens=12, seed=3)
    assert int(r.response_mask.sum()) > 20
    assert float((sampled - token_logprobs(model, r, 0.7)).abs().max()) <= 1e-6
    # The checkpoint's own settings are set aside for the call only: a saved policy keeps its file as it was.
    assert model.generation_config.repetition_penalty == 5.0 and model.generation_config.min_p == 0.2


def test_a_lora_wrapped_policy_samples_plainly_too(opinionated, monkeypatch):
    # The optimize probe samples from the policy under training, wrapped in LoRA adapters when optimize.lora.
    from peft import LoraConfig, get_peft_model

    from tasks.rollout import token_logprobs

    model, tok = opinionated
    wrapped = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))
    wrapped.eval()
    r, sampled = sample_with_scores(wrapped, tok, monkeypatch, temperature=0.7, max_new_tokens=12, seed=3)
    assert float((sampled - token_logprobs(wrapped, r, 0.7)).abs().max()) <= 1e-6


def test_the_project_owns_every_sampling_setting():
    # Values the config must hold, whatever the checkpoint's file says: a processor is off only when its setting
    # is explicitly neutral (a None would be filled from the checkpoint, top_k then from transformers' 50).
    from tasks.policy import train_tokenizer
    from tasks.rollout import sampling_config

    tok = train_tokenizer(PROMPTS * 5, 280)
    c = sampling_config(tok, temperature=0.7, max_new_tokens=9, k=3)
    assert (c.do_sample, c.temperature, c.top_k, c.top_p, c.max_new_tokens, c.num_return_sequences) == \
        (True, 0.7, 0, 1.0, 9, 3)
    assert (c.repetition_penalty, c.no_repeat_ngram_size, c.typical_p, c.epsilon_cutoff, c.eta_cutoff) == \
        (1.0, 0, 1.0, 0.0, 0.0)
    assert c.min_p is None and c.pad_token_id == tok.pad_token_id and c.eos_token_id == tok.eos_token_id
    c = sampling_config(tok, temperature=0.9, max_new_tokens=4, top_k=7, top_p=0.5)
    assert (c.top_k, c.top_p, c.num_return_sequences) == (7, 0.5, 1)
    greedy = sampling_config(tok, temperature=0, max_new_tokens=4)
    assert greedy.do_sample is False and greedy.repetition_penalty == 1.0


def test_log_probs_divide_fp32_logits_by_the_temperature(tmp_path):
    # A bf16 policy: dividing the bf16 logits by T before the cast rounds them again, so PPO's old log-probs
    # (token_logprobs) and its new ones (ppo.forward, which casts first) differed at step 0.
    import torch

    from tasks.algorithms.ppo import Critic, forward
    from tasks.rollout import sample, token_logprobs

    model, tok = load_policy(_tiny(tmp_path), dtype="bf16")
    assert model.dtype == torch.bfloat16
    r = sample(model, tok, PROMPTS, 2, temperature=0.7, max_new_tokens=8, seed=1)
    old = token_logprobs(model, r, 0.7)
    with torch.no_grad():
        new, _, _ = forward(model, Critic(model), r.input_ids, r.attention_mask, r.prompt_len, 0.7)
    assert old.dtype == torch.float32
    assert float((old - new.float() * r.response_mask).abs().max()) <= 1e-6


def test_trl_online_trainers_sample_without_the_checkpoints_settings(tmp_path, monkeypatch):
    # GRPO and RLOO sample inside TRL: TRL sets temperature, top-k, top-p and the repetition penalty, and
    # transformers fills the rest from the checkpoint's generation_config.json unless the project pins it.
    from types import SimpleNamespace

    from trl import GRPOConfig, GRPOTrainer

    from tasks.algorithms.sampling import OnlineConfig, train_online

    model, tok = load_policy(_tiny(tmp_path / "policy", CHECKPOINT_SETTINGS))
    seen = {}

    def fake_fit(trainer, run, *args):
        # What `generate` merges while the trainer samples: its own config over the model's.
        merged = {**run.policy.generation_config.to_diff_dict(), **trainer.generation_config.to_diff_dict()}
        seen.update(merged=merged, eos=run.policy.generation_config.eos_token_id)
        return {"train_loss": 0.0, "steps": 0}

    monkeypatch.setattr("tasks.algorithms.base.fit", fake_fit)
    run = SimpleNamespace(cfg=OnlineConfig(max_steps=1, batch_size=2, num_generations=2, max_completion_length=4),
                          policy=model, tok=tok, data=PROMPTS[:2], reward_funcs=[lambda **kw: [0.0] * 2],
                          reward_weights=[1.0], callbacks=[], common=SimpleNamespace(seed=0, checkpoint_every=0),
                          checkpoint_dir=tmp_path / "ckpt")
    monkeypatch.setattr("tasks.algorithms.base.trl_args",
                        lambda cls, run, **kw: GRPOConfig(output_dir=str(run.checkpoint_dir), report_to=[],
                                                          use_cpu=True, **kw))
    train_online(run, GRPOTrainer, GRPOConfig)
    merged = seen["merged"]
    assert merged.get("repetition_penalty", 1.0) == 1.0 and merged.get("no_repeat_ngram_size", 0) == 0
    assert merged.get("min_p") in (None, 0.0) and merged.get("top_k") in (0, None) and merged.get("top_p", 1.0) == 1.0
    assert seen["eos"] == tok.eos_token_id
    # The checkpoint keeps its own settings afterwards (the candidate is saved with them).
    assert model.generation_config.repetition_penalty == 5.0 and model.generation_config.min_p == 0.2

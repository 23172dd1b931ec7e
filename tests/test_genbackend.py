"""generate.backend: which sampler runs where, and the vLLM path's requests and output schema (against a stand-in
``vllm`` module that records what it is asked: no GPU here to run the real engine)."""

from __future__ import annotations

import sys
import types

import pytest

from tasks import genbackend
from tasks.config import parse_params
from tasks.errors import ConfigError
from tasks.genbackend import request_seed, resolve_backend


def test_auto_takes_vllm_only_on_a_gpu_with_vllm_and_local_shards(monkeypatch):
    monkeypatch.setattr(genbackend, "vllm_unavailable", lambda: None)
    assert resolve_backend("auto", "local", "cuda") == "vllm"
    assert resolve_backend("auto", "dask", "cuda") == "transformers"      # shards run on the cluster's workers
    assert resolve_backend("auto", "local", "cpu") == "transformers"
    assert resolve_backend("transformers", "local", "cuda") == "transformers"
    with pytest.raises(ConfigError, match="generate.backend: vllm cannot run here: scale.runner is ray"):
        resolve_backend("vllm", "ray", "cuda")
    with pytest.raises(ConfigError, match="generate.device is cpu"):
        resolve_backend("vllm", "local", "cpu")
    monkeypatch.setattr(genbackend, "vllm_unavailable", lambda: "no CUDA GPU is visible")
    assert resolve_backend("auto", "local", "cuda") == "transformers"
    with pytest.raises(ConfigError, match="vllm cannot run here: no CUDA GPU is visible"):
        resolve_backend("vllm", "local", "cuda")


def test_this_machine_says_why_vllm_cannot_run():
    import importlib.util

    import torch

    why = genbackend.vllm_unavailable()
    if importlib.util.find_spec("vllm") is None:
        assert why == "the vllm package is not installed (pip install vllm)"
    elif not torch.cuda.is_available():
        assert why == "no CUDA GPU is visible"
    else:
        assert why is None
    with pytest.raises(ConfigError, match="generate.backend"):
        parse_params({"generate": {"backend": "tgi"}})


def test_vllm_requests_carry_the_same_prompts_settings_and_per_prompt_seeds(monkeypatch, tmp_path):
    from tasks.policy import train_tokenizer
    from tasks.prompting import format_prompt

    from tasks.policy import tiny_gpt

    tok = train_tokenizer(["Review the soup. It was good. The cake was bad."] * 20, 280)
    tok.save_pretrained(tmp_path)
    tiny_gpt(len(tok), 1, 1, 8, 32, tok.eos_token_id).config.save_pretrained(tmp_path)     # a 32-token context
    asked = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class LLM:
        def __init__(self, **kw):
            asked["engine"] = kw

        def generate(self, prompts, settings, use_tqdm=True):
            asked["prompts"], asked["settings"] = prompts, settings
            done = types.SimpleNamespace
            return [done(outputs=[done(text=f" r{i}-{j} ", token_ids=[1] * (j + 1)) for j in range(s.n)])
                    for i, s in enumerate(settings)]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    cfg = parse_params({"generate": {"k": 3, "top_k": 0, "top_p": 0.9, "temperature": 0.7, "max_new_tokens": 12,
                                     "seed": 5}}).generate
    long = "Review the soup. It was good. " * 12
    prompts = ["Review the soup.", [{"role": "user", "content": "Review the cake."}], long]
    responses, n_tokens, seconds = genbackend.vllm_generate(str(tmp_path), prompts, cfg)
    # The engine samples in the dtype the stage gives it (tasks/precision.py::sampling_dtype; fp32 by default).
    assert asked["engine"] == {"model": str(tmp_path), "tokenizer": str(tmp_path), "seed": 5, "dtype": "float32"}
    genbackend.vllm_generate(str(tmp_path), prompts, cfg, "bf16")
    assert asked["engine"]["dtype"] == "bfloat16"
    # The token ids the transformers path reads: the formatted prompt, no special tokens added; a prompt longer
    # than the 32 - 12 = 20 tokens the context leaves beside max_new_tokens keeps its last 20.
    full = [tok(format_prompt(p, tok), add_special_tokens=False)["input_ids"] for p in prompts]
    assert len(full[2]) > 20 and max(len(full[0]), len(full[1])) <= 20
    assert [p["prompt_token_ids"] for p in asked["prompts"]] == [full[0], full[1], full[2][-20:]]
    s0, s1, _ = asked["settings"]
    assert (s0.n, s0.temperature, s0.top_p, s0.max_tokens) == (3, 0.7, 0.9, 12)
    assert s0.top_k == -1                                     # top_k 0 (off) is vLLM's -1
    # Plain temperature sampling, as the transformers path: the neutral settings are given, not left to defaults.
    assert (s0.min_p, s0.repetition_penalty, s0.presence_penalty, s0.frequency_penalty) == (0.0, 1.0, 0.0, 0.0)
    # Seeds per prompt: 5 * 100003 + index, whatever batches the engine forms.
    assert (s0.seed, s1.seed) == (request_seed(5, 0), request_seed(5, 1)) == (500015, 500016)
    assert responses[:2] == [["r0-0", "r0-1", "r0-2"], ["r1-0", "r1-1", "r1-2"]]   # k per prompt, stripped
    assert n_tokens == 3 * (1 + 2 + 3) and seconds >= 0

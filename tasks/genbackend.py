"""Generation backends (``generate.backend``): batched Hugging Face ``generate``, or vLLM on a GPU.

- ``transformers``: ``tasks/rollout.py``'s batched sampling, on any device, sharded by ``scale.runner``.
- ``vllm``: vLLM's engine on the GPU, in this process (it batches and schedules the requests itself). Each
  prompt is one request for ``generate.k`` samples with the same sampling settings (temperature, top-k, top-p,
  ``max_new_tokens``; min-p and the repetition, presence and frequency penalties given explicitly as off, as
  the transformers path samples), seeded per prompt with ``generate.seed * 100003 + i`` (``i``: the prompt's
  place in the list), and read as the token ids the transformers path would read (``format_prompt``, no
  special tokens added). Its outputs have the same schema; they are vLLM's samples, not the same texts.
- ``auto``: vLLM when the package imports, generation runs on a CUDA GPU (``generate.device``) and the shards
  run here (``scale.runner: local``); otherwise transformers.

The stage records the backend that ran in its MLflow run (tag ``generate.backend``). Asking for ``vllm``
where it cannot run is a configuration error that says why, never a quiet fallback.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from tasks.errors import ConfigError
from tasks.generate import generate_sharded, sample_responses
from tasks.policy import load_policy, resolve
from tasks.prompting import format_prompt
from tasks.rollout import context_of, room_for

if TYPE_CHECKING:
    from tasks.config import GenerateConfig


def vllm_unavailable() -> str | None:
    """Why vLLM cannot generate here, or None when it can."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed (pip install vllm)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def resolve_backend(name: str, runner: str, device: str) -> str:
    """The backend that runs for ``generate.backend: name`` with ``scale.runner: runner`` on ``device`` (the
    device ``generate.device`` picked: cpu or cuda)."""
    if name == "auto":
        return "vllm" if runner == "local" and device == "cuda" and vllm_unavailable() is None else "transformers"
    if name == "vllm":
        why = (vllm_unavailable()
               or (f"scale.runner is {runner}: vLLM batches on the GPU in this process" if runner != "local" else None)
               or ("generate.device is cpu" if device != "cuda" else None))
        if why:
            raise ConfigError(f"generate.backend: vllm cannot run here: {why} (use auto or transformers)")
    return name


def request_seed(seed: int, index: int) -> int:
    """The sampler seed of the prompt at ``index``: fixed per prompt, whatever batches the engine forms."""
    return seed * 100_003 + index


def vllm_generate(model_dir: str, prompts: list, cfg, dtype: str = "fp32") -> tuple[list[list[str]], int, float]:
    """``cfg.k`` samples per prompt from vLLM: (responses per prompt, generated tokens, seconds sampling)."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tok = AutoTokenizer.from_pretrained(model_dir)
    room = room_for(context_of(model_dir), cfg.max_new_tokens)
    # Cut from the left as the transformers path does: the prompt's end and max_new_tokens fit the context.
    ids = [tok(format_prompt(p, tok), add_special_tokens=False)["input_ids"][-room if room else 0:]
           for p in prompts]
    llm = LLM(model=model_dir, tokenizer=model_dir, seed=cfg.seed,
              dtype={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype])
    # Every setting that shapes the distribution is given, the neutral ones too: plain temperature sampling with
    # the asked top-k/top-p, as the transformers path samples (tasks/rollout.py::sampling_config).
    settings = [SamplingParams(n=cfg.k, temperature=cfg.temperature, top_k=cfg.top_k or -1, top_p=cfg.top_p,
                               min_p=0.0, repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
                               max_tokens=cfg.max_new_tokens, seed=request_seed(cfg.seed, i))
                for i in range(len(prompts))]
    t0 = time.perf_counter()
    outputs = llm.generate([{"prompt_token_ids": x} for x in ids], settings, use_tqdm=False)
    seconds = time.perf_counter() - t0
    responses = [[c.text.strip() for c in out.outputs] for out in outputs]
    return responses, sum(len(c.token_ids) for out in outputs for c in out.outputs), seconds


def transformers_generate(model_dir: str, prompts: list, cfg, device: str, scale, dtype: str = "fp32") -> tuple:
    if scale.runner == "local":
        model, tok = load_policy(model_dir, device, dtype)
        return sample_responses(model, tok, prompts, cfg, device)
    return generate_sharded(model_dir, prompts, cfg, device, scale, dtype)


BACKENDS: dict[str, Callable] = {
    "transformers": transformers_generate,
    "vllm": lambda model_dir, prompts, cfg, device, scale, dtype="fp32": vllm_generate(model_dir, prompts, cfg, dtype),
}


def generate_responses(model_dir: str, prompts: list, cfg: GenerateConfig, device: str, scale,
                       backend: str = "transformers", dtype: str = "fp32") -> tuple[list[list[str]], int, float, int]:
    """``cfg.k`` responses for each prompt, in the prompts' order, on ``backend``: (responses, generated tokens,
    seconds sampling, prompts cut to fit the context). The policy samples with its weights in ``dtype``
    (``tasks/precision.py::sampling_dtype``).

    With ``generate.sort_by_length`` the prompts are sampled shortest first (a stable sort on formatted token
    length), so each batch pads little, and the results are put back in the given order. A prompt longer than the context leaves beside
    ``max_new_tokens`` is cut from the left by the sampler and counted here.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(model_dir))
    # Token lengths a chunk at a time, so the tokenizer's encodings of every prompt are never alive at once.
    lengths = [len(ids) for i in range(0, len(prompts), 1024)
               for ids in tok([format_prompt(p, tok) for p in prompts[i:i + 1024]],
                              add_special_tokens=False)["input_ids"]]
    room = room_for(context_of(model_dir), cfg.max_new_tokens)
    truncated = sum(n > room for n in lengths) if room else 0
    order = sorted(range(len(prompts)), key=lengths.__getitem__) if cfg.sort_by_length else list(range(len(prompts)))
    responses, n_tokens, seconds = BACKENDS[backend](model_dir, [prompts[i] for i in order], cfg, device, scale,
                                                      dtype)
    out: list = [None] * len(prompts)
    for j, i in enumerate(order):
        out[i] = responses[j]
    return out, n_tokens, seconds, truncated

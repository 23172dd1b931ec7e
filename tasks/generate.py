"""The work of stage ``generate`` (its adapter: ``tasks/stages/generate.py``): k responses per training prompt from
the champion, in batches.

Prompts are left-padded into batches of ``generate.batch_size``; each batch
asks ``model.generate`` for ``k`` samples per prompt at once
(``num_return_sequences=k``), so there is never a per-prompt loop. The sampler
is seeded per batch from ``generate.seed``, which makes a run reproducible for
a given batch size and device. Throughput is logged as generated tokens per
second (tokens up to and including EOS).
"""

from __future__ import annotations

from pathlib import Path

from tasks import rollout
from tasks.config import GenerateConfig
from tasks.policy import load_policy, read_meta
from tasks.workers import batch_shards, run_shards


def policy_version(model_dir: str | Path) -> str:
    meta = read_meta(model_dir)
    if "registry_version" in meta:
        return f"{meta.get('registry_name', 'policy')}/{meta['registry_version']}"
    return "unregistered"

def sample_responses(model, tok, prompts: list, cfg: GenerateConfig, device: str,
                     k: int | None = None, progress: bool = True,
                     first_batch: int = 0) -> tuple[list[list[str]], int, float]:
    """Sample ``k`` responses for each prompt in batches of ``cfg.batch_size`` prompts.

    Returns (responses per prompt, generated tokens, seconds). A generated
    sequence counts its tokens up to and including its first EOS. Batch ``b`` is
    seeded with ``cfg.seed * 100003 + b``.
    """

    k = k or cfg.k
    out: list[list[str]] = []
    n_tokens, seconds = 0, 0.0
    for r, dt in rollout.sample_batches(model, tok, prompts, k, batch_size=cfg.batch_size, seed=cfg.seed, progress=progress,
                                first_batch=first_batch,
                                temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, top_k=cfg.top_k,
                                top_p=cfg.top_p, device=device, inference=True):
        seconds += dt
        n_tokens += int(r.response_mask.sum())
        out += [r.texts[i * k:(i + 1) * k] for i in range(len(r.texts) // k)]
    return out, n_tokens, seconds

def generate_shard(model_dir: str, prompts: list, cfg: GenerateConfig, device: str, first_batch: int,
                   threads: int, dtype: str = "fp32") -> tuple[list[list[str]], int, float]:
    """One worker's share: load the policy and sample its batches, seeded as the whole run seeds them."""
    import torch

    torch.set_num_threads(threads)
    model, tok = load_policy(model_dir, device, dtype)
    return sample_responses(model, tok, prompts, cfg, device, progress=False, first_batch=first_batch)


def generate_sharded(model_dir: str, prompts: list, cfg: GenerateConfig, device: str, scale,
                     dtype: str = "fp32") -> tuple:
    """Sample on ``scale.workers`` workers; the result is the in-process run's, byte for byte."""

    calls = [dict(model_dir=model_dir, prompts=prompts[start:stop], cfg=cfg, device=device, first_batch=first,
                  threads=scale.threads_per_worker, dtype=dtype)
             for first, start, stop in batch_shards(len(prompts), cfg.batch_size, scale.workers)]
    parts = run_shards(generate_shard, calls, scale)
    responses = [resp for part in parts for resp in part[0]]
    # Seconds: the slowest shard's sampling time (they run side by side).
    return responses, sum(p[1] for p in parts), max((p[2] for p in parts), default=0.0)

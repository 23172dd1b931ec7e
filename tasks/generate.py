"""Stage ``generate``: k responses per training prompt from the champion, in batches.

Prompts are left-padded into batches of ``generate.batch_size``; each batch
asks ``model.generate`` for ``k`` samples per prompt at once
(``num_return_sequences=k``), so there is never a per-prompt loop. The sampler
is seeded per batch from ``generate.seed``, which makes a run reproducible for
a given batch size and device. Throughput is logged as generated tokens per
second (tokens up to and including EOS).
"""

from __future__ import annotations

from pathlib import Path

from tasks.config import GenerateConfig, Params
from tasks.io import read_jsonl, write_jsonl
from tasks.paths import GENERATIONS as OUT
from tasks.paths import PROMPTS
from tasks.policy import check_model_folder, load_policy, pick_device, read_meta
from tasks.prompting import prompt_of

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
    from tasks.rollout import sample_batches

    k = k or cfg.k
    out: list[list[str]] = []
    n_tokens, seconds = 0, 0.0
    for r, dt in sample_batches(model, tok, prompts, k, batch_size=cfg.batch_size, seed=cfg.seed, progress=progress,
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
    from tasks.params_audit import unwrap
    from tasks.shard import batch_shards, run_shards

    cfg = unwrap(cfg)
    calls = [dict(model_dir=model_dir, prompts=prompts[start:stop], cfg=cfg, device=device, first_batch=first,
                  threads=scale.threads_per_worker, dtype=dtype)
             for first, start, stop in batch_shards(len(prompts), cfg.batch_size, scale.workers)]
    parts = run_shards(generate_shard, calls, scale)
    responses = [resp for part in parts for resp in part[0]]
    # Seconds: the slowest shard's sampling time (they run side by side).
    return responses, sum(p[1] for p in parts), max((p[2] for p in parts), default=0.0)


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

    from tasks.genbackend import BACKENDS
    from tasks.policy import resolve
    from tasks.prompting import format_prompt
    from tasks.rollout import context_of, room_for

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


def run_generate(params: Params) -> dict:
    import sys

    import mlflow

    from tasks import tracking
    from tasks.genbackend import resolve_backend

    cfg = params.generate
    champion = Path(params.policy.champion_dir)
    with tracking.stage_run("generate", params):
        prompts = [r for r in read_jsonl(PROMPTS) if r["split"] == "train"]
        device = pick_device(cfg.device)
        check_model_folder(champion)            # a damaged champion stops before any sampling, naming the path
        version = policy_version(champion)
        texts = [prompt_of(r) for r in prompts]
        runner = params.scale.runner
        backend = resolve_backend(cfg.backend, runner, device)
        dtype = tracking.record_precision(params, device, sampling=True).dtype
        responses, n_tokens, seconds, truncated = generate_responses(str(champion), texts, cfg, device,
                                                                     params.scale, backend, dtype)
        if truncated:
            # The sampler cut them from the left: the end, where the request is, survives.
            print(f"generate: {truncated} of {len(texts)} prompts are longer than the policy's context leaves "
                  f"beside generate.max_new_tokens ({cfg.max_new_tokens}); cut from the left", file=sys.stderr,
                  flush=True)
        # The rows are written as they are made: no second list of every generation beside `responses`.
        counts = {"empty": 0, "chars": 0}
        sample: list[dict] = []

        def rows():
            for row, resp in zip(prompts, responses):
                for j, text in enumerate(resp):
                    out = {"prompt_id": row["id"], "response_id": f"{row['id']}-r{j}", "response": text,
                           "policy_version": version, "seed": cfg.seed}
                    counts["empty"] += not text
                    counts["chars"] += len(text)
                    if len(sample) < cfg.sample_table_rows:
                        sample.append(out)
                    yield out

        n_rows = write_jsonl(OUT, rows())
        metrics = {"prompts": len(prompts), "generations": n_rows, "generated_tokens": n_tokens,
                   "tokens_per_second": n_tokens / max(seconds, 1e-9), "truncated_prompts": truncated,
                   "empty_responses": counts["empty"], "mean_response_chars": counts["chars"] / max(1, n_rows)}
        mlflow.log_metrics(metrics)
        if sample:
            by_id = {r["id"]: str(prompt_of(r)) for r in prompts}
            mlflow.log_table({"prompt": [by_id[r["prompt_id"]] for r in sample],
                              "response": [r["response"] for r in sample],
                              "response_id": [r["response_id"] for r in sample]},
                             artifact_file="sample_generations.json")
        mlflow.set_tags({"policy_version": version, "generate.runner": runner if backend == "transformers" else "local",
                         "generate.backend": backend})
    return metrics

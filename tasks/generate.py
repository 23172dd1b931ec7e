"""Stage ``generate``: k responses per training prompt from the champion, in batches.

Prompts are left-padded into batches of ``generate.batch_size``; each batch
asks ``model.generate`` for ``k`` samples per prompt at once
(``num_return_sequences=k``), so there is never a per-prompt loop. The sampler
is seeded per batch from ``generate.seed``, which makes a run reproducible for
a given batch size and device. Throughput is logged as generated tokens per
second (tokens up to and including EOS).
"""

from __future__ import annotations

import time
from pathlib import Path

from tasks.config import GenerateConfig, Params
from tasks.io import read_jsonl, write_jsonl
from tasks.policy import format_prompt, load_policy, pick_device, read_meta

PROMPTS = Path("data/prompts.jsonl")
OUT = Path("data/generations.jsonl")


def policy_version(model_dir: str | Path) -> str:
    meta = read_meta(model_dir)
    if "registry_version" in meta:
        return f"{meta.get('registry_name', 'policy')}/{meta['registry_version']}"
    return "unregistered"


def sample_responses(model, tok, prompts: list[str], cfg: GenerateConfig, device: str,
                     k: int | None = None, progress: bool = True) -> tuple[list[list[str]], int, float]:
    """Sample ``k`` responses for each prompt in batches.

    Returns (responses per prompt, generated tokens, seconds). A generated
    sequence counts its tokens up to and including its first EOS.
    """
    import torch
    from tqdm.auto import tqdm

    k = k or cfg.k
    out: list[list[str]] = []
    n_tokens, seconds = 0, 0.0
    starts = range(0, len(prompts), cfg.batch_size)
    for b, start in enumerate(tqdm(starts, desc="generate", unit="batch", disable=not progress, leave=False)):
        texts = [format_prompt(p) for p in prompts[start:start + cfg.batch_size]]
        enc = tok(texts, return_tensors="pt", padding=True).to(device)
        torch.manual_seed(cfg.seed * 100_003 + b)
        t0 = time.perf_counter()
        with torch.no_grad():
            seqs = model.generate(
                **enc, do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k or None,
                top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, num_return_sequences=k,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        seconds += time.perf_counter() - t0
        new = seqs[:, enc["input_ids"].shape[1]:]
        is_eos = new == tok.eos_token_id
        # Length up to and including the first EOS; the whole row where no EOS was sampled.
        first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(is_eos[:, 0], new.shape[1], dtype=torch.long))
        n_tokens += int(first_eos.sum())
        decoded = tok.batch_decode(new, skip_special_tokens=True)
        for i in range(len(texts)):
            out.append([d.strip() for d in decoded[i * k:(i + 1) * k]])
    return out, n_tokens, seconds


def run_generate(params: Params) -> dict:
    import mlflow

    from tasks import tracking

    cfg = params.generate
    champion = Path(params.policy.champion_dir)
    with tracking.stage_run("generate", params.tracking, sections={"generate": cfg},
                            inputs=[PROMPTS, champion]):
        prompts = [r for r in read_jsonl(PROMPTS) if r["split"] == "train"]
        device = pick_device(cfg.device)
        model, tok = load_policy(champion, device)
        version = policy_version(champion)
        responses, n_tokens, seconds = sample_responses(model, tok, [r["prompt"] for r in prompts], cfg, device)
        rows = []
        for row, resp in zip(prompts, responses):
            for j, text in enumerate(resp):
                rows.append({"prompt_id": row["id"], "response_id": f"{row['id']}-r{j}", "response": text,
                             "policy_version": version, "seed": cfg.seed})
        write_jsonl(OUT, rows)
        metrics = {"prompts": len(prompts), "generations": len(rows), "generated_tokens": n_tokens,
                   "tokens_per_second": n_tokens / max(seconds, 1e-9),
                   "empty_responses": sum(not r["response"] for r in rows),
                   "mean_response_chars": sum(len(r["response"]) for r in rows) / max(1, len(rows))}
        mlflow.log_metrics(metrics)
        if cfg.sample_table_rows:
            by_id = {r["id"]: r["prompt"] for r in prompts}
            sample = rows[:cfg.sample_table_rows]
            mlflow.log_table({"prompt": [by_id[r["prompt_id"]] for r in sample],
                              "response": [r["response"] for r in sample],
                              "response_id": [r["response_id"] for r in sample]},
                             artifact_file="sample_generations.json")
        mlflow.set_tag("policy_version", version)
    return metrics

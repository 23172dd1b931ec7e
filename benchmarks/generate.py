"""Throughput of the generate stage vs a per-sample loop and a hand-tuned batched path, same model and prompts.

    python benchmarks/generate.py [--model models/champion] [--prompts 128] [--k 4]

Three ways to sample ``k`` responses for each prompt, with the sampling settings of ``params.yaml``:

- **per-sample loop**: one ``model.generate`` call per prompt per sample (the seed's way);
- **hand-tuned**: written here, not the stage's code: prompts sorted by token length so a batch wastes little
  padding, ``k`` samples per prompt in one call (``num_return_sequences``), under ``torch.inference_mode``,
  at the batch size that was fastest among ``--batch-sizes`` on a first pass over the prompts;
- **the stage**: ``tasks.genbackend.generate_responses``, what ``rft stage generate`` runs, at
  ``generate.batch_size``.

Tokens are counted the same way on every side: the generated tokens of each sequence up to and including its
first EOS. Each side is warmed up once, then timed in the same run; the ratios are printed last.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.runtime import setup_process  # noqa: E402

setup_process()                 # an entry point: offline, no telemetry, threads, before torch loads
from tasks.io import read_jsonl  # noqa: E402
from tasks.manifest import load_params  # noqa: E402
from tasks.policy import load_policy  # noqa: E402


def counted(new, eos: int) -> int:
    """Generated tokens up to and including the first EOS of each row of ``new`` (all of a row without one)."""
    import torch

    is_eos = new == eos
    ended = is_eos.any(1)
    first = torch.where(ended, is_eos.float().argmax(1) + 1, torch.full_like(ended, new.shape[1], dtype=torch.long))
    return int(first.sum())


def per_sample_loop(model, tok, texts, cfg, k) -> int:
    import torch

    tokens = 0
    for i, text in enumerate(texts):
        enc = tok([text], return_tensors="pt", add_special_tokens=False)
        for j in range(k):
            torch.manual_seed(cfg.seed * 100_003 + i * k + j)
            with torch.no_grad():
                seq = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k or None,
                                     top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            tokens += counted(seq[:, enc["input_ids"].shape[1]:], tok.eos_token_id)
    return tokens


def hand_tuned(model, tok, texts, cfg, k, batch_size) -> int:
    import torch

    lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    tokens = 0
    with torch.inference_mode():
        for b, start in enumerate(range(0, len(texts), batch_size)):
            batch = [texts[i] for i in order[start:start + batch_size]]
            enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            torch.manual_seed(cfg.seed * 100_003 + b)
            seq = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k or None,
                                 top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, num_return_sequences=k,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            tokens += counted(seq[:, enc["input_ids"].shape[1]:], tok.eos_token_id)
    return tokens


def timed(fn, *args):
    t0 = time.perf_counter()
    tokens = fn(*args)
    return tokens, time.perf_counter() - t0


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cpu import describe as cpu_line  # noqa: E402  (the CPU and its bf16 flags, printed first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/champion")
    ap.add_argument("--prompts", type=int, default=128, help="how many training prompts to use")
    ap.add_argument("--k", type=int, default=None, help="responses per prompt (default: generate.k)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128],
                    help="prompts per call that the hand-tuned path tries")
    ap.add_argument("--sort-by-length", action="store_true", help="run the stage with generate.sort_by_length")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    print(cpu_line(), flush=True)          # the CPU and its bf16 flags (benchmarks/cpu.py)

    import dataclasses

    from tasks.genbackend import generate_responses
    from tasks.prompting import format_prompt

    params = load_params(args.params)
    k = args.k or params.generate.k
    cfg = dataclasses.replace(params.generate, k=k, sort_by_length=args.sort_by_length or params.generate.sort_by_length)
    if not Path(args.model).exists():
        sys.exit(f"{args.model} not found: run `make cycle` (or `dvc repro champion`) first")
    rows = [r for r in read_jsonl("data/prompts.jsonl") if r["split"] == "train"][:args.prompts]
    prompts = [r.get("prompt", r.get("messages")) for r in rows]
    model, tok = load_policy(args.model)
    texts = [format_prompt(p, tok) for p in prompts]

    def stage():
        return generate_responses(args.model, prompts, cfg, "cpu", params.scale)[1]

    # Warm-up: one small call on each path.
    per_sample_loop(model, tok, texts[:1], cfg, 1)
    hand_tuned(model, tok, texts[:8], cfg, k, 8)
    generate_responses(args.model, prompts[:8], cfg, "cpu", params.scale)

    tried = {}
    for bs in args.batch_sizes:
        tried[bs] = (lambda t, s: t / s)(*timed(hand_tuned, model, tok, texts, cfg, k, bs))
        print(f"hand-tuned, first pass: batch_size={bs}: {tried[bs]:.0f} tokens/s", flush=True)
    best = max(tried, key=tried.get)

    results = {}
    results["stage"] = timed(stage)
    results["hand-tuned"] = timed(hand_tuned, model, tok, texts, cfg, k, best)
    results["per-sample loop"] = timed(per_sample_loop, model, tok, texts, cfg, k)
    print(f"prompts={len(texts)} k={k} max_new_tokens={cfg.max_new_tokens} stage batch_size={cfg.batch_size} "
          f"sort_by_length={cfg.sort_by_length} "
          f"hand-tuned batch_size={best} threads={__import__('torch').get_num_threads()}")
    tps = {}
    for name, (tokens, seconds) in results.items():
        tps[name] = tokens / seconds
        print(f"{name}: {tokens} tokens in {seconds:.2f}s = {tps[name]:.0f} tokens/s")
    print(f"stage/hand-tuned={tps['stage'] / tps['hand-tuned']:.3f} "
          f"stage/per-sample={tps['stage'] / tps['per-sample loop']:.2f}")


if __name__ == "__main__":
    main()

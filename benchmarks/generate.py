"""Throughput of the generate stage vs a plain per-prompt ``generate`` loop, same model, same prompts.

    python benchmarks/generate.py [--model models/champion] [--prompts 128] [--k 4]

Both sides sample ``k`` responses per prompt with the same sampling settings
from ``params.yaml``. The stage's path (``tasks.generate.sample_responses``)
left-pads ``generate.batch_size`` prompts into one call; the baseline calls
``model.generate`` once per prompt (still k samples per call). Tokens are
counted the same way on both sides (up to and including EOS). Both are timed in
one run, after one warm-up call each, and the ratio is printed last.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tasks  # noqa: E402,F401
from tasks.config import load_params  # noqa: E402
from tasks.generate import sample_responses  # noqa: E402
from tasks.io import read_jsonl  # noqa: E402
from tasks.policy import load_policy  # noqa: E402


def per_prompt_loop(model, tok, prompts, cfg, k):
    import dataclasses

    one = dataclasses.replace(cfg, batch_size=1)
    return sample_responses(model, tok, prompts, one, "cpu", k=k, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/champion")
    ap.add_argument("--prompts", type=int, default=128, help="how many training prompts to use")
    ap.add_argument("--k", type=int, default=None, help="responses per prompt (default: generate.k)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()

    params = load_params(args.params)
    cfg = params.generate
    k = args.k or cfg.k
    if not Path(args.model).exists():
        sys.exit(f"{args.model} not found: run `make cycle` (or `dvc repro champion`) first")
    rows = [r for r in read_jsonl("data/prompts.jsonl") if r["split"] == "train"][:args.prompts]
    prompts = [r["prompt"] for r in rows]
    model, tok = load_policy(args.model)

    sample_responses(model, tok, prompts[:4], cfg, "cpu", k=k, progress=False)       # warm-up
    t0 = time.perf_counter()
    _, tok_batched, _ = sample_responses(model, tok, prompts, cfg, "cpu", k=k, progress=False)
    batched_s = time.perf_counter() - t0

    per_prompt_loop(model, tok, prompts[:2], cfg, k)                                  # warm-up
    t0 = time.perf_counter()
    _, tok_loop, _ = per_prompt_loop(model, tok, prompts, cfg, k)
    loop_s = time.perf_counter() - t0

    batched_tps, loop_tps = tok_batched / batched_s, tok_loop / loop_s
    print(f"prompts={len(prompts)} k={k} batch_size={cfg.batch_size} max_new_tokens={cfg.max_new_tokens}")
    print(f"stage (batched): {tok_batched} tokens in {batched_s:.2f}s = {batched_tps:.0f} tokens/s")
    print(f"per-prompt loop: {tok_loop} tokens in {loop_s:.2f}s = {loop_tps:.0f} tokens/s")
    print(f"speedup={batched_tps / loop_tps:.2f}")


if __name__ == "__main__":
    main()

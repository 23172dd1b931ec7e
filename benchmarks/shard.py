"""Generation on 2 Dask workers (scale.runner: dask) against one process, same model, prompts and seeds.

    python benchmarks/shard.py [--model models/champion] [--prompts 384] [--workers 2]

Both sides run the generate stage's sampling of ``generate.k`` responses per
prompt: in this process with torch's default threads (``scale.runner: local``),
and through ``tasks.shard.run_shards`` on a local cluster of ``--workers``
processes with one torch thread each. The Dask side is timed end to end (the
cluster's start, each worker loading the model, sampling), and once more
without the cluster's start-up. Both are timed in one run; the outputs must be
identical, and the ratios are printed last.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tasks  # noqa: E402,F401
from tasks.config import ScaleConfig, load_params  # noqa: E402
from tasks.generate import generate_sharded, sample_responses  # noqa: E402
from tasks.io import read_jsonl  # noqa: E402
from tasks.policy import load_policy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/champion")
    ap.add_argument("--prompts", type=int, default=384, help="how many training prompts to use")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()

    params = load_params(args.params)
    cfg = params.generate
    if not Path(args.model).exists():
        sys.exit(f"{args.model} not found: run `make cycle` (or `dvc repro champion prepare`) first")
    rows = [r for r in read_jsonl("data/prompts.jsonl") if r["split"] == "train"][:args.prompts]
    prompts = [r["prompt"] for r in rows]

    t0 = time.perf_counter()
    model, tok = load_policy(args.model, "cpu")
    local, tokens, local_sampling = sample_responses(model, tok, prompts, cfg, "cpu", progress=False)
    t_local = time.perf_counter() - t0

    scale = dataclasses.replace(ScaleConfig(), runner="dask", workers=args.workers)
    t0 = time.perf_counter()
    sharded, tokens_d, sampling = generate_sharded(args.model, prompts, cfg, "cpu", scale)
    t_dask = time.perf_counter() - t0
    assert sharded == local, "the sharded run sampled something else"

    print(f"prompts: {len(prompts)} x k={cfg.k}, batch_size {cfg.batch_size}, {tokens} tokens")
    print(f"one process ({__import__('torch').get_num_threads()} torch threads): {t_local:.1f} s end to end; "
          f"sampled {local_sampling:.1f} s")
    print(f"dask, {args.workers} workers x 1 thread: {t_dask:.1f} s end to end; slowest shard sampled {sampling:.1f} s")
    print(f"speed-up end to end: {t_local / t_dask:.2f}x; sampling only: {local_sampling / sampling:.2f}x; "
          f"outputs identical")


if __name__ == "__main__":
    main()

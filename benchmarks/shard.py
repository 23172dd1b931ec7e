"""Generation and AI judging on 2 Dask or Ray workers (scale.runner) against one process, same model and seeds.

    python benchmarks/shard.py [--model models/champion] [--prompts 384] [--workers 2] [--runners dask ray]

Generation: the generate stage's sampling of ``generate.k`` responses per
prompt, in this process with torch's default threads (``scale.runner: local``),
and through ``tasks.workers.run_shards`` on a local cluster of ``--workers``
processes with one torch thread each. Judging: ``label.judge`` scoring every
response, in this process and through ``ShardedJudge`` on the same runner.
The sharded sides are timed end to end (the cluster's start, each worker
loading the model, the work); sampling is also timed alone. Everything runs
in one process, one side after the other; outputs must be identical, and the
ratios are printed last.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.runtime import setup_process  # noqa: E402

setup_process()                 # an entry point: offline, no telemetry, threads, before torch loads
from tasks.config import ScaleConfig  # noqa: E402
from tasks.generate import generate_sharded, sample_responses  # noqa: E402
from tasks.io import read_jsonl  # noqa: E402
from tasks.judges import JudgeContext, build_judge  # noqa: E402
from tasks.manifest import load_params  # noqa: E402
from tasks.policy import load_policy  # noqa: E402
from tasks.workers import cluster  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cpu import describe as cpu_line  # noqa: E402  (the CPU and its bf16 flags, printed first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/champion")
    ap.add_argument("--prompts", type=int, default=384, help="how many training prompts to use")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--runners", nargs="+", default=["dask", "ray"], choices=["dask", "ray"])
    args = ap.parse_args()
    print(cpu_line(), flush=True)          # the CPU and its bf16 flags (benchmarks/cpu.py)

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
    flat_p = [p for p, resp in zip(prompts, local) for _ in resp]
    flat_r = [r for resp in local for r in resp]
    name = params.label.judge
    t0 = time.perf_counter()
    scores = build_judge(name, JudgeContext.of(params)).score(flat_p, flat_r)
    t_judge = time.perf_counter() - t0
    print(f"prompts: {len(prompts)} x k={cfg.k}, batch_size {cfg.batch_size}, {tokens} tokens; judge {name} "
          f"scores {len(flat_r)} responses")
    print(f"one process ({__import__('torch').get_num_threads()} torch threads): generation {t_local:.1f} s end to "
          f"end, sampled {local_sampling:.1f} s; judging {t_judge:.1f} s")
    for runner in args.runners:
        scale = dataclasses.replace(ScaleConfig(), runner=runner, workers=args.workers)
        t0 = time.perf_counter()
        sharded, _, sampling = generate_sharded(args.model, prompts, cfg, "cpu", scale)
        t_gen = time.perf_counter() - t0
        assert sharded == local, f"{runner}: the sharded run sampled something else"
        t0 = time.perf_counter()
        with cluster(scale) as live:
            judged = build_judge(name, JudgeContext.of(params, scale=live)).score(flat_p, flat_r)
        t_sharded_judge = time.perf_counter() - t0
        assert judged == scores, f"{runner}: the sharded judge scored something else"
        print(f"{runner}, {args.workers} workers x 1 thread: generation {t_gen:.1f} s end to end "
              f"({t_local / t_gen:.2f}x), slowest shard sampled {sampling:.1f} s ({local_sampling / sampling:.2f}x); "
              f"judging {t_sharded_judge:.1f} s ({t_judge / t_sharded_judge:.2f}x); outputs identical")


if __name__ == "__main__":
    main()

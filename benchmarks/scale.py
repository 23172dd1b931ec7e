"""Time and peak memory of validate, generate and label at 1x and 16x the prompts, and 100k prompts through
generate and label.

    python benchmarks/scale.py [--factor 16] [--big 100000]     (in a project after `dvc repro champion prepare`)
    python benchmarks/scale.py --factor 1                        (1x and the big run only)

Each size runs in its own scratch folder beside a copy of ``params.yaml`` (its own MLflow store), with links
to the project's ``models/``, ``tasks/`` and ``data/corpus``. Its prompts are the project's prompts repeated,
each copy with a new id and a numbered suffix, so every text is distinct and the split is kept. The stages
run as ``rft stage NAME`` would, one process each, in the order a cycle runs them: ``validate_prompts``,
``generate``, ``label``, ``validate_labels``. A process's peak resident memory comes from ``wait4``.

The 1x and Nx runs use ``params.yaml``'s settings. The big run keeps them but for ``generate.k: 2`` and
``generate.max_new_tokens: 2`` (the stages' bookkeeping, not the sampling, is what it measures); it runs
generate and label only, with every prompt in the train split (the split generate samples). The ratios are
printed last: time and peak memory at Nx over 1x (targets: time <= 17x for 16x, peak memory <= 1.2x), and
the big run's peak memory over 1x's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("validate_prompts", "generate", "label", "validate_labels")


def synthetic(prompts: list[dict], n: int, split: str | None = None) -> list[dict]:
    """``n`` prompts: the project's, over and over, each copy numbered (a distinct text and id); ``split``: put
    them all in that split."""
    out = []
    for i in range(n):
        row = dict(prompts[i % len(prompts)], **({"split": split} if split else {}))
        copy = i // len(prompts)
        row["id"] = f"s{i:07d}"
        if copy:
            row["prompt"] = f"{row['prompt']} ({copy})"
        out.append(row)
    return out


def scratch(project: Path, params: dict, prompts: list[dict], where: Path) -> Path:
    where.mkdir(parents=True)
    for name in ("models", "tasks", "rubrics"):
        if (project / name).exists():
            (where / name).symlink_to((project / name).resolve())
    (where / "data" / "incoming").mkdir(parents=True)
    (where / "data" / "corpus").symlink_to((project / "data" / "corpus").resolve())
    with (where / "data" / "prompts.jsonl").open("w") as fh:
        for row in prompts:
            fh.write(json.dumps(row) + "\n")
    params = {**params, "tracking": {**params["tracking"], "uri": f"sqlite:///{where}/mlruns.db",
                                     "artifact_location": str(where / "mlartifacts")}}
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return where


def run_stage(where: Path, stage: str) -> tuple[float, int]:
    """Run one stage in its own process; return (seconds, peak RSS in MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tasks.cli", "stage", stage], cwd=where,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{stage} failed in {where}:\n{out[-3000:]}")
    return seconds, usage.ru_maxrss // 1024


def measure(label: str, where: Path, stages) -> dict:
    result = {"seconds": 0.0, "peak_mib": 0, "stages": {}}
    for stage in stages:
        seconds, mib = run_stage(where, stage)
        result["stages"][stage] = (seconds, mib)
        result["seconds"] += seconds
        result["peak_mib"] = max(result["peak_mib"], mib)
        print(f"{label}: {stage} {seconds:.1f} s, peak {mib} MiB", flush=True)
    return result


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cpu import describe as cpu_line  # noqa: E402  (the CPU and its bf16 flags, printed first)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--factor", type=int, default=16)
    ap.add_argument("--big", type=int, default=100_000, help="prompts of the big run (0: skip it)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    a = ap.parse_args()
    print(cpu_line(), flush=True)          # the CPU and its bf16 flags (benchmarks/cpu.py)

    project = Path.cwd()
    params = yaml.safe_load(Path(a.params).read_text())
    base = [json.loads(line) for line in (project / "data" / "prompts.jsonl").open() if line.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        runs = {}
        for factor in sorted({1, a.factor}):
            prompts = synthetic(base, len(base) * factor)
            where = scratch(project, params, prompts, tmp / f"x{factor}")
            runs[factor] = measure(f"{factor}x ({len(prompts)} prompts)", where, STAGES)
        big = None
        if a.big:
            small = {**params, "generate": {**params["generate"], "k": 2, "max_new_tokens": 2}}
            where = scratch(project, small, synthetic(base, a.big, "train"), tmp / "big")
            big = measure(f"{a.big} prompts, k=2, 2 new tokens", where, ("generate", "label"))
            lines = sum(1 for _ in (where / "data" / "generations.jsonl").open())
            print(f"big: {lines} generations written, {(where / 'data' / 'labels.jsonl').stat().st_size >> 20} MiB "
                  "of labels", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    one, many = runs[1], runs[a.factor]
    for stage in STAGES if a.factor > 1 else ():
        (s1, m1), (sn, mn) = one["stages"][stage], many["stages"][stage]
        print(f"{stage}: {s1:.1f} s -> {sn:.1f} s ({sn / s1:.2f}x), peak {m1} -> {mn} MiB ({mn / m1:.2f}x)")
    if a.factor > 1:
        print(f"time_{a.factor}x_over_1x={many['seconds'] / one['seconds']:.2f}")
        print(f"peak_rss_{a.factor}x_over_1x={many['peak_mib'] / one['peak_mib']:.3f}")
    if big:
        print(f"peak_rss_{a.big}_prompts_over_1x={big['peak_mib'] / one['peak_mib']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

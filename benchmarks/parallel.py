"""Two default cycles at once on this machine against one alone: no CPU oversubscription.

    python benchmarks/parallel.py [--workdir DIR]

Makes three fresh working copies (``benchmarks/cycle.py``'s ``make_workdir``)
and runs ``rft cycle`` from scratch in them: first one alone, with every core
(``RFT_THREADS`` unset: the stage sizes torch's pool to the cores it may use),
then two side by side, each with ``RFT_THREADS`` = cores / 2, as
docs/operations.md says to run several cycles. The goal: the pair finishes
within 2.3x the time of the one. All in one run; the ratio is printed last.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cycle import make_workdir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.threads import usable_cores  # noqa: E402


def start(work: Path, threads: int | None) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("RFT_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["RFT_THREADS"] = str(threads)
    log = (work / "cycle.log").open("w")
    return subprocess.Popen([str(Path(sys.executable).with_name("rft")), "cycle"], cwd=work, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def wait(procs: list[subprocess.Popen], works: list[Path]) -> None:
    for p, w in zip(procs, works):
        if p.wait() != 0:
            sys.exit(f"rft cycle failed in {w}: see {w / 'cycle.log'}")


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cpu import describe as cpu_line  # noqa: E402  (the CPU and its bf16 flags, printed first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    print(cpu_line(), flush=True)          # the CPU and its bf16 flags (benchmarks/cpu.py)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="rft-parallel-"))
    alone, a, b = (make_workdir(root / name) for name in ("alone", "a", "b"))
    cores = usable_cores()
    share = max(1, cores // 2)
    print(f"workdir: {root}; {cores} usable cores")

    t0 = time.perf_counter()
    wait([start(alone, None)], [alone])
    t_one = time.perf_counter() - t0
    print(f"one cycle, {cores} threads: {t_one:.1f} s")

    t0 = time.perf_counter()
    wait([start(a, share), start(b, share)], [a, b])
    t_two = time.perf_counter() - t0
    print(f"two cycles at once, RFT_THREADS={share} each: {t_two:.1f} s")
    print(f"two at once / one alone: {t_two / t_one:.2f}x (goal: at most 2.3x)")


if __name__ == "__main__":
    main()

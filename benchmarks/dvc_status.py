"""What DVC's YAML parsing costs a cycle: ``dvc status`` and ``dvc commit`` with ruamel.yaml's C parser vs without.

    python benchmarks/dvc_status.py [--repeat 5]     # in a project after a cycle (every stage in dvc.lock)

A cycle asks ``dvc status`` once over the graph, again per stage once an upstream stage ran, and commits each
stage it runs; each call parses ``params.yaml``, ``dvc.yaml`` and ``dvc.lock``. ruamel.yaml parses with its C
extension (``ruamel.yaml.clib``, a dependency of this project) when it is importable and in pure Python
otherwise. Both are timed in one process, alternating, on the same files; the ratios are printed last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cpu import describe as cpu_line  # noqa: E402  (the CPU and its bf16 flags, printed first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--stage", default="prepare", help="the stage to commit (unchanged: DVC rewrites its record)")
    args = ap.parse_args()
    print(cpu_line(), flush=True)          # the CPU and its bf16 flags (benchmarks/cpu.py)

    import ruamel.yaml.main as ruamel_main
    from dvc.repo import Repo

    c_parser = ruamel_main.CParser
    if c_parser is None:
        raise SystemExit("ruamel.yaml.clib is not installed: pip install ruamel.yaml.clib")
    repo = Repo(".")
    results: dict[str, dict[str, list[float]]] = {"C": {}, "pure Python": {}}
    for _ in range(args.repeat):
        for name, parser in (("C", c_parser), ("pure Python", None)):
            ruamel_main.CParser = parser
            runs = results[name]
            runs.setdefault("status, whole graph", []).append(timed(repo.status))
            runs.setdefault(f"status, {args.stage}", []).append(timed(lambda: repo.status(targets=[args.stage])))
            runs.setdefault(f"commit, {args.stage}", []).append(
                timed(lambda: repo.commit(args.stage, force=True)))
    ruamel_main.CParser = c_parser
    medians = {name: {k: statistics.median(v) for k, v in runs.items()} for name, runs in results.items()}
    for what in medians["C"]:
        print(f"{what}: C {medians['C'][what]:.3f}s, pure Python {medians['pure Python'][what]:.3f}s "
              f"(median of {args.repeat})")
    print(" ".join(f"{what.replace(', ', '_').replace(' ', '_')}={medians['pure Python'][what] / medians['C'][what]:.2f}x"
                   for what in medians["C"]))


if __name__ == "__main__":
    main()

"""Wall time of whole default cycles, per stage, the share spent outside the stages' own work, and a no-op cycle.

    python benchmarks/cycle.py [--cycles 2] [--workdir DIR]

Copies the project's code and params.yaml into a fresh git + DVC working copy,
runs ``rft cycle`` there ``--cycles`` times as a user would (a new process each
time: Prefect's ephemeral server, imports, MLflow, DVC), and reads each cycle's
per-stage times from its MLflow parent run. "Outside" is the process's wall
time minus the time spent inside the stage functions: interpreter start and
imports, Prefect, DVC status/commit, and the promotion step.

Then it runs ``rft cycle`` again until one finds nothing to do (no stale stage,
no candidate to decide; after a promotion the next cycle has work), and prints
that no-op cycle's wall time as a share of the first (cold) cycle's. Each
cycle's output is kept in ``<workdir>/cycle-<n>.log``. The ratios are printed last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_workdir(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tasks", "flows", "metrics", "data/incoming"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=dest, check=True)
    shutil.copy(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    shutil.copy(ROOT / ".dvcignore", dest / ".dvcignore")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = make_workdir(args.workdir or Path(tempfile.mkdtemp(prefix="rft-bench-")) / "proj")
    rft = str(Path(sys.executable).with_name("rft"))
    env_path = f"{Path(sys.executable).parent}:{__import__('os').environ.get('PATH', '')}"
    import mlflow
    from mlflow import MlflowClient

    print(f"workdir: {work}")

    def cycle(n):
        t0 = time.perf_counter()
        out = subprocess.run([rft, "cycle"], cwd=work, capture_output=True, text=True,
                             env={**__import__("os").environ, "PATH": env_path})
        (work / f"cycle-{n}.log").write_text(out.stdout + out.stderr)
        return out, time.perf_counter() - t0

    shares, walls = [], []
    for i in range(1, args.cycles + 1):
        out, wall = cycle(i)
        walls.append(wall)
        if out.returncode != 0:
            print(out.stdout[-3000:], out.stderr[-3000:])
            return 1
        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlruns.db'}")
        client = MlflowClient()
        exp = client.get_experiment_by_name("rft-cycle")
        parent = client.search_runs([exp.experiment_id], "tags.`rft.kind` = 'cycle'",
                                    order_by=["start_time DESC"], max_results=1)[0]
        stages = {k[:-len(".seconds")]: v for k, v in parent.data.metrics.items() if k.endswith(".seconds")}
        inside = sum(v for k, v in stages.items() if k != "promote")
        metrics = json.loads((work / "reports/eval/metrics.json").read_text())
        print(f"\ncycle {i}: wall {wall:.1f}s, inside stages {inside:.1f}s, "
              f"outside {wall - inside:.1f}s ({(wall - inside) / wall:.1%})")
        for k, v in stages.items():
            print(f"  {k:<17}{v:8.1f}s")
        print(f"  winrate_truth={metrics['winrate_truth']:.3f} "
              f"[{metrics['winrate_truth_ci_low']:.3f}, {metrics['winrate_truth_ci_high']:.3f}] "
              f"winrate_embedding={metrics['winrate_embedding']:.3f} kl={metrics['kl']:.2f} "
              f"promoted={parent.data.tags.get('rft.promoted')}")
        print(f"  {parent.data.tags.get('rft.promotion_reason', '')}")
        shares.append((wall - inside) / wall)
    for n in range(args.cycles + 1, args.cycles + 3):
        out, noop = cycle(n)
        if "cycle: nothing to do" in out.stdout:
            break
        print(f"\ncycle {n}: had work ({noop:.1f}s), not a no-op; once more")
    else:
        print("no cycle came out a no-op")
        return 1
    print(f"\nno-op cycle {n}: wall {noop:.1f}s; {out.stdout.strip()[:300]}")
    print("outside the stages: " + ", ".join(f"cycle {i + 1} {v:.1%}" for i, v in enumerate(shares)) +
          f"; no-op cycle / cold cycle = {noop / walls[0]:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

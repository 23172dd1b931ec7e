"""Wall time of whole default cycles, per stage, and the share spent outside the stages' own work.

    python benchmarks/cycle.py [--cycles 2] [--workdir DIR]

Copies the project's code and params.yaml into a fresh git + DVC working copy,
runs ``rft cycle`` there ``--cycles`` times as a user would (a new process each
time: Prefect's ephemeral server, imports, MLflow, DVC), and reads each cycle's
per-stage times from its MLflow parent run. "Outside" is the process's wall
time minus the time spent inside the stage functions: interpreter start and
imports, Prefect, DVC status/commit, and the promotion step.
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
    for i in range(1, args.cycles + 1):
        t0 = time.perf_counter()
        out = subprocess.run([rft, "cycle"], cwd=work, capture_output=True, text=True,
                             env={**__import__("os").environ, "PATH": env_path})
        wall = time.perf_counter() - t0
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

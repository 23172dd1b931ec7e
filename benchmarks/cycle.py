"""Wall time of whole default cycles, per stage, the share spent outside the stages' own work, and a no-op cycle.

    python benchmarks/cycle.py [--cycles 2] [--workdir DIR] [--emulate] [--server]

``--emulate`` measures it all twice in one run: on this CPU as it is, then in a second fresh working copy with
torch capped at AVX2 (``benchmarks/cpu.py``: a CPU without native bf16, where ``train.precision: auto`` picks
fp32), and prints the emulated cold cycle's time over the native one (target: at most 1.5x). ``--server``
starts a Prefect server first (``prefect server start``, as ``infra/prefect.sh`` does, with its own
PREFECT_HOME) and runs the cycles against it (``PREFECT_API_URL``), as scheduled runs do; without it each cycle
starts Prefect's temporary server. The first line printed names the CPU and its bf16 flags.

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
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cpu import EMULATE_AVX2, describe  # noqa: E402


def make_workdir(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tasks", "flows", "metrics", "data/incoming"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=dest, check=True)
    shutil.copy(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    shutil.copy(ROOT / ".dvc" / "plots.html", dest / ".dvc" / "plots.html")     # the config names it
    shutil.copy(ROOT / ".dvcignore", dest / ".dvcignore")
    return dest


def measure(work: Path, cycles: int, env: dict) -> dict | None:
    """Run ``cycles`` cycles in ``work`` then no-op cycles until one has nothing to do; print each one's figures.
    Returns {"walls", "shares", "noop"} or None when a cycle failed."""
    import mlflow
    from mlflow import MlflowClient

    rft = str(Path(sys.executable).with_name("rft"))
    env = {**env, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    print(f"workdir: {work}", flush=True)

    def cycle(n):
        t0 = time.perf_counter()
        out = subprocess.run([rft, "cycle"], cwd=work, capture_output=True, text=True, env=env)
        (work / f"cycle-{n}.log").write_text(out.stdout + out.stderr)
        return out, time.perf_counter() - t0

    shares, walls = [], []
    for i in range(1, cycles + 1):
        out, wall = cycle(i)
        if out.returncode != 0:
            print(out.stdout[-3000:], out.stderr[-3000:])
            return None
        if "cycle: nothing to do" in out.stdout:
            # The first cycle's candidate was refused: nothing is stale, so no second cycle can run.
            print(f"\ncycle {i}: nothing to do ({wall:.1f}s): the last candidate was refused, so there is no "
                  f"cycle {i} to measure")
            break
        walls.append(wall)
        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlruns.db'}")
        client = MlflowClient()
        exp = client.get_experiment_by_name("rft-cycle")
        parent = client.search_runs([exp.experiment_id], "tags.`rft.kind` = 'cycle'",
                                    order_by=["start_time DESC"], max_results=1)[0]
        stages = {k[:-len(".seconds")]: v for k, v in parent.data.metrics.items() if k.endswith(".seconds")}
        inside = sum(v for k, v in stages.items() if k != "promote")
        metrics = json.loads((work / "reports/eval/metrics.json").read_text())
        precision = {r.data.tags.get("rft.stage"): r.data.tags.get("rft.precision")
                     for r in client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
                     if r.data.tags.get("rft.precision")}
        print(f"\ncycle {i}: wall {wall:.1f}s, inside stages {inside:.1f}s, "
              f"outside {wall - inside:.1f}s ({(wall - inside) / wall:.1%}); precision {precision}")
        for k, v in stages.items():
            print(f"  {k:<17}{v:8.1f}s")
        print(f"  winrate_truth={metrics['winrate_truth']:.3f} "
              f"[{metrics['winrate_truth_ci_low']:.3f}, {metrics['winrate_truth_ci_high']:.3f}] "
              f"winrate_embedding={metrics['winrate_embedding']:.3f} kl={metrics['kl']:.2f} "
              f"promoted={parent.data.tags.get('rft.promoted')}")
        print(f"  {parent.data.tags.get('rft.promotion_reason', '')}", flush=True)
        shares.append((wall - inside) / wall)
    for n in range(len(walls) + 1, len(walls) + 3):
        out, noop = cycle(n)
        if "cycle: nothing to do" in out.stdout:
            break
        print(f"\ncycle {n}: had work ({noop:.1f}s), not a no-op; once more")
    else:
        print("no cycle came out a no-op")
        return None
    print(f"\nno-op cycle {n}: wall {noop:.1f}s; {out.stdout.strip()[:300]}")
    print("outside the stages: " + ", ".join(f"cycle {i + 1} {v:.1%}" for i, v in enumerate(shares)) +
          f"; no-op cycle / cold cycle = {noop / walls[0]:.1%}", flush=True)
    return {"walls": walls, "shares": shares, "noop": noop}


@contextlib.contextmanager
def prefect_server(home: Path):
    """A Prefect server on a free loopback port with its own PREFECT_HOME, as infra/prefect.sh starts one; yields
    its API URL."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_API_URL": url}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=(home / "server.log").open("w"))
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"prefect server start exited with status {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        print(f"Prefect server: {url}", flush=True)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--emulate", action="store_true",
                    help="then again under the AVX2-only emulation (a CPU without native bf16), in a fresh copy")
    ap.add_argument("--server", action="store_true", help="run the cycles against a running Prefect server")
    args = ap.parse_args()
    print(describe(), flush=True)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="rft-bench-"))
    runs = [("native", {})] + ([("emulated AVX2", EMULATE_AVX2)] if args.emulate else [])
    results = {}
    with (prefect_server(root / "prefect-home") if args.server else contextlib.nullcontext()) as api:
        for name, extra in runs:
            env = {**os.environ, **extra}
            if api:
                env["PREFECT_API_URL"] = api
            if extra:
                print(f"\n== {name}: {' '.join(f'{k}={v}' for k, v in extra.items())}", flush=True)
            work = make_workdir(root / ("proj" if not extra else "proj-emulated"))
            results[name] = measure(work, args.cycles, env)
            if results[name] is None:
                return 1
    if args.emulate:
        nat, emu = results["native"], results["emulated AVX2"]
        ratios = ", ".join(f"cycle {i + 1} {e / n:.2f}x" for i, (n, e) in enumerate(zip(nat["walls"], emu["walls"])))
        print(f"\nemulated AVX2 / native wall time: {ratios} (target for the cold cycle 1: at most 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

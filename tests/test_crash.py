"""Crash safety: SIGKILL `rft cycle` inside train_reward, optimize and evaluate; each rerun picks up where the
last stopped, nothing half-written is taken as done, and the champion, its dvc.lock record and the registry's
aliases stay as they were until promotion. Then SIGKILL at each step boundary of the promotion: the next command
finishes it. A configured server that is down stops a cycle before any compute."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

import pytest
import yaml
from conftest import make_project
from servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]

# Stages to kill, each on an event inside its work, never after a fixed sleep (which a fast machine outruns and a
# slow one never reaches): the training stages once their run has logged a training step's metrics (train_loss,
# train/loss), evaluate once its MLflow run is open.
KILLS = (("train_reward", "train"), ("optimize", "train"), ("evaluate", None))
LONGER = {"reward": {"epochs": 3.0}, "optimize": {"grpo": {"max_steps": 8}},
          "evaluate": {"samples_per_prompt": 4, "max_new_tokens": 24},
          "promote": {"min_ci_low": 0.0, "max_kl": 1e9, "max_length_ratio": 1e9, "alarm_judge": None,
                      "min_distinct_ratio": None, "git_commit": True}}


def _stale(path) -> set:
    out = subprocess.run(["dvc", "status", "--json"], cwd=path, capture_output=True, text=True)
    return set(json.loads(out.stdout or "{}"))


def _lock(path) -> dict:
    lock = path / "dvc.lock"
    return yaml.safe_load(lock.read_text())["stages"] if lock.exists() else {}


def _champions(path) -> dict:
    """The ``champion`` alias of each registered model (``challenger`` moves with every new candidate)."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{path / 'mlruns.db'}")
    return {name: client.get_registered_model(name).aliases.get("champion") if client.search_registered_models(
        f"name = '{name}'") else None for name in ("policy", "reward-model")}


def _stage_run(path, stage: str, metric_prefix: str | None) -> bool:
    """Whether the MLflow run of ``stage`` is open (RUNNING) in the project's store and, with ``metric_prefix``,
    has logged a metric whose name starts with it."""
    import sqlite3

    query = ("SELECT 1 FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid WHERE tags.key = 'rft.stage' AND "
             "tags.value = ? AND runs.status = 'RUNNING'")
    args: tuple = (stage,)
    if metric_prefix:
        query += " AND EXISTS (SELECT 1 FROM metrics WHERE metrics.run_uuid = runs.run_uuid AND metrics.key LIKE ?)"
        args += (metric_prefix + "%",)
    try:
        with sqlite3.connect(path / "mlruns.db", timeout=5) as db:
            return bool(db.execute(query, args).fetchone())
    except sqlite3.OperationalError:            # the store is being created
        return False


def _stage_runs(path, stage: str) -> set[str]:
    """The ids of the MLflow runs of ``stage`` in the project's store."""
    import sqlite3

    query = "SELECT run_uuid FROM tags WHERE key = 'rft.stage' AND value = ?"
    with sqlite3.connect(path / "mlruns.db", timeout=5) as db:
        return {row[0] for row in db.execute(query, (stage,))}


def _kill_during(path, stage: str, metric_prefix: str | None) -> None:
    """SIGKILL a cycle inside ``stage``: once its MLflow run is open and, with ``metric_prefix``, has logged a
    training step's metrics. The output is drained all along, so a full pipe never holds the cycle up."""
    import threading

    proc = subprocess.Popen(["rft", "cycle"], cwd=path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen: list = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)
    reader.start()
    while not _stage_run(path, stage, metric_prefix):
        if proc.poll() is not None:
            reader.join(5)
            pytest.fail(f"the cycle ended before {stage} logged what the kill waits for:\n{''.join(seen[-40:])}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(5)


def test_sigkill_in_each_stage_then_rerun_finishes(tmp_path):
    from tasks.io import dvc_md5

    path = make_project(tmp_path / "proj", LONGER)
    snapshot, previous = None, None
    for stage, metric_prefix in KILLS:
        before = _lock(path).get(stage)
        _kill_during(path, stage, metric_prefix)
        # The killed stage is not recorded as done: its lock entry is what it was, and DVC sees it as stale.
        assert _lock(path).get(stage) == before
        stale = _stale(path)
        assert stage in stale
        if previous:                     # the stage killed last time ran to its end on this rerun
            assert previous not in stale and _lock(path).get(previous)
        previous = stage
        state = (dvc_md5(path / "models/champion"), _lock(path)["champion"]["outs"], _champions(path))
        snapshot = snapshot or state
        assert state == snapshot, f"the champion or the registry moved after a kill in {stage}"
    # The rerun finishes what was left, and the gate passes; it is killed just after the pending-promotion record
    # is written. Each next `rft cycle` finishes that promotion from the first step again, and is killed at the
    # next step boundary: every state a kill can leave is one a recovery starts from.
    from tasks.faults import KILL_ENV
    from tasks.promotion import STEPS

    loaded = hashlib.md5((path / "params.yaml").read_bytes()).hexdigest()
    log = _run_killed_at(path, ["rft", "cycle"], "promote:recorded", edit_params_during="evaluate")
    assert f"stage {previous}: running" in log and "stage optimize: running" not in log   # only what was left
    # The file changed while evaluate ran: the cycle says so before it records and promotes anything.
    assert "params.yaml changed during the cycle (md5 " + loaded in log
    assert (dvc_md5(path / "models/champion"), _lock(path)["champion"]["outs"], _champions(path)) == snapshot
    for step in STEPS:
        assert (path / ".dvc/tmp/rft-promotion.json").exists()
        _run_killed_at(path, ["rft", "cycle"], f"promote:{step}")
    # A kill after the swap leaves the champion folder ahead of dvc.lock and the alias; the next command finishes.
    assert (path / ".dvc/tmp/rft-promotion.json").exists()
    out = subprocess.run(["rft", "stage", "champion"], cwd=path, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != KILL_ENV})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "finished the promotion of policy v" in out.stdout
    assert not (path / ".dvc/tmp/rft-promotion.json").exists()
    _check_promoted(path)


def _run_killed_at(path, cmd: list[str], point: str, edit_params_during: str | None = None) -> str:
    """Run ``cmd`` in its own session with ``RFT_KILL_AT=point``; it must die there, by SIGKILL. Its output. With
    ``edit_params_during``, a line is added to params.yaml once that stage's run is open (a person editing it)."""
    before = _stage_runs(path, edit_params_during) if edit_params_during else set()
    proc = subprocess.Popen(cmd, cwd=path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "RFT_KILL_AT": point})
    if edit_params_during:                 # a run of that stage that this command opened
        while not _stage_runs(path, edit_params_during) - before and proc.poll() is None:
            time.sleep(0.02)
        with open(path / "params.yaml", "a") as fh:
            fh.write("# edited while the cycle ran\n")
    log, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL and f"RFT_KILL_AT={point}: killing" in log, log[-3000:]
    return log


def _check_promoted(path) -> None:
    """The champion folder, its dvc.lock record, policy@champion, the version's and the cycle run's tags, the
    iteration's commit and `rft history` all say the same promotion happened."""
    from mlflow import MlflowClient

    from tasks.io import dvc_md5
    from tasks.policy import read_meta
    from tasks.reward_model import meta as reward_meta

    version = str(read_meta(path / "models/champion")["registry_version"])
    assert version == str(read_meta(path / "models/candidate")["registry_version"]) != "1"
    assert _lock(path)["champion"]["outs"][0]["md5"] == dvc_md5(path / "models/champion")
    assert "champion" not in _stale(path)
    assert _champions(path) == {"policy": int(version),
                                "reward-model": int(reward_meta(path / "models/reward")["registry_version"])}
    client = MlflowClient(f"sqlite:///{path / 'mlruns.db'}")
    assert "promotion_reason" in client.get_model_version("policy", version).tags
    rows = [json.loads(line) for line in subprocess.run(["rft", "history", "--json"], cwd=path, capture_output=True,
                                                        text=True).stdout.splitlines()]
    last = rows[-1]
    assert (last["status"], last["promoted"], last["version"]) == ("recovered", "yes", version)
    run = client.get_run(last["run_id"])
    assert run.info.status == "KILLED" and run.data.tags["rft.champion_version"] == version
    assert run.data.tags["rft.champion_md5"] == dvc_md5(path / "models/champion")
    assert run.data.tags["rft.params_changed"].startswith("params.yaml changed during the cycle")
    assert run.data.tags["rft.params_md5"] != hashlib.md5((path / "params.yaml").read_bytes()).hexdigest()
    assert run.data.metrics["promoted"] == 1.0 and "finished the promotion" in run.data.tags["rft.recovered"]
    # The iteration's commit records this champion's dvc.lock, and the working tree's copy is that one.
    head = subprocess.run(["git", "log", "-1", "--format=%s"], cwd=path, capture_output=True, text=True).stdout
    assert head.strip() == f"rft iteration {last['iteration']}: promote policy v{version}"
    assert run.data.tags["rft.promotion_commit"] == subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()
    assert subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "dvc.lock"], cwd=path).returncode == 0



@pytest.mark.parametrize("server", ["mlflow", "prefect"])
def test_a_server_that_is_down_stops_the_cycle_before_any_compute(server, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ)
    overrides = {}
    if server == "mlflow":
        overrides = {"tracking": {"uri": url}}
    else:
        env["PREFECT_API_URL"] = f"{url}/api"
    path = make_project(tmp_path / "proj", overrides)
    start = time.monotonic()
    out = subprocess.run(["rft", "cycle"], cwd=path, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert url in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert time.monotonic() - start < 60
    assert not (path / "data/corpus").exists() and not (path / "dvc.lock").exists()

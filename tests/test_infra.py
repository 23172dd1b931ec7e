"""infra/: the servers start from their scripts and answer; the retrain flow deployed to the real Prefect server
runs a cycle through a real worker, logging to the real MLflow server, with no two runs at once, and a failed run
is reported by the server's automation; compose.yaml holds together."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conftest import ROOT, make_project
from servers import answers, free_port

pytestmark = [pytest.mark.slow, pytest.mark.servers, pytest.mark.filterwarnings("ignore")]


class Services:
    def __init__(self, data):
        self.data = data
        self.env = {**os.environ, "RFT_DATA_DIR": str(data), "MLFLOW_PORT": str(free_port()),
                    "PREFECT_PORT": str(free_port()), "LS_PORT": str(free_port()), "UP_TIMEOUT": "240",
                    # A run queued behind the deployment's concurrency limit asks again after 2 s, not 30.
                    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2"}
        self.env.pop("PREFECT_HOME", None)         # the scripts' own default: under the data folder
        self.mlflow = f"http://127.0.0.1:{self.env['MLFLOW_PORT']}"
        self.prefect_api = f"http://127.0.0.1:{self.env['PREFECT_PORT']}/api"

    def up_sh(self, *args, timeout=600):
        return subprocess.run(["bash", str(ROOT / "infra/up.sh"), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def api(self, path: str):
        with urllib.request.urlopen(f"{self.prefect_api}{path}", timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture(scope="module")
def services(module_tmp):
    s = Services(module_tmp("services"))
    out = s.up_sh()
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        yield s
    finally:
        s.up_sh("down")


def test_up_starts_each_server_under_one_data_folder(services):
    assert answers(f"{services.mlflow}/health") and answers(f"{services.prefect_api}/health")
    status = services.up_sh("status").stdout
    assert "mlflow: up" in status and "prefect: up" in status and "label-studio: down" in status
    assert (services.data / "mlruns.db").exists() and (services.data / ".prefect").is_dir()
    # The Prefect UI asks the server's own port for its data (not the default 4200).
    with urllib.request.urlopen(services.prefect_api.removesuffix("/api") + "/ui-settings", timeout=10) as r:
        assert json.loads(r.read())["api_url"] == services.prefect_api
    assert {p.name for p in (services.data / ".rft-services").glob("*.pid")} == \
        {"mlflow.pid", "prefect.pid", "prefect-worker.pid"}
    import mlflow

    mlflow.set_tracking_uri(services.mlflow)
    mlflow.set_experiment("infra-check")
    with mlflow.start_run() as run:
        mlflow.log_metric("x", 1.0)
    assert mlflow.get_run(run.info.run_id).data.metrics["x"] == 1.0


def _when(stamp: str):
    from datetime import datetime

    return datetime.fromisoformat(stamp)


def _final(services, run_id, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = services.api(f"/flow_runs/{run_id}")["state"]
        if state["type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
            return state
        time.sleep(2)
    pytest.fail(f"flow run {run_id} did not finish in {timeout} s")


class _Hook(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.server.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()


@pytest.fixture
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.posts = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_deployed_retrain_runs_a_cycle_on_the_real_servers_without_overlap(services, webhook, tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    (new / "extra.jsonl").write_text('{"id": "n1", "note": "this week\'s data"}\n')
    hook = f"http://127.0.0.1:{webhook.server_port}/hook"
    path = make_project(tmp_path / "proj", {"tracking": {"uri": services.mlflow},
                                            "retrain": {"source": "folder", "path": str(new), "cron": "0 3 * * 1",
                                                        "notify_webhook_env": "RFT_TEST_WEBHOOK"}})
    env = {**os.environ, "PREFECT_API_URL": services.prefect_api, "RFT_TEST_WEBHOOK": hook}
    out = subprocess.run(["rft", "deploy"], cwd=path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    deployment = services.api("/deployments/name/rft-retrain/scheduled")
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 3 * * 1"]
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert deployment["work_pool_name"] == "rft"

    ids = []
    for _ in range(2):   # the second is due while the first runs: overlap: skip cancels it
        out = subprocess.run(["prefect", "deployment", "run", "rft-retrain/scheduled"], cwd=path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        ids.append(re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1))
    states = {i: _final(services, i) for i in ids}
    assert sorted(s["type"] for s in states.values()) == ["CANCELLED", "COMPLETED"], states
    assert (path / "data/incoming/extra.jsonl").exists()
    # The run logged its iteration to the real MLflow server.
    out = subprocess.run(["rft", "history", "--json"], cwd=path, capture_output=True, text=True, timeout=120)
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["iteration"] == 1 and row["status"] == "ok" and row["promoted"] in ("yes", "no")
    assert not (path / "mlruns.db").exists()                   # nothing went to the embedded store
    assert webhook.posts == []                                 # neither a completed nor a cancelled run notifies

    # A run that fails: the server's automation sends the notice through the saved notification block.
    out = subprocess.run(["prefect", "deployment", "run", "rft-retrain/scheduled", "--param",
                          "params_path=missing.yaml"], cwd=path, env=env, capture_output=True, text=True, timeout=120)
    failed = re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1)
    assert _final(services, failed)["type"] == "FAILED"
    deadline = time.monotonic() + 120
    while not webhook.posts and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(3)                                              # room for a second notice, if one were coming
    (notice,) = webhook.posts
    assert notice["subject"] == "rft retrain failed" and failed in notice["body"] and "missing.yaml" in notice["body"]
    assert " ended Failed: " in notice["body"]

    # overlap: queue. Two runs back to back: the second waits for the first's slot instead of being cancelled.
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["retrain"]["overlap"] = "queue"
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = subprocess.run(["rft", "deploy"], cwd=path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert services.api("/deployments/name/rft-retrain/scheduled")["concurrency_options"]["collision_strategy"] \
        == "ENQUEUE"
    # Runs that fail after some seconds: new data from a URL where nothing listens, retried 2 + 4 + 8 s, long
    # enough that the second run is submitted (a `prefect` process start, slow on a loaded machine) while the
    # first still holds the slot.
    params["retrain"].update(source="url", path=f"http://127.0.0.1:{free_port()}", files=["x.jsonl"], backoff=2.0,
                             max_retries=3)
    (path / "slow-fail.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    queued = []
    for _ in range(2):
        out = subprocess.run(["prefect", "deployment", "run", "rft-retrain/scheduled", "--param",
                              "params_path=slow-fail.yaml"], cwd=path, env=env, capture_output=True, text=True,
                             timeout=120)
        queued.append(re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1))
    assert [_final(services, i)["type"] for i in queued] == ["FAILED", "FAILED"]     # both ran; none cancelled
    history = [[s["name"] for s in services.api(f"/flow_run_states/?flow_run_id={i}")] for i in queued]
    assert ["AwaitingConcurrencySlot" in h for h in history].count(True) == 1, history   # the later one waited
    runs = sorted((services.api(f"/flow_runs/{i}") for i in queued), key=lambda r: _when(r["start_time"]))
    assert _when(runs[1]["start_time"]) >= _when(runs[0]["end_time"])      # one at a time


def test_compose_file_holds_together():
    """`docker compose config` where the CLI has compose; else the same checks by hand on the YAML."""
    compose = ROOT / "infra/compose.yaml"
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        out = subprocess.run([docker, "compose", "-f", str(compose), "config", "--quiet"], capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stderr
    spec = yaml.safe_load(compose.read_text())
    services, volumes = spec["services"], set(spec.get("volumes", {}))
    assert {"postgres", "minio", "mlflow", "prefect", "worker", "label-studio"} <= set(services)
    for name, svc in services.items():
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", svc["image"]), f"{name}: pin an image tag"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} binds beyond loopback"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (compose.parent / src).exists(), f"{name}: {src} missing"
            else:
                assert src in volumes, f"{name}: volume {src} undeclared"
    assert "s3://mlflow" in services["mlflow"]["command"]
    # No fixed password to fall back on: every secret must be set (${VAR:?}), or compose refuses to start.
    text = compose.read_text()
    secrets = re.findall(r"\$\{(\w*(?:PASSWORD|SECRET|TOKEN|API_KEY)\w*)(:?[-?])", text)
    assert secrets and all(op == ":?" for _, op in secrets), secrets
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_API_KEY"} <= \
        {name for name, _ in secrets}
    studio = services["label-studio"]["environment"]
    assert studio["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"


def test_server_state_in_the_project_root_is_git_ignored(tmp_path):
    """infra/up.sh keeps the servers' databases, logs and pids under $RFT_DATA_DIR, the project root by default;
    none of it, nor the project lock, may end up in the iteration commit or a user's `git add -A`."""
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for name in (".prefect/prefect.db", ".rft-services/mlflow.pid", ".rft-services/mlflow.log",
                 ".label-studio/label_studio.sqlite3", ".rft.lock", "mlruns.db", "mlartifacts/1/model.bin"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["?? .gitignore"], out

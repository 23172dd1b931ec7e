"""infra/mlflow.sh starts a tracking server on loopback that the pipeline can log to."""

import os
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_server_script(tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_PORT": str(port), "MLFLOW_BACKEND_URI": f"sqlite:///{tmp_path}/m.db",
           "MLFLOW_ARTIFACTS": str(tmp_path / "art")}
    proc = subprocess.Popen(["bash", str(ROOT / "infra/mlflow.sh")], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("MLflow server did not answer /health within 60 s")
        import mlflow

        mlflow.set_tracking_uri(url)
        mlflow.set_experiment("infra-check")
        with mlflow.start_run() as run:
            mlflow.log_metric("x", 1.0)
        assert mlflow.get_run(run.info.run_id).data.metrics["x"] == 1.0
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)

"""Prefect retries only what is transient, and a retried stage never registers a second model version."""

import pytest

from flows.cycle import is_transient
from tasks.errors import ConfigError, DataError


@pytest.mark.parametrize("exc, transient", [
    (ConnectionResetError("peer reset"), True),        # a tracking server or remote dropped the connection
    (TimeoutError("slow disk"), True),
    (BlockingIOError("busy"), True),
    (FileNotFoundError("models/reward"), False),       # a missing file stays missing
    (IsADirectoryError("x"), False),
    (PermissionError("x"), False),
    (DataError("data/prompts.jsonl", "unique ids"), False),
    (ConfigError("generate.k: must be >= 2"), False),
    (ValueError("a bug"), False),
    # What transformers raises for a model folder without weights: a plain OSError, as permanent as the folder.
    (OSError("Error no file named model.safetensors found in directory models/champion."), False),
])
def test_what_is_retried(exc, transient):
    assert is_transient(exc) is transient


def test_httpx_transport_errors_are_transient():
    import httpx

    assert is_transient(httpx.ConnectError("refused")) and is_transient(httpx.ReadTimeout("slow"))
    request = httpx.Request("POST", "http://127.0.0.1:9/judge")

    def status(code):
        return httpx.HTTPStatusError(str(code), request=request, response=httpx.Response(code, request=request))

    # 429 and 5xx: the server is busy or failing, the same request may pass later; 4xx: it never will.
    assert is_transient(status(429)) and is_transient(status(503)) and is_transient(status(500))
    assert not is_transient(status(400)) and not is_transient(status(404)) and not is_transient(status(401))


def test_registering_the_same_model_twice_gives_one_version(tmp_path):
    import mlflow
    from mlflow import MlflowClient

    from tasks.tracking import register_model

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    mlflow.set_experiment("retries")          # a fresh store: never the experiment an earlier test made current
    with mlflow.start_run() as run:
        mlflow.log_text("w", "model/weights.txt")
    first = register_model("policy", run.info.run_id, "model", aliases=["challenger"], content="abc.dir")
    again = register_model("policy", run.info.run_id, "model", aliases=["challenger"], content="abc.dir")
    other = register_model("policy", run.info.run_id, "model", content="def.dir")
    assert first == again == 1 and other == 2
    assert len(MlflowClient().search_model_versions("name='policy'")) == 2

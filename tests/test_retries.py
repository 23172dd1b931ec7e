"""Prefect retries only what is transient, and a retried stage never registers a second model version."""

import pytest
from tiny_models import log_folder

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
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.txt").write_text("w")
    logged = []

    def log():
        logged.append(1)
        return log_folder(tmp_path / "model")()

    with mlflow.start_run() as run:
        first = register_model("policy", run.info.run_id, log, aliases=["challenger"], content="abc.dir")
        again = register_model("policy", run.info.run_id, log, aliases=["challenger"], content="abc.dir")
        other = register_model("policy", run.info.run_id, log, content="def.dir")
    assert first == again == 1 and other == 2
    assert len(MlflowClient().search_model_versions("name='policy'")) == 2
    assert len(logged) == 2          # the retry logged nothing: the version with its content was found


def test_a_dvc_experiment_registers_its_model_without_moving_an_alias(tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from tasks.tracking import register_model

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    mlflow.set_experiment("exp-aliases")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.txt").write_text("w")
    with mlflow.start_run() as run:
        first = register_model("policy", run.info.run_id, log_folder(tmp_path / "model"), aliases=["challenger"],
                               content="a.dir")
        # A stage of `dvc exp run` (DVC sets DVC_EXP_NAME; `rft stage` puts it in the StageContext)
        monkeypatch.setenv("DVC_EXP_NAME", "beta-sweep")
        from tasks.config import parse_params
        from tasks.stages.common import StageContext

        ctx = StageContext.from_dvc(parse_params({}))
        assert ctx.experiment == "beta-sweep"
        tried = register_model("policy", run.info.run_id, log_folder(tmp_path / "model"), aliases=["challenger"],
                               content="b.dir", experiment=ctx.experiment)
    client = MlflowClient()
    assert tried == first + 1 and client.get_model_version("policy", str(tried)).tags["dvc.exp"] == "beta-sweep"
    assert int(client.get_model_version_by_alias("policy", "challenger").version) == first


class _Registry:
    """A stand-in for MlflowClient's model-version lookup: tags per version."""

    def __init__(self, tags):
        self.tags = tags

    def get_model_version(self, name, version):
        return type("MV", (), {"tags": self.tags[version]})()


def test_the_gate_decides_only_this_cycles_candidate(tmp_path, monkeypatch):
    import yaml

    from tasks.io import dvc_md5
    from tasks.promotion import not_this_cycles

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models/candidate").mkdir(parents=True)
    (tmp_path / "models/candidate/model.safetensors").write_bytes(b"weights")
    registry = _Registry({"3": {}, "4": {"dvc.exp": "beta-sweep"}, "5": {"rejected_reason": "win-rate 0.41 < 0.5"},
                          "6": {"promotion_reason": "win-rate 0.73"}})
    assert not_this_cycles(registry, 3) is None                       # evaluated, never decided: decide it
    assert "comes from the DVC experiment 'beta-sweep'" in not_this_cycles(registry, 4, evaluated=True)
    assert "was already refused by an earlier cycle (win-rate 0.41 < 0.5)" in not_this_cycles(registry, 5)
    assert "was already promoted" in not_this_cycles(registry, 6)
    assert not_this_cycles(registry, 5, evaluated=True) is None        # this cycle evaluated it anew
    # A refusal holds for the gate that made it: with another promote section the candidate is decided again.
    registry.tags["5"]["rft.gate"] = "gate-a"
    assert "already refused" in not_this_cycles(registry, 5, gate="gate-a")
    assert not_this_cycles(registry, 5, gate="gate-b") is None
    registry.tags["6"]["rft.gate"] = "gate-a"
    assert "already promoted" in not_this_cycles(registry, 6, gate="gate-b")   # the champion already
    assert "no registry version" in not_this_cycles(registry, None)
    # The folder must be the one dvc.lock records for optimize.
    lock = {"schema": "2.0", "stages": {"optimize": {"outs": [{"path": "models/candidate", "md5": "0" * 32 + ".dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert "is not the candidate dvc.lock records for the optimize stage" in not_this_cycles(registry, 3)
    lock["stages"]["optimize"]["outs"][0]["md5"] = dvc_md5(tmp_path / "models/candidate")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert not_this_cycles(registry, 3) is None


def test_a_stage_asks_dvc_status_only_after_an_upstream_stage_ran(tmp_path, monkeypatch):
    import yaml

    from flows.cycle import Staleness

    monkeypatch.chdir(tmp_path)
    names = ["corpus", "prepare", "generate", "label", "evaluate"]
    # No dvc.lock yet: every stage is stale, and nothing asks DVC.
    fresh = Staleness(names, initially=[])
    assert [fresh.stale(n) for n in names] == [True] * 5
    # dvc.lock records all but evaluate; the first status found generate stale (a new champion, say).
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"stages": {n: {} for n in names[:4]}}))
    known = Staleness(names, initially=["generate"])
    assert known.stale("corpus") is False and known.stale("prepare") is False    # clean, and nothing ran yet
    known.ran(False)
    assert known.stale("generate") is True
    known.ran(True)                                    # generate wrote new generations...
    assert known.stale("label") is None                # ...so label asks dvc status itself
    assert known.stale("evaluate") is True             # never recorded: stale whatever ran


def test_backoff_doubles_up_to_its_cap():
    from tasks.retry import MAX_BACKOFF_S, backoff_delay

    # backoff * 2**attempt: 1, 2, 4, 8, 16, 32, then 64 > 60 is capped, and every later one too.
    assert MAX_BACKOFF_S == 60.0
    assert [backoff_delay(1.0, a) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay(0.5, 3) == 4.0 and backoff_delay(0.0, 10) == 0.0
    assert backoff_delay(1.0, 5000) == 60.0 and backoff_delay(3.0, 1, cap=5.0) == 5.0   # no overflow; own cap


def _sleeps(monkeypatch, module):
    slept = []
    monkeypatch.setattr(module.time, "sleep", slept.append)
    return slept


def test_every_retry_loop_caps_its_backoff(monkeypatch):
    """Ten retries at a 1 s backoff waited 1 + 2 + ... + 512 = 1023 s before the cap; now at most 60 s each."""
    import urllib.error

    from tasks import iterations, preflight, retrain
    from tasks.config import parse_params
    from tasks.errors import RFTError

    capped = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    cfg = parse_params({"retrain": {"max_retries": 10, "backoff": 1.0}}).retrain

    def refuse():
        raise urllib.error.URLError("connection refused")

    slept = _sleeps(monkeypatch, retrain)
    with pytest.raises(retrain.FetchError, match="after 10 retries"):
        retrain._retrying(cfg, "download", refuse)
    assert slept == capped

    slept = _sleeps(monkeypatch, preflight)
    monkeypatch.setattr(preflight, "probe", lambda url, timeout: "refused")
    with pytest.raises(RFTError, match="not answering"):
        preflight.wait_healthy("MLflow", "http://127.0.0.1:9", "tracking.uri", attempts=11, backoff=1.0)
    assert slept == capped

    import subprocess

    slept = _sleeps(monkeypatch, iterations)
    monkeypatch.setattr(iterations, "RETRIES", 11)
    monkeypatch.setattr(iterations, "BACKOFF", 1.0)
    with pytest.raises(RFTError, match="failed after 11 tries"):
        iterations._with_retries("git push", lambda: subprocess.CompletedProcess([], 1, "", "refused"))
    assert slept == capped


"""End to end on the tiny default: the Prefect flow, MLflow runs and registry, and DVC's record."""

import json
import subprocess

import pytest
import yaml

from conftest import make_project
from tasks.stages import STAGES

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def cycled(tmp_path_factory):
    path = make_project(tmp_path_factory.mktemp("e2e") / "proj")
    out = run(["rft", "cycle"], path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return path, out


def _client(path):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlruns.db'}")
    return MlflowClient()


def test_flow_prints_summary_and_where_to_look(cycled):
    _, out = cycled
    text = out.stdout + out.stderr
    assert "cycle summary" in text and "mlflow ui --backend-store-uri sqlite:///mlruns.db" in text
    for stage in STAGES:
        assert stage in text


def test_mlflow_parent_and_child_runs(cycled):
    path, _ = cycled
    client = _client(path)
    exp = client.get_experiment_by_name("rft-cycle")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("rft.kind") == "cycle"]
    assert len(parents) == 1 and parents[0].data.tags["rft.status"] == "ok"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["rft.stage"] for r in children) == sorted(STAGES)
    for child in children:
        assert child.info.status == "FINISHED" and child.data.metrics, child.info.run_name
        assert child.data.tags["git.commit"]
    generate = next(r for r in children if r.info.run_name == "generate")
    assert generate.data.metrics["tokens_per_second"] > 0
    artifacts = [a.path for a in client.list_artifacts(generate.info.run_id)]
    assert "sample_generations.json" in artifacts
    boot = next(r for r in children if r.info.run_name == "bootstrap")
    assert len(client.get_metric_history(boot.info.run_id, "pretrain_loss")) >= 2   # a learning curve


def test_registry_state(cycled):
    path, _ = cycled
    client = _client(path)
    mv = client.get_model_version_by_alias("policy", "champion")
    assert int(mv.version) == 1
    assert [int(v.version) for v in client.search_model_versions("name='policy'")] == [1]


def test_dvc_status_clean_and_lineage_hashes_match_dvc_lock(cycled):
    path, _ = cycled
    status = run(["dvc", "status"], path)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    deps = {d["path"]: d["md5"] for d in lock["stages"]["generate"]["deps"]}
    client = _client(path)
    exp = client.get_experiment_by_name("rft-cycle")
    (gen,) = client.search_runs([exp.experiment_id], "tags.`rft.stage` = 'generate'")
    assert gen.data.tags["dvc.md5.data/prompts.jsonl"] == deps["data/prompts.jsonl"]
    assert gen.data.tags["dvc.md5.models/champion"] == deps["models/champion"]


def test_second_repro_runs_nothing(cycled):
    path, _ = cycled
    out = run(["dvc", "repro"], path)
    assert out.returncode == 0 and "Running stage" not in out.stdout, out.stdout


def test_bad_data_stops_cycle_before_generation(cycled):
    path, _ = cycled
    gen = path / "data/generations.jsonl"
    before = gen.read_bytes()
    # A user's incoming prompts file with a duplicate id, wired in through params.yaml.
    rows = [json.loads(line) for line in (path / "data/raw/prompts.jsonl").read_text().splitlines()]
    rows[3]["id"] = rows[0]["id"]
    (path / "incoming").mkdir()
    (path / "incoming/prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["prepare"]["input"] = "incoming/prompts.jsonl"
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["rft", "cycle"], path)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-2000:]
    assert "rule 'unique ids' failed" in text and "data/prompts.jsonl" in text
    assert "Traceback" not in text
    assert gen.read_bytes() == before                   # generate never ran
    client = _client(path)
    assert int(client.get_model_version_by_alias("policy", "champion").version) == 1


def test_fresh_clone_repro_runs_every_stage_then_none(tmp_path):
    path = make_project(tmp_path / "clone")
    first = run(["dvc", "repro"], path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    second = run(["dvc", "repro"], path)
    assert "Running stage" not in second.stdout

"""`rft gc`: the DVC cache objects and MLflow artifacts of old rejected candidates go; champions, promoted
iterations, the last gc.keep_last iterations and what the workspace uses stay. A dry run changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_models import log_folder

from tasks import tracking
from tasks.cli import main
from tasks.gc import local_path
from tasks.manifest import load_params

REPO_PARAMS = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


def write_params(path, uri, keep_last):
    path.write_text(yaml.safe_dump({**REPO_PARAMS, "tracking": {**REPO_PARAMS["tracking"], "uri": uri},
                                    "gc": {"keep_last": keep_last}}, sort_keys=False))


def dvc(*args, cwd):
    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def md5_of(dvcfile):
    return yaml.safe_load(dvcfile.read_text())["outs"][0]["md5"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Five iterations of a fake cycle: 1 and 4 promoted, 2, 3 and 5 refused, @challenger on 5. Each iteration's
    candidate folder (a shared config.json and its own weights) is `dvc add`-ed, so the cache holds real objects,
    and the iteration's parent run carries the tags a cycle writes. A local DVC remote got the pushes of
    iterations 1 and 2 only (3's push failed, say): 3's objects are only in the cache. Iteration 1's promotion
    installed a champion folder (`rft.champion_md5`) that iterations 2 and 3 name as the champion they started
    from, and that the workspace no longer uses."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", f"sqlite:///{tmp_path}/mlruns.db", 2)
    params = load_params(tmp_path / "params.yaml")
    dvc("init", "--no-scm", "-q", cwd=tmp_path)
    dvc("remote", "add", "-d", "store", str(tmp_path / "remote"), cwd=tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.jsonl").write_text('{"id": "1", "prompt": "hi"}\n')
    dvc("add", "-q", "data/prompts.jsonl", cwd=tmp_path)
    prompts = md5_of(tmp_path / "data" / "prompts.jsonl.dvc")
    tracking.setup(params.tracking)
    client = mlflow.MlflowClient()
    cand = tmp_path / "models" / "candidate"
    cand.mkdir(parents=True)
    (cand / "config.json").write_text('{"shared": true}')
    (tmp_path / "models" / "champion").mkdir(parents=True)
    (tmp_path / "models" / "champion" / "weights.bin").write_bytes(b"the champion iteration 1 installed" * 1000)
    dvc("add", "-q", "models/champion", cwd=tmp_path)
    installed = md5_of(tmp_path / "models" / "champion.dvc")
    (tmp_path / "models" / "champion.dvc").unlink()            # superseded: the workspace names it no more
    runs, champion = {}, "none"
    for i in range(1, 6):
        (cand / "weights.bin").write_bytes(f"weights of iteration {i}".encode() * 1000)
        dvc("add", "-q", "models/candidate", cwd=tmp_path)
        folder = md5_of(tmp_path / "models" / "candidate.dvc")
        with mlflow.start_run(run_name=f"optimize {i}") as stage:
            version = tracking.register_model("policy", stage.info.run_id, log_folder(cand), content=folder)
        with mlflow.start_run(run_name=f"train_reward {i}") as reward:
            # Iterations 3 and 4 trained the same reward model: one version, kept by iteration 4.
            rm = tracking.register_model("reward-model", reward.info.run_id, log_folder(cand),
                                         content=f"rm{min(i, 3)}")
        promoted = i in (1, 4)
        with mlflow.start_run(run_name=f"cycle {i}"):
            mlflow.set_tags({"rft.kind": "cycle", "rft.iteration": str(i), "rft.policy_version": str(version),
                             "rft.reward_model_version": str(rm), "rft.parent_version": champion,
                             "rft.promoted": str(promoted).lower(), "dvc.md5.models/candidate": folder,
                             "dvc.md5.data/prompts.jsonl": prompts,
                             **({"rft.champion_md5": installed} if i == 1 else {}),
                             **({"dvc.md5.models/champion": installed} if i in (2, 3) else {})})
        if i == 2:
            dvc("push", "-q", cwd=tmp_path)
        if promoted:
            client.set_registered_model_alias("policy", "champion", str(version))
            client.set_model_version_tag("policy", str(version), "promotion_reason", "won")
            champion = str(version)
        runs[i] = {"folder": folder, "version": str(version), "stage_run": stage.info.run_id, "rm": str(rm),
                   "files": local_path(client.get_model_version_download_uri("policy", str(version)))}
    client.set_registered_model_alias("policy", "challenger", runs[5]["version"])
    runs[1]["installed"] = installed
    return tmp_path, params, client, runs


def cache_file(root, md5):
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def listed(root, md5):
    return [cache_file(root, e["md5"]) for e in json.loads(cache_file(root, md5).read_text())]


@pytest.mark.slow
def test_gc_drops_old_rejected_candidates_and_keeps_champions(project, capsys):
    root, params, client, runs = project
    before = sorted(p for p in (root / ".dvc" / "cache").rglob("*") if p.is_file())
    assert main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # keep_last 2 keeps 4 and 5; 1 and 4 were promoted; 2 and 3 go.
    assert "keeping iterations 1, 4, 5" in out and "dropping the files of 2, 3" in out, out
    assert "would delete 3 registered version(s)" in out and "policy v2, reward-model v2, policy v3" in out, out
    assert "dry run: nothing changed" in out
    assert sorted(p for p in (root / ".dvc" / "cache").rglob("*") if p.is_file()) == before
    assert {str(mv.version) for mv in client.search_model_versions("name='policy'")} == {"1", "2", "3", "4", "5"}

    assert all((r["files"] / "artifacts" / "candidate" / "weights.bin").exists() for r in runs.values())
    assert "kept 2 DVC cache file(s) (0.0 MB) of dropped iterations: the DVC remote 'store' does not hold them" \
        in out, out
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    # Per dropped iteration: its .dir manifest and its weights; config.json and the prompts are shared with kept ones.
    # Iteration 3's two are not on the remote: they stay, and the output says why.
    assert "deleted 2 DVC cache file(s)" in out and "kept 2 DVC cache file(s)" in out, out
    assert not cache_file(root, runs[2]["folder"]).exists()
    assert cache_file(root, runs[3]["folder"]).exists() and all(f.exists() for f in listed(root, runs[3]["folder"]))
    # The champion iteration 1 installed stays, though only dropped iterations name it as their parent.
    assert all(f.exists() for f in [cache_file(root, runs[1]["installed"]), *listed(root, runs[1]["installed"])])
    for i in (2, 3):
        assert runs[i]["files"].is_dir() is False, runs[i]["files"]      # the version's logged model is gone
        assert client.get_run(runs[i]["stage_run"]).data.tags["rft.gc"].endswith(f"policy v{i} deleted")
    # Once the remote holds them (as iteration 3's push would have left it), they go too.
    import shutil

    for f in [cache_file(root, runs[3]["folder"]), *listed(root, runs[3]["folder"])]:
        there = root / "remote" / f.relative_to(root / ".dvc" / "cache")
        there.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, there)
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    assert "deleted 2 DVC cache file(s)" in out and "kept" not in out.split("\n", 1)[1], out
    assert not cache_file(root, runs[3]["folder"]).exists()
    for i in (1, 4, 5):
        manifest = listed(root, runs[i]["folder"])
        assert all(f.exists() for f in manifest), i
        assert (runs[i]["files"] / "artifacts" / "candidate" / "weights.bin").exists(), i
    assert {str(mv.version) for mv in client.search_model_versions("name='policy'")} == {"1", "4", "5"}
    # reward-model v3 (shared by dropped 3 and kept 4) stays; v2 (only dropped 2) goes; v1 (promoted 1) stays.
    assert {str(mv.version) for mv in client.search_model_versions("name='reward-model'")} == {"1", "3"}
    assert client.get_model_version_by_alias("policy", "champion").version == 4
    assert client.get_model_version_by_alias("policy", "challenger").version == 5
    # The workspace (iteration 5's folder and the prompts) is whole: DVC sees nothing missing or changed.
    assert json.loads(dvc("status", "--json", cwd=root) or "{}") == {}
    # The iterations' records stay: history still lists all five.
    assert len(client.search_runs([client.get_experiment_by_name("rft-cycle").experiment_id],
                                  "tags.`rft.kind` = 'cycle'")) == 5

    assert main(["gc"]) == 0          # nothing left to collect
    out = capsys.readouterr().out
    assert "deleted 0 DVC cache file(s)" in out and "registered version" not in out, out


@pytest.mark.slow
def test_gc_keep_last_zero_still_keeps_champions_and_the_workspace(project, capsys):
    root, params, client, runs = project
    write_params(root / "params.yaml", params.tracking.uri, 0)
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    assert "keeping iterations 1, 4 " in out and "dropping the files of 2, 3, 5" in out, out
    # v5 holds @challenger, so it stays; its cache objects stay because the workspace uses them.
    assert {str(mv.version) for mv in client.search_model_versions("name='policy'")} == {"1", "4", "5"}
    assert json.loads(dvc("status", "--json", cwd=root) or "{}") == {}


def test_gc_keep_last_must_be_a_count(tmp_path, capsys):
    write_params(tmp_path / "params.yaml", "sqlite:///mlruns.db", -1)
    assert main(["--params", str(tmp_path / "params.yaml"), "gc"]) == 2
    assert "gc.keep_last: must be >= 0, got -1" in capsys.readouterr().err


@pytest.mark.slow
def test_gc_with_no_remote_deletes_no_cache_file_and_sizes_remote_artifacts(project, capsys, monkeypatch):
    # No DVC remote at all: the cache is the only copy of everything, so no cache file goes (the versions' MLflow
    # artifacts still do: the registry is not DVC's copy). The dry run sizes the artifacts through the artifact
    # repository's listing where the store is not a local folder (a tracking server, S3), not as 0 MB.
    from tasks import gc

    root, params, client, runs = project
    dvc("remote", "remove", "store", cwd=root)
    on_disk = sum(gc.folder_bytes(runs[i]["files"]) for i in (2, 3)) + \
        gc.folder_bytes(gc.local_path(client.get_model_version_download_uri("reward-model", runs[2]["rm"])))
    with monkeypatch.context() as m:
        m.setattr(gc, "local_path", lambda uri: None)            # as for an mlflow-artifacts: or s3: location
        assert main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"their MLflow artifacts ({on_disk / 2 ** 20:.1f} MB)" in out and on_disk > 50_000, out
    before = sorted(p for p in (root / ".dvc" / "cache").rglob("*") if p.is_file())
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    assert "deleted 0 DVC cache file(s)" in out and "kept 4 DVC cache file(s)" in out and "no DVC remote is set" in out
    assert sorted(p for p in (root / ".dvc" / "cache").rglob("*") if p.is_file()) == before
    assert {str(mv.version) for mv in client.search_model_versions("name='policy'")} == {"1", "4", "5"}

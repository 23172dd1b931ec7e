"""`rft dag`, `rft clean` and `rft history` as a newcomer reads them (tasks/dag.py, tasks/cli.py)."""

from pathlib import Path

from tasks.cli import main
from tasks.dag import lines, written
from tasks.manifest import MANIFEST


def test_rft_dag_fits_a_terminal_and_names_every_stage_in_order(capsys):
    assert main(["dag"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown == lines() and max(map(len, shown)) <= 100          # `dvc dag` draws ~260 columns
    numbered = [line.split()[1] for line in shown if line[:2].strip().isdigit()]
    assert numbered == [s.name for s in MANIFEST]
    text = " ".join(shown)
    # The data flow, not the code: each stage's outputs, and no tasks/*.py dependency.
    assert "tasks/" not in text
    for stage in MANIFEST:
        for out in stage.outs:
            assert out in text, out


def test_rft_clean_removes_what_the_pipeline_wrote_and_keeps_the_users_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    mine = ["data/incoming/README.md", "data/incoming/my_prompts.jsonl", "params.yaml"]
    made = ["data/corpus/demos.jsonl", "data/prompts.jsonl", "data/labels.jsonl", "models/base/config.json",
            "models/champion/model.safetensors", "reports/eval/metrics.json", "mlartifacts/1/x", "mlruns.db",
            "dvc.lock", "checkpoints/optimize/abc/state"]
    for f in mine[:2] + made:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    assert main(["clean", "--dry-run"]) == 0
    assert all((tmp_path / f).exists() for f in mine + made)
    assert main(["clean"]) == 0
    assert all((tmp_path / f).exists() for f in mine), "the user's own files stay"
    assert not any((tmp_path / f).exists() for f in made)
    assert not any(p.startswith("data/incoming") or p == "data" for p in written())
    # The store params.yaml names, wherever inside the project it is, goes too; a server's does not.
    from types import SimpleNamespace

    from tasks.dag import stores

    assert stores(SimpleNamespace(uri="sqlite:///runs/store.db", artifact_location="runs/art")) == {
        "runs/store.db", "runs/store.db-journal", "runs/store.db-wal", "runs/store.db-shm", "runs/art"}
    assert stores(SimpleNamespace(uri="http://mlflow:5000", artifact_location="s3://bucket/x")) == set()


def test_rft_history_with_no_iteration_says_what_records_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert "no iterations yet" in out and "`rft cycle` records one" in out and "dvc repro" in out

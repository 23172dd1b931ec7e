"""A project moved to another folder keeps its MLflow history (tasks/relocate.py)."""

import os
import sqlite3
from pathlib import Path

import mlflow
import pytest

from tasks.relocate import old_root, relocate, rewrite


def test_old_root_is_the_stored_location_less_the_relative_artifact_location():
    here = Path("/new/place")
    assert old_root("file:///old/proj/mlartifacts", "mlartifacts", here) == Path("/old/proj")
    assert old_root("file:///old/my%20proj/store/art", "store/art", here) == Path("/old/my proj")
    # Not moved, or not the project's own location: nothing to do.
    assert old_root("file:///new/place/mlartifacts", "mlartifacts", here) is None
    assert old_root("file:///old/proj/elsewhere", "mlartifacts", here) is None
    assert old_root("s3://bucket/mlartifacts", "mlartifacts", here) is None
    assert old_root("file:///old/proj/mlartifacts", "/abs/mlartifacts", here) is None
    assert old_root("file:///old/proj/mlartifacts", "s3://bucket/x", here) is None


def test_rewrite_moves_paths_under_the_old_root_only():
    old, new = Path("/old/proj"), Path("/new/my proj")
    assert rewrite("file:///old/proj/mlartifacts/1/abc", old, new) == "file:///new/my%20proj/mlartifacts/1/abc"
    assert rewrite("/old/proj/mlruns/0", old, new) == "/new/my proj/mlruns/0"
    assert rewrite('{"uri": "/old/proj/data/prompts.jsonl"}', old, new) == '{"uri": "/new/my proj/data/prompts.jsonl"}'
    assert rewrite("/old/proj", old, new) == "/new/my proj"
    assert rewrite("artifact_path: file:///old/proj/mlartifacts", old, new) == \
        "artifact_path: file:///new/my%20proj/mlartifacts"
    # A longer name, a name with more after a space, or a path that only ends with the old root: other paths.
    for other in ("/old/project/x", "/x/old/proj/y", "file:///old/proj2/y", "models:/m-123", "/old/proj x/y",
                  "/srv(1)/old/proj/y"):
        assert rewrite(other, old, new) == other



class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [len(str(x)) for x in model_input.iloc[:, 0]]


def _project(path: Path):
    """A project folder whose store holds a run with an artifact and a dataset, and a registered model."""
    import pandas as pd

    from tasks import tracking
    from tasks.config import parse_params

    path.mkdir()
    os.chdir(path)
    (path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    params = parse_params({})
    tracking.setup(params.tracking)
    (path / "note.txt").write_text("hello")
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(path / "note.txt"))
        tracking.log_datasets({"note.txt": "abc"}, {"note.txt": "training"})
        info = mlflow.pyfunc.log_model(name="policy", python_model=Echo(), pip_requirements=[],
                                       input_example=pd.DataFrame({"x": ["ab"]}))
    client.create_registered_model("policy")
    mv = client.create_model_version("policy", source=info.model_uri, run_id=run.info.run_id)
    client.set_registered_model_alias("policy", "champion", mv.version)
    return params, run.info.run_id


def test_a_moved_project_loads_its_champion_and_opens_its_artifacts_from_the_new_place(tmp_path, monkeypatch):
    import pandas as pd

    from tasks.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params, run_id = _project(tmp_path / "a")
    os.chdir(tmp_path)
    (tmp_path / "a").rename(tmp_path / "b")             # the old folder is gone
    os.chdir(tmp_path / "b")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'b' / 'mlruns.db'}")
    with pytest.raises((OSError, mlflow.exceptions.MlflowException)):   # before: it read the old folder
        mlflow.pyfunc.load_model("models:/policy@champion")
    assert main(["relocate"]) == 0
    model = mlflow.pyfunc.load_model("models:/policy@champion")
    assert list(model.predict(pd.DataFrame({"x": ["abc"]}))) == [3]
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).info.artifact_uri.startswith((tmp_path / "b").as_uri())
    assert (Path(client.download_artifacts(run_id, "note.txt", str(tmp_path))).read_text()) == "hello"
    # No stored text names the old folder any more, and a second relocate has nothing to do.
    with sqlite3.connect(tmp_path / "b" / "mlruns.db") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for (_, col, *_rest) in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                hits = db.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{col}" AS TEXT) LIKE ?',
                                  (f"%{tmp_path / 'a'}/%",)).fetchone()[0]
                assert hits == 0, (table, col)
    assert not [p for p in (tmp_path / "b" / "mlartifacts").rglob("MLmodel") if str(tmp_path / "a") in p.read_text()]
    assert relocate(params.tracking.uri, params.tracking.experiment, params.tracking.artifact_location) is None


def test_a_store_outside_the_project_is_not_moved(tmp_path, monkeypatch):
    """An absolute sqlite:/// store elsewhere may be shared by several clones: no clone rewrites it for itself."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _project(tmp_path / "a")
    os.chdir(tmp_path)
    (tmp_path / "clone").mkdir()
    before = (tmp_path / "a" / "mlruns.db").read_bytes()
    uri = f"sqlite:///{tmp_path / 'a' / 'mlruns.db'}"
    assert relocate(uri, "rft-cycle", "mlartifacts", here=tmp_path / "clone") is None
    assert (tmp_path / "a" / "mlruns.db").read_bytes() == before
    # The same store, seen from its own project folder, has not moved either.
    assert relocate(uri, "rft-cycle", "mlartifacts", here=tmp_path / "a") is None

"""MLflow tracking shared by every stage: one parent run per cycle, one child run per stage.

A stage always logs inside ``tasks/stages/common.py::stage_run``. When the Prefect flow drives the
cycle it hands each stage the parent run's id in its ``StageContext``, and each stage's
run becomes a child of it; under a bare ``dvc repro`` each stage opens a
top-level run of its own. Every run is tagged with the git commit and the DVC
hashes of the inputs it read, so a registered model leads back to exact data.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.errors import StoreError
from tasks.io import dvc_md5
from tasks.precision import for_sampling, resolve
from tasks.relocate import relocate, say

if TYPE_CHECKING:                 # a type only: the configuration sits above the services it configures
    from tasks.config import TrackingConfig

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


def resolve_uri(uri: str) -> str:
    """Make a relative SQLite store path absolute (MLflow caches its database engine by URI string,
    so a relative path would keep pointing at the first working directory it was used in)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


QUICK_CHECK_BYTES = 64 << 20      # SQLite's quick_check reads the whole file: only stores up to 64 MiB


def check_sqlite_store(uri: str) -> None:
    """A StoreError naming the file when an SQLite tracking store exists but is no SQLite database (damaged,
    overwritten, truncated) or fails SQLite's own quick check."""
    import sqlite3

    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return
    path = Path(uri[len(prefix):])
    if not path.is_file() or path.stat().st_size == 0:
        return                                   # MLflow creates it
    verdict = "ok"
    try:
        with path.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                verdict = "not an SQLite database"
        if verdict == "ok":
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                if path.stat().st_size <= QUICK_CHECK_BYTES:
                    (verdict,) = db.execute("PRAGMA quick_check").fetchone()     # 25 ms for a 1.7 MB store
                else:
                    # A store that grew past the bound: cheap reads that an overwritten or truncated file fails
                    # (the schema, then the first row of each table), not a scan that grows with every run.
                    tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                    for table in tables:
                        db.execute(f'SELECT * FROM "{table}" LIMIT 1').fetchall()
    except sqlite3.DatabaseError as exc:
        verdict = str(exc)
    if verdict != "ok":
        raise StoreError(f"{path}: the MLflow tracking store is damaged ({verdict}); restore it from a backup, "
                         "or move it aside to start a new store (tracking.uri names it)")


def setup(cfg: TrackingConfig) -> str:
    """Point MLflow at the configured store and experiment; return the experiment id. A damaged SQLite store
    stops here, naming the file."""
    import mlflow

    check_sqlite_store(resolve_uri(cfg.uri))
    relocated(cfg)
    mlflow.set_tracking_uri(resolve_uri(cfg.uri))
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is None:
        location = cfg.artifact_location
        if "://" not in location:
            location = Path(location).resolve().as_uri()
        exp_id = mlflow.create_experiment(cfg.experiment, artifact_location=location)
        tags = {}
    else:
        exp_id, tags = exp.experiment_id, exp.tags
    if EXPERIMENT_KIND_TAG not in tags:
        # The kind of experiment, for MLflow's own listing and its type prompt. The MLflow 3.17 UI still opens
        # it in the view its per-browser switch says (GenAI by default): the links a cycle prints choose the
        # model-training view in their ?workflowType= (tasks/report.py::TRAINING_VIEW).
        mlflow.MlflowClient().set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, "custom_model_development")
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def relocated(cfg: TrackingConfig) -> dict | None:
    """Rewrite the local store's paths when the project moved (``tasks/relocate.py``), saying so; return the
    report (None: nothing moved)."""
    import sys

    report = relocate(resolve_uri(cfg.uri), cfg.experiment, cfg.artifact_location)
    if report:
        print(say(report), file=sys.stderr, flush=True)
    return report


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "none"
    except (OSError, subprocess.SubprocessError):
        return "none"


def lineage_tags(inputs: list[str | Path]) -> dict[str, str]:
    tags = {"git.commit": git_commit()}
    for p in inputs:
        if Path(p).exists():
            tags[f"dvc.md5.{Path(p).as_posix()}"] = dvc_md5(p)
    return tags


def metric_name(text: str) -> str:
    """A string as an MLflow metric name (letters, digits, _ - . / only)."""
    return re.sub(r"[^A-Za-z0-9_\-./]+", "_", text).strip("_")


def name_run(name: str, **tags: str) -> None:
    """Rename the active run to ``name`` once it knows more of itself, and set ``tags``."""
    import mlflow

    mlflow.set_tags({"mlflow.runName": name, **tags})


def log_datasets(hashes: dict[str, str], contexts: dict[str, str]) -> None:
    """``mlflow.log_input`` for each path of ``contexts`` that ``hashes`` (path -> DVC md5) records: the file's
    path as its source and name, its DVC hash as its digest, so two runs on the same data show the same
    dataset."""
    import mlflow
    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.data.meta_dataset import MetaDataset

    # MLflow registers its local-file source twice, and resolving a path by the registry warns that it is
    # ambiguous: the class is named instead.
    local = next(s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource")
    for path, context in contexts.items():
        if hashes.get(path):
            source = local(str(Path(path).resolve()))
            mlflow.log_input(MetaDataset(source, name=path, digest=hashes[path]), context=context)


def record_precision(params, device: str | None = None, sampling: bool = False):
    """The precision in force for this stage (``train.precision`` on ``device``; ``tasks/precision.py``; with
    ``sampling``, what a sampling stage runs in there), recorded in the active MLflow run as tags
    (``rft.precision``, ``rft.precision_setting``, ``rft.precision_reason``) and returned."""
    import mlflow

    p = resolve(params.train.precision, device)
    if sampling:
        p = for_sampling(p, device or p.device)
    if mlflow.active_run() is not None:
        mlflow.set_tags(p.tags())
    return p


class MetricLog:
    """The stages' ``log(key, value, step)``, plus ``many({key: value}, step)``: a step's figures in one MLflow
    write. Logged one by one, the dozen figures TRL reports at every step cost a SQLite transaction each (about
    6 ms on 2 cores: 2.3 s of a 14.9 s DPO run, measured with cProfile)."""

    def __call__(self, key: str, value: float, step: int) -> None:
        import mlflow

        mlflow.log_metric(key, value, step=step)

    def many(self, metrics: dict, step: int) -> None:
        import mlflow

        if metrics:
            mlflow.log_metrics(metrics, step=step)


def log_many(log, metrics: dict, step: int) -> None:
    """Log ``metrics`` at ``step`` through ``log``: in one write when it is a :class:`MetricLog`."""
    many = getattr(log, "many", None)
    if many is not None:
        many(metrics, step)
        return
    for key, value in metrics.items():
        log(key, value, step)


CONTENT_TAG = "rft.content"
DVC_EXP_TAG = "dvc.exp"


def register_model(name: str, run_id: str, log_model, *, aliases: list[str] = (),
                   tags: dict | None = None, description: str = "", content: str | None = None,
                   experiment: str | None = None) -> int:
    """Register the MLflow model that ``log_model()`` logs in run ``run_id`` (it returns MLflow's
    ``ModelInfo``; ``tasks/mlmodels.py``) as a new version of ``name``; set aliases; return the version.

    ``content`` is the DVC hash of the model folder. A version already registered with the same content
    is reused, and nothing is logged again, so a stage that Prefect retries (or DVC re-runs to the same bytes)
    never adds a second version of one model.

    With ``experiment`` (a stage of ``dvc exp run``: ``StageContext.experiment``) the version is registered with
    a ``dvc.exp`` tag and no alias moves: an experiment is something to compare, never the next challenger or
    champion.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if experiment:
        aliases, tags = [], {**(tags or {}), DVC_EXP_TAG: experiment}
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    same = client.search_model_versions(f"name='{name}' and tags.`{CONTENT_TAG}` = '{content}'") if content else []
    if same:
        mv = same[0]
        for alias in aliases:
            client.set_registered_model_alias(name, alias, mv.version)
        return int(mv.version)
    info = log_model()
    mv = client.create_model_version(name, source=info.model_uri, run_id=run_id, model_id=info.model_id,
                                     tags={**(tags or {}), **({CONTENT_TAG: content} if content else {})},
                                     description=description)
    link_version(client, info.model_id, name, mv.version)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, mv.version)
    return int(mv.version)


VERSIONS_TAG = "mlflow.modelVersions"     # a logged model's registered versions, as mlflow.register_model sets it


def link_version(client, model_id: str | None, name: str, version) -> None:
    """Tag the logged model ``model_id`` with the registry version made from it, as ``mlflow.register_model``
    does (``create_model_version`` alone does not): without the tag the logged model's page says "Not
    registered" and the experiment's Models tab shows no version."""
    import json

    if not model_id:
        return
    known = json.loads(client.get_logged_model(model_id).tags.get(VERSIONS_TAG) or "[]")
    entry = {"name": name, "version": str(version)}
    if entry not in known:
        client.set_logged_model_tags(model_id, {VERSIONS_TAG: json.dumps([*known, entry])})


def log_final(metrics: dict, name: str, version: int) -> None:
    """Log a stage's final figures in the active run, linked to the logged model of ``name`` v``version`` when
    this run logged it, so that the model's page shows what the stage ended with (MLflow itself links only the
    metrics of the step the model was logged at). A version reused from an earlier run (same content) keeps its
    own figures."""
    import mlflow
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(name, str(version))
    mine = mv.run_id == mlflow.active_run().info.run_id
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=logged_model_id(mv) if mine else None)


def logged_model_id(mv) -> str | None:
    """The id of the logged model a registry version was made from: its ``models:/<id>`` source (a SQLite
    registry keeps no model_id column, so the version's own field comes back empty)."""
    if getattr(mv, "model_id", None):
        return mv.model_id
    prefix = "models:/m-"
    return mv.source[len("models:/"):] if (mv.source or "").startswith(prefix) else None

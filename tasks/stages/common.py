"""What every stage does around its work: open its MLflow run with its declared params and the hashes of its
inputs (``stage_run``), and, for the two validation stages, record a check's outcome and its Data Docs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Iterator

from tasks import threads
from tasks.config import Params
from tasks.errors import DataValidationError, store_error
from tasks.io import clean_scratch, recover_all, write_json
from tasks.manifest import declared_params, flatten, input_paths, logged_params
from tasks.params_audit import unwrap
from tasks.redact import redact_params
from tasks.tracking import (
    DVC_EXP_ENV,
    DVC_EXP_TAG,
    PARENT_ENV,
    lineage_tags,
    run_name,
    setup,
)
from tasks.validate import LATEST, SUMMARY, write_latest


def flat_params(params) -> dict:
    """The whole of ``params``, flattened to ``section.key`` (a cycle's parent run logs it), with the credentials
    in its URLs masked (``tasks/redact.py``)."""

    params = unwrap(params)
    return redact_params({k: v for f in dataclasses.fields(params)
                          for k, v in flatten(f.name, getattr(params, f.name)).items()})


@contextlib.contextmanager
def stage_run(stage: str, params, *, extra_inputs: list[str | Path] = ()) -> Iterator["mlflow.ActiveRun"]:
    """Open the stage's MLflow run, log its params and lineage, and time it.

    What is logged comes from the stage manifest (``tasks/manifest.py``): every
    params key the stage declares, and a ``dvc.md5.<path>`` tag for every data
    path it declares (plus ``extra_inputs``, files named inside params).
    """
    import mlflow

    # Before the inputs are hashed: a folder swap that a crash cut short is finished (tasks/io.py::recover).
    # Housekeeping of every stage, not an input of this one: read past the params audit.
    recover_all("models", "data", Path(unwrap(params).policy.champion_dir).parent, who=stage)
    clean_scratch()                 # trainer scratch folders of processes killed mid-training
    setup(params.tracking)
    parent = os.environ.get(PARENT_ENV)
    inputs = input_paths(stage, params) + list(extra_inputs)
    kwargs = {"run_name": run_name(stage),
              "tags": {"rft.stage": stage, "rft.params": ",".join(declared_params(stage, params)),
                       **lineage_tags(inputs),
                       # a `dvc exp run` stage: its candidate never becomes a champion (tasks/provenance.py)
                       **({DVC_EXP_TAG: os.environ[DVC_EXP_ENV]} if os.environ.get(DVC_EXP_ENV) else {})}}
    if parent:
        kwargs.update(parent_run_id=parent, nested=True)
    # A stage never inherits whatever run an earlier caller left active in this process.
    while mlflow.active_run() is not None and parent is None:
        mlflow.end_run()

    n_threads, threads_from = threads.apply(params.scale.threads)
    with mlflow.start_run(**kwargs) as run:
        mlflow.log_params(redact_params(logged_params(stage, params)))   # no credential in a URL
        mlflow.set_tags({"rft.threads": str(n_threads), "rft.threads_from": threads_from})
        start = time.perf_counter()
        try:
            yield run
        except OSError as exc:
            # A full disk or a read-only folder: one message naming the path (atomic writes left nothing).
            err = store_error(exc)
            if err is None:
                raise
            raise err from None
        mlflow.log_metric("stage_seconds", time.perf_counter() - start)


def run_validation(stage: str, params: Params, check, inputs: list[Path], report: Path, docs_dir: Path) -> dict:
    import mlflow

    with stage_run(stage, params):
        try:
            summary = check()
            mlflow.log_metrics({f"{k}": float(v) for k, v in summary.items()})
            mlflow.set_tag("validation", "passed")
        except DataValidationError as exc:
            mlflow.set_tag("validation", "failed")
            mlflow.log_metric("failed_rules", len(exc.failures))
            mlflow.log_text(str(exc), "validation_errors.txt")
            raise
        finally:
            if docs_dir.exists():
                write_latest(docs_dir)
                mlflow.log_artifacts(str(docs_dir), artifact_path="data_docs")
                # The summary page opens in the MLflow UI's artifact view, offline too.
                mlflow.set_tag("validation.summary", f"data_docs/{SUMMARY}")
        write_json(report, {"passed": True, **summary, "summary": str(docs_dir / SUMMARY),
                            "data_docs": str(docs_dir / LATEST)})
    return summary

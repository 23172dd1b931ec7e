"""What every stage is given and does around its work.

:class:`StageContext` is what the flow or the CLI hands a stage besides its files: the params, the cycle's
MLflow run and name, and the DVC experiment it runs in. ``stage_run`` opens the stage's MLflow run with its
declared params and the hashes of its inputs, and, for the two validation stages, ``run_validation`` records
a check's outcome and its Data Docs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tasks import threads
from tasks.config import Params
from tasks.errors import DataValidationError, store_error
from tasks.io import clean_scratch, recover_all, write_json
from tasks.manifest import declared_params, flatten, input_paths, logged_params
from tasks.redact import redact_params
from tasks.tracking import DVC_EXP_TAG, lineage_tags, setup
from tasks.validate import LATEST, SUMMARY, write_latest

DVC_EXP_ENV = "DVC_EXP_NAME"        # set by DVC for the stages of `dvc exp run`


@dataclass(frozen=True)
class StageContext:
    """What a stage is given besides the files it reads, passed by the flow and the CLI (never the environment).

    ``parent_run``: the cycle's MLflow run, whose child the stage's run becomes (None: a top-level run, as under
    ``dvc repro``). ``cycle``: "cycle 7", the start of the stage runs' names. ``experiment``: the ``dvc exp run``
    experiment the stage runs in; its models are registered with a ``dvc.exp`` tag and move no alias.
    """

    params: Params
    parent_run: str | None = None
    cycle: str | None = None
    experiment: str | None = None

    def run_name(self, what: str) -> str:
        """A run's name: ``cycle 7 / generate`` inside a cycle, ``generate`` on its own (``rft stage``)."""
        return f"{self.cycle} / {what}" if self.cycle else what

    @classmethod
    def from_dvc(cls, params: Params) -> "StageContext":
        """The context of ``rft stage`` (as ``dvc repro`` and ``dvc exp run`` run it): DVC names the experiment in
        ``DVC_EXP_NAME``, a setting of DVC's that only this entry point reads."""
        return cls(params, experiment=os.environ.get(DVC_EXP_ENV) or None)


def flat_params(params) -> dict:
    """The whole of ``params``, flattened to ``section.key`` (a cycle's parent run logs it), with the credentials
    in its URLs masked (``tasks/redact.py``)."""

    return redact_params({k: v for f in dataclasses.fields(params)
                          for k, v in flatten(f.name, getattr(params, f.name)).items()})


@contextlib.contextmanager
def stage_run(stage: str, ctx: StageContext, *, extra_inputs: list[str | Path] = ()) -> Iterator["mlflow.ActiveRun"]:
    """Open the stage's MLflow run, log its params and lineage, and time it.

    What is logged comes from the stage manifest (``tasks/manifest.py``): every
    params key the stage declares, and a ``dvc.md5.<path>`` tag for every data
    path it declares (plus ``extra_inputs``, files named inside params).
    """
    import mlflow

    params, parent = ctx.params, ctx.parent_run
    # Before the inputs are hashed: a folder swap that a crash cut short is finished (tasks/io.py::recover).
    # Housekeeping of every stage, not an input of this one (tasks/manifest.py::HOUSEKEEPING).
    recover_all("models", "data", Path(params.policy.champion_dir).parent, who=stage)
    clean_scratch()                 # trainer scratch folders of processes killed mid-training
    setup(params.tracking)
    inputs = input_paths(stage, params) + list(extra_inputs)
    kwargs = {"run_name": ctx.run_name(stage),
              "tags": {"rft.stage": stage, "rft.params": ",".join(declared_params(stage, params)),
                       **lineage_tags(inputs),
                       # a `dvc exp run` stage: its candidate never becomes a champion (tasks/provenance.py)
                       **({DVC_EXP_TAG: ctx.experiment} if ctx.experiment else {})}}
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


def run_validation(stage: str, ctx: StageContext, check, report: Path, docs_dir: Path) -> dict:
    """Run ``check()`` (a validation that writes Data Docs to ``docs_dir``) in the stage's MLflow run; record
    its outcome, log its Data Docs, and write ``report`` only when it passes."""
    import mlflow

    with stage_run(stage, ctx):
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

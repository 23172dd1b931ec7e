"""The ``cycle`` flow: one iteration of the pipeline, orchestrated by Prefect, recorded by DVC and MLflow.

Each stage of ``dvc.yaml`` is a Prefect task. The task asks DVC whether the
stage is stale (``Repo.status``); if it is, it runs the stage's function in
this process (the same function ``dvc repro`` calls through ``rft stage``) and
then records the result with ``Repo.commit``, so ``dvc.lock`` stays the single
record of what ran on which data and ``dvc status`` is clean afterwards. Up-to-
date stages are skipped, exactly as ``dvc repro`` would skip them. Running
in-process spares each stage a fresh interpreter (importing torch,
transformers and MLflow again).

The flow adds what DVC has not: one MLflow parent run per cycle whose children
are the stages' runs, retries of stages that fail on I/O, a clean stop with a
message (never a traceback) when data or params are bad, and a summary table.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.states import Completed, Failed

from tasks import iterations, tracking
from tasks.errors import RFTError
from tasks.io import fsync_dir, fsync_file, recover_all
from tasks.iterations import params_md5
from tasks.lock import project_lock
from tasks.manifest import STAGES, load_params
from tasks.paths import CANDIDATE, DVC_LOCK
from tasks.policy import check_devices, read_meta
from tasks.prefect_server import temporary_server
from tasks.preflight import check_servers
from tasks.promotion import clear_pending, gate_hash, not_this_cycles, promote, recover_promotion
from tasks.redact import redact_text
from tasks.report import mlflow_ui_hint, prefect_links, publish_artifacts, summary_table
from tasks.stages import run_stage
from tasks.stages.common import StageContext, flat_params

# A missing file, a bad model folder or a permission problem will fail the same way again: never retried.
PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                       FileExistsError)


def is_transient(exc: BaseException) -> bool:
    """Errors worth a retry: a lost connection, a timeout, an interrupted or busy resource. Bad data,
    bad params, a missing file or a bug fail at once."""
    if isinstance(exc, RFTError) or isinstance(exc, PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, BlockingIOError, InterruptedError)):
        return True
    try:
        import httpx
    except ImportError:
        return False
    if isinstance(exc, httpx.HTTPStatusError):       # a server that is busy or failing, not a bad request
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, (httpx.TransportError, httpx.TimeoutException))


def _retry_on_io(task, task_run, state) -> bool:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - decided by is_transient
        return is_transient(exc)
    return False


def skipped() -> Completed:
    """The final state of a stage that was up to date: Completed, named "Skipped" in Prefect's UI."""
    return Completed(name="Skipped", message="up to date (dvc status): not run")


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_on_io, persist_result=False)
def stage_task(name: str, params_path: str, stale: bool | None = None, parent_run: str | None = None,
               cycle: str | None = None) -> dict | Completed:
    """Run stage ``name`` if it is stale (``stale``: already known, else asked of ``dvc status``), then record
    it in ``dvc.lock``. An up-to-date stage ends in the state ``skipped()``. ``parent_run`` and ``cycle``: the
    cycle's MLflow run and name, handed to the stage in its ``StageContext``."""
    if stale is False:
        return skipped()
    from dvc.repo import Repo

    read = params_md5(params_path)                  # the file this stage reads, as the cycle compares it
    params = load_params(params_path)
    repo = Repo(".")
    try:
        if stale is None:
            stale = bool(repo.status(targets=[name]))
        if not stale:
            return skipped()
        get_run_logger().info(f"stage {name}: running")
        start = time.perf_counter()
        metrics = run_stage(name, StageContext(params, parent_run=parent_run, cycle=cycle))
        repo.commit(name, force=True)
        fsync_file(DVC_LOCK)
        fsync_dir(".")
        return {"stage": name, "status": "ran", "seconds": time.perf_counter() - start, "metrics": metrics,
                "params_md5": read}
    finally:
        repo.close()


@task(persist_result=False)
def promote_task(params_path: str, evaluated: bool = True, parent_run: str | None = None,
                 iteration: int | None = None) -> dict:
    start = time.perf_counter()
    result = promote(load_params(params_path), evaluated=evaluated, parent_run=parent_run, iteration=iteration)
    status = "promoted" if result["promoted"] else "kept champion" if result["decided"] else "nothing to decide"
    return {"stage": "promote", "status": status, "seconds": time.perf_counter() - start, "metrics": result}


def stage_row(name: str, state) -> dict:
    """A stage task's row of the summary from its final state; a failed stage raises its error."""
    if state.name == "Skipped":
        return {"stage": name, "status": "skipped", "seconds": 0.0, "metrics": {}}
    return state.result()


# log_prints stays off: Prefect's print capture would swallow what libraries print for their own use
# (dill disassembles functions into a captured stdout to hash them for datasets' cache keys).
@flow(name="rft-cycle")
def cycle(params_path: str = "params.yaml", stages: list[str] | None = None,
          initially: list[str] | None = None) -> dict:
    """Run the cycle's stages in order; stop at the first failure without touching later outputs. The whole run
    holds the project lock (tasks/lock.py): a deployment's worker runs this flow without the CLI."""

    params = load_params(params_path)
    with project_lock(flow_command("rft-cycle"), params.lock):
        return _cycle(params, params_path, stages, initially)


def flow_command(flow_name: str) -> str:
    """How a flow run names itself as the project's writer: the flow and its Prefect run."""
    from prefect.runtime import flow_run

    return f"the {flow_name} flow, Prefect flow run {flow_run.name or '?'}"


def _cycle(params, params_path: str, stages: list[str] | None, initially: list[str] | None) -> dict:
    import mlflow

    check_servers(params.tracking.uri, prefect=False)   # before any compute, naming the URL
    check_devices(params)                               # device: cuda without a GPU, before any stage
    recover_all("models", "data", Path(params.policy.champion_dir).parent, who="cycle")   # a swap a crash cut short
    recover_promotion(params, who="cycle")              # a promotion a crash cut short
    dvc_logs_once()
    exp_id = tracking.setup(params.tracking)
    client = mlflow.MlflowClient()
    iteration = iterations.next_iteration(client, exp_id)
    loaded = iterations.params_md5(params_path)         # the params the cycle starts with, to compare at its end
    names = stages or STAGES
    rows: list[dict] = []
    error = None
    t_start = time.perf_counter()
    tags = {"rft.kind": "cycle", iterations.ITERATION_TAG: str(iteration), "git.commit": tracking.git_commit(),
            "rft.parent_version": iterations.champion_version(client) or "none",
            "rft.winrate_source": params.promote.winrate_source, iterations.PARAMS_MD5_TAG: str(loaded)}
    tags.update(prefect_links())
    with mlflow.start_run(run_name=f"cycle {iteration}", tags=tags) as parent:
        cycle_name = f"cycle {iteration}"                                # the stage runs' names start with it
        mlflow.log_params(flat_params(params))                 # the whole params.yaml, to compare
        mlflow.log_text(redact_text(Path(params_path).read_text()), "params.yaml")   # as loaded, for the record
        name = names[0]
        try:
            known = Staleness(names, initially)          # initially: the stale stages, if the caller asked DVC
            for name in names:
                state = stage_task.with_options(name=name)(name, params_path, known.stale(name), parent.info.run_id,
                                                           cycle_name, return_state=True)
                rows.append(stage_row(name, state))
                known.ran(rows[-1]["status"] == "ran")
            if stages is None:
                drift = iterations.params_drift(params_path, loaded, rows)
                if drift:                   # said before the record and the promotion commit it
                    get_run_logger().warning(f"cycle: {drift}")
                    mlflow.set_tag(iterations.PARAMS_CHANGED_TAG, drift[:5000])
                    if iterations.params_values_changed(params_path, params):
                        # The gate would judge, and the commit record, other params than the stages trained under.
                        raise RFTError(f"{drift}. Its values changed, not only its comments: nothing is recorded or "
                                       "promoted. Run the cycle again: the stages whose params changed rerun")
                name = "record"
                iterations.record_iteration(params, iteration, client, parent.info.run_id, rows)
                name = "promote"
                row = promote_task(params_path, evaluated=any(r["stage"] == "evaluate" and r["status"] == "ran"
                                                              for r in rows),
                                   parent_run=parent.info.run_id, iteration=iteration)
                rows.append(row)
                promoted = bool(row["metrics"]["promoted"])
                if not promoted:        # a promotion tags the run itself, step by step (tasks/promotion.py::finish)
                    mlflow.set_tags({"rft.promoted": "false", "rft.promotion_reason": row["metrics"]["reason"][:5000]})
                    mlflow.log_metric("promoted", 0.0)
        except RFTError as exc:
            error = redact_text(str(exc))                # a URL in a message keeps no credential
            rows.append({"stage": name, "status": "FAILED", "seconds": 0.0, "metrics": {}})
            mlflow.set_tag("rft.error", error[:5000])
        mlflow.set_tag("rft.status", "failed" if error else "ok")
        mlflow.log_metrics({f"{r['stage']}.seconds": r["seconds"] for r in rows})
        mlflow.log_metric("cycle_seconds", time.perf_counter() - t_start)
        table = summary_table(rows, params.promote.winrate_source)
        mlflow.log_text(table, "summary.txt")
        parent_id = parent.info.run_id
    if any(r["stage"] == "promote" and r["metrics"].get("promoted") for r in rows):
        clear_pending()                         # the run that the promotion tagged has ended: nothing to finish
    publish_artifacts(iteration, rows, params, exp_id, parent_id, error)
    log = get_run_logger()
    log.info("\n" + table)
    if error:
        log.info(f"cycle stopped: {error}")
    elif rows and rows[-1]["stage"] == "promote":
        log.info(rows[-1]["metrics"]["reason"])
    log.info(mlflow_ui_hint(params.tracking.uri, exp_id, parent_id))
    result = {"ok": error is None, "error": error, "stages": rows, "parent_run_id": parent_id}
    if error:
        # The flow run ends Failed in the Prefect UI, with the message and no traceback.
        return Failed(message=error.splitlines()[0], data=CycleStopped(error, result))
    return result


class CycleStopped(RFTError):
    """The cycle stopped on a user-fixable error; ``result`` holds what ran."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def dvc_logs_once() -> None:
    """DVC prints its messages ("Updating lock file 'dvc.lock'") through handlers of its own, and they also
    reach the console handler Prefect puts on the root logger: each line came out twice. Inside the flow
    Prefect's alone prints them, timestamped like the flow's other lines."""
    import logging

    import dvc.repo  # noqa: F401  (DVC adds its handlers when it is imported)

    logging.getLogger("dvc").handlers.clear()


def stale_stages(names: list[str] | None = None) -> set[str]:
    """The stages ``dvc status`` reports stale, in one call over the graph (or over ``names``)."""
    from dvc.repo import Repo

    repo = Repo(".")
    try:
        return set(repo.status(targets=names) if names else repo.status())
    finally:
        repo.close()


class Staleness:
    """Which stages are stale, from one ``dvc status`` over the graph at the start of the cycle
    (``initially``), so that a stage asks DVC again only when it must: a stage ``dvc.lock`` has never recorded
    is stale; before any stage of this cycle ran, a stage is stale exactly when the first status said so; once
    one ran, its outputs may have changed what later stages read, and they ask ``dvc status`` themselves."""

    def __init__(self, names: list[str], initially: list[str] | None = None):
        import yaml

        lock = DVC_LOCK
        self.locked = set((yaml.safe_load(lock.read_text()) or {}).get("stages", {})) if lock.exists() else set()
        self.initially = set(initially) if initially is not None else \
            stale_stages([n for n in names if n in self.locked]) if self.locked else set()
        self.upstream_ran = False

    def stale(self, name: str) -> bool | None:
        """True or False when known without asking DVC; None: ask ``dvc status``."""
        if name not in self.locked:
            return True
        if not self.upstream_ran:
            return name in self.initially
        return None

    def ran(self, did: bool) -> None:
        self.upstream_ran = self.upstream_ran or did


def nothing_to_decide(params) -> str | None:
    """Why the gate would decide nothing about ``models/candidate`` (``tasks/promotion.py::not_this_cycles``),
    or None."""
    from mlflow import MlflowClient

    if not CANDIDATE.exists():
        return None
    tracking.setup(params.tracking)
    return not_this_cycles(MlflowClient(), read_meta(CANDIDATE).get("registry_version"), gate=gate_hash(params))


def run_cycle(params_path: str = "params.yaml") -> dict:
    """Run the flow and return its result dict, whether the cycle succeeded or stopped. A cycle with nothing
    to do (no stale stage, no candidate to decide) says why and returns at once: no Prefect flow run, no MLflow
    run."""

    params = load_params(params_path)
    recover_promotion(params, who="cycle")      # before DVC looks: a half-done promotion leaves the champion stale
    # Prefect's server boots on the other core while DVC looks for stale stages; stopped again if there is
    # nothing to do.
    server = temporary_server()
    stale = stale_stages() if DVC_LOCK.exists() else None
    reason = nothing_to_decide(params) if stale == set() else None
    if reason:
        if server is not None:
            server.stop()
        print(f"cycle: nothing to do. No stage is stale (dvc status); promote: nothing to decide: {reason}. "
              "No run was recorded.", flush=True)
        return {"ok": True, "noop": True, "error": None, "stages": [], "reason": reason}
    import contextlib

    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    tracking.setup(params.tracking)          # MLflow's import and store, while Prefect's server process starts
    if server is not None:
        server.wait()
    # The temporary server serves no UI (as Prefect's own): no "View at" link to a page that is not there.
    with (temporary_settings({PREFECT_API_URL: server.url, PREFECT_UI_URL: ""}) if server
          else contextlib.nullcontext()):
        state = cycle(params_path=params_path, initially=sorted(stale) if stale is not None else None,
                      return_state=True)
        outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, CycleStopped):
        return outcome.result
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


if __name__ == "__main__":
    import sys

    from tasks.lock import project_lock

    # As `rft cycle`: the project lock first, so that no recovery here finishes a promotion another writer is making.
    with project_lock("python -m flows.cycle", load_params("params.yaml").lock):
        sys.exit(0 if run_cycle().get("ok") else 2)

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

import io
import os
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.states import Completed, Failed

import tasks  # noqa: F401  (offline and no-telemetry defaults)
from tasks import iterations, provenance, tracking
from tasks.manifest import load_params
from tasks.errors import RFTError
from tasks.io import fsync_dir, fsync_file, read_jsonl, recover_all
from tasks.iterations import params_md5
from tasks.lock import project_lock
from tasks.paths import CANDIDATE, EVAL_METRICS, PROMPTS, REWARD
from tasks.policy import check_devices, read_meta
from tasks.preflight import check_servers
from tasks.promote import (
    clear_pending,
    gate_hash,
    not_this_cycles,
    promote,
    recover_promotion,
)
from tasks.redact import redact_text, redact_url
from tasks.rewardmodel import meta as reward_meta
from tasks.manifest import KEY_METRIC, STAGES
from tasks.stages import run_stage
from tasks.stages.common import flat_params

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
def stage_task(name: str, params_path: str, stale: bool | None = None) -> dict | Completed:
    """Run stage ``name`` if it is stale (``stale``: already known, else asked of ``dvc status``), then record
    it in ``dvc.lock``. An up-to-date stage ends in the state ``skipped()``."""
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
        metrics = run_stage(name, params)
        repo.commit(name, force=True)
        fsync_file("dvc.lock")
        fsync_dir(".")
        return {"stage": name, "status": "ran", "seconds": time.perf_counter() - start, "metrics": metrics,
                "params_md5": read}
    finally:
        repo.close()


@task(persist_result=False)
def promote_task(params_path: str, evaluated: bool = True) -> dict:
    start = time.perf_counter()
    result = promote(load_params(params_path), evaluated=evaluated)
    status = "promoted" if result["promoted"] else "kept champion" if result["decided"] else "nothing to decide"
    return {"stage": "promote", "status": status, "seconds": time.perf_counter() - start, "metrics": result}


def stage_row(name: str, state) -> dict:
    """A stage task's row of the summary from its final state; a failed stage raises its error."""
    if state.name == "Skipped":
        return {"stage": name, "status": "skipped", "seconds": 0.0, "metrics": {}}
    return state.result()


def summary_rows(rows: list[dict], winrate_source: str = "") -> list[dict]:
    """The summary's rows: stage, status, seconds, the stage's key metric and its output."""
    out = []
    for r in rows:
        key, out_path = KEY_METRIC.get(r["stage"], ("", ""))
        if key.endswith("*"):       # the family's member the gate reads (winrate_* -> winrate_truth), else the first
            gated = f"{key[:-1]}{winrate_source}"
            key = gated if gated in r["metrics"] else next(
                (k for k in r["metrics"] if k.startswith(key[:-1]) and "_ci_" not in k), key)
        value = r["metrics"].get(key)
        if r["stage"] == "promote":
            key, value, out_path = "policy_version", r["metrics"].get("policy_version"), "models/champion"
        shown = f"{key}={value:.4g}" if isinstance(value, float) else (f"{key}={value}" if value is not None else "")
        out.append({"stage": r["stage"], "status": r["status"], "time (s)": f"{r['seconds']:.1f}",
                    "key metric": shown, "output": out_path})
    return out


def summary_table(rows: list[dict], winrate_source: str = "") -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cycle summary")
    shown = summary_rows(rows, winrate_source)
    for col in ("stage", "status", "time (s)", "key metric", "output"):
        table.add_column(col)
    for r in shown:
        table.add_row(*r.values())
    buf = io.StringIO()
    Console(file=buf, width=120).print(table)
    return buf.getvalue()


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
        os.environ[tracking.PARENT_ENV] = parent.info.run_id
        os.environ[tracking.CYCLE_ENV] = f"cycle {iteration}"          # the stage runs' names start with it
        mlflow.log_params(flat_params(params))                 # the whole params.yaml, to compare
        mlflow.log_text(redact_text(Path(params_path).read_text()), "params.yaml")   # as loaded, for the record
        name = names[0]
        try:
            known = Staleness(names, initially)          # initially: the stale stages, if the caller asked DVC
            for name in names:
                state = stage_task.with_options(name=name)(name, params_path, known.stale(name), return_state=True)
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
                _record_iteration(params, iteration, client, parent.info.run_id, rows)
                name = "promote"
                row = promote_task(params_path, evaluated=any(r["stage"] == "evaluate" and r["status"] == "ran"
                                                              for r in rows))
                rows.append(row)
                promoted = bool(row["metrics"]["promoted"])
                if not promoted:        # a promotion tags the run itself, step by step (tasks/promote.py::finish)
                    mlflow.set_tags({"rft.promoted": "false", "rft.promotion_reason": row["metrics"]["reason"][:5000]})
                    mlflow.log_metric("promoted", 0.0)
        except RFTError as exc:
            error = redact_text(str(exc))                # a URL in a message keeps no credential
            rows.append({"stage": name, "status": "FAILED", "seconds": 0.0, "metrics": {}})
            mlflow.set_tag("rft.error", error[:5000])
        finally:
            os.environ.pop(tracking.PARENT_ENV, None)
            os.environ.pop(tracking.CYCLE_ENV, None)
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


def prefect_links() -> dict:
    """Tags of the MLflow parent run that lead to the Prefect flow run: its id, and its page where the server
    serves a UI."""
    from prefect.runtime import flow_run

    links = {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": str(flow_run.name)}
    if flow_run.ui_url:
        links["prefect.flow_run_url"] = flow_run.ui_url
    return links


# The MLflow 3.17 UI shows an experiment in its GenAI or its model-training view by a switch it keeps per browser
# (localStorage "mlflow.workflowType", GenAI when unset) and reads first from the page's ?workflowType=; the
# experiment's mlflow.experimentKind tag alone does not turn it (tests/test_mlflow_ui.py opens both pages).
TRAINING_VIEW = "workflowType=machine_learning"


def run_page(base: str, exp_id: str, run_id: str) -> str:
    """The page of MLflow run ``run_id`` of experiment ``exp_id`` on the MLflow UI at ``base``, in the UI's
    model-training view."""
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}?{TRAINING_VIEW}"


def ui_command(uri: str, port: str) -> str:
    """The command that serves the MLflow UI on a local store, runnable from the shell the user is in: the
    ``mlflow`` of this interpreter's environment, by a path relative to the working directory where it is
    inside it."""
    import sys

    exe = Path(sys.executable).parent / "mlflow"
    try:
        exe = exe.relative_to(Path.cwd())
    except ValueError:
        pass
    return f"{exe} ui --backend-store-uri {uri} --host 127.0.0.1 --port {port}"


def mlflow_ui_hint(uri: str, exp_id: str, run_id: str) -> str:
    """What to run, and where to look, to see the cycle's run: its page on a tracking server, or the command
    that serves the local store (port ``MLFLOW_PORT``, default 5000, as ``make mlflow-ui``) and the page."""
    uri = redact_url(uri)
    if uri.startswith(("http://", "https://")):
        return f"MLflow run: {run_page(uri, exp_id, run_id)}"
    port = os.environ.get("MLFLOW_PORT", "5000")
    return (f"MLflow UI: {ui_command(uri, port)}  (or: make mlflow-ui), then open "
            f"{run_page(f'http://127.0.0.1:{port}', exp_id, run_id)}")


def mlflow_link(params, exp_id: str, run_id: str) -> str:
    """Where the MLflow run is: a link to its page on a tracking server, else the command that serves the local
    store."""
    uri = params.tracking.uri
    if uri.startswith(("http://", "https://")):
        return f"[MLflow run {run_id}]({run_page(uri, exp_id, run_id)})"
    port = os.environ.get("MLFLOW_PORT", "5000")
    return (f"MLflow run `{run_id}` (`{ui_command(uri, port)}`, then "
            f"{run_page(f'http://127.0.0.1:{port}', exp_id, run_id)})")


def decision_markdown(iteration: int, rows: list[dict], params, exp_id: str, run_id: str, error: str | None) -> str:
    """The promotion decision as the flow run's markdown artifact: what was decided, why, on which figures."""
    promote = next((r for r in rows if r["stage"] == "promote"), None)
    evaluation = next((r["metrics"] for r in rows if r["stage"] == "evaluate" and r["metrics"]), {})
    if error:
        head, why = "stopped", error
    elif promote is None:
        head, why = "no decision", "the promote step did not run in this flow"
    else:
        m = promote["metrics"]
        head = f"promoted policy v{m.get('policy_version')}" if m["promoted"] else \
            "kept the champion" if m["decided"] else "nothing to decide"
        why = m["reason"]
    lines = [f"# Cycle {iteration}: {head}", "", why, ""]
    source = f"winrate_{params.promote.winrate_source}"
    if source in evaluation:
        low, high = (evaluation.get(f"{source}_ci_{end}", float("nan")) for end in ("low", "high"))
        lines += ["| figure | value |", "| --- | --- |",
                  f"| {source} | {evaluation[source]:.3f} (95% CI {low:.3f}–{high:.3f}) |"]
        lines += [f"| {k} | {evaluation[k]:.3f} |" for k in ("kl", "reward_mean", "distinct_2") if k in evaluation]
        lines.append("")
    lines.append(f"Recorded in {mlflow_link(params, exp_id, run_id)}.")
    return "\n".join(lines)


def publish_artifacts(iteration: int, rows: list[dict], params, exp_id: str, run_id: str, error: str | None) -> None:
    """The summary table and the promotion decision as artifacts of the Prefect flow run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(summary_rows(rows, params.promote.winrate_source), key="cycle-summary",
                          description=f"Cycle {iteration}: each stage, ran or skipped, its time and key figure.")
    create_markdown_artifact(decision_markdown(iteration, rows, params, exp_id, run_id, error),
                             key="promotion-decision",
                             description=f"Cycle {iteration}: the gate's decision.")


def _record_iteration(params, iteration: int, client, run_id: str, rows: list[dict]) -> None:
    """After the stages: the evaluation's figures on the parent run, the lineage tags both ways, then the
    iteration's outputs pushed and its dvc.lock committed (as params say) before promotion moves anything."""
    import json
    from pathlib import Path

    import mlflow

    evaluation = next((r["metrics"] for r in rows if r["stage"] == "evaluate" and r["metrics"]), None)
    if evaluation is None:          # evaluate was up to date: its figures are in its report

        evaluation = json.loads(EVAL_METRICS.read_text()) if EVAL_METRICS.exists() else {}
    mlflow.log_metrics({k: float(v) for k, v in evaluation.items() if isinstance(v, (int, float))})
    trained = next((r["metrics"] for r in rows if r["stage"] == "train_reward" and r["metrics"]), {})
    mlflow.log_metrics({f"reward_model.{k}": float(v) for k, v in trained.items()
                        if isinstance(v, (int, float)) and ("acc" in k or "loss" in k)})
    hashes = iterations.data_hashes()
    mlflow.set_tags({f"dvc.md5.{path}": md5 for path, md5 in hashes.items()})
    if PROMPTS.exists():            # which prompts this iteration's gate read as held out (tasks/provenance.py)
        record = provenance.split_record(read_jsonl(PROMPTS), params.prepare.salt, params.prepare.heldout_fraction)
        mlflow.log_dict(record, provenance.HELDOUT_ARTIFACT)
        mlflow.set_tags(provenance.split_tags(record))
    tracking.log_datasets(hashes, DATASETS)
    versions = {"policy": read_meta(CANDIDATE).get("registry_version") if CANDIDATE.exists() else None}
    if REWARD.exists():
        versions["reward-model"] = reward_meta(REWARD).get("registry_version")
    champion = read_meta(params.policy.champion_dir) if Path(params.policy.champion_dir).exists() else {}
    mlflow.set_tags({"rft.parent_version": str(champion.get("registry_version", "none")),
                     "rft.policy_version": str(versions["policy"]),
                     "rft.reward_model_version": str(versions.get("reward-model"))})
    iterations.tag_versions(client, iteration, run_id, versions)
    done = iterations.publish(params.promote, f"rft iteration {iteration}: outputs of cycle run {run_id}")
    if "commit" in done:
        mlflow.set_tag("rft.commit", done["commit"])


# The cycle's datasets on its MLflow parent run (``mlflow.log_input``), by context, with their DVC hashes.
DATASETS = {"data/prompts.jsonl": "prompts (train and held-out)", "data/labels.jsonl": "labels",
            "data/generations.jsonl": "generations", "data/eval.jsonl": "held-out evaluation"}


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

        lock = Path("dvc.lock")
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
    """Why the gate would decide nothing about ``models/candidate`` (``tasks/promote.py::not_this_cycles``),
    or None."""
    from mlflow import MlflowClient

    if not CANDIDATE.exists():
        return None
    tracking.setup(params.tracking)
    return not_this_cycles(MlflowClient(), read_meta(CANDIDATE).get("registry_version"), gate=gate_hash(params))


class TemporaryServer:
    """Prefect's temporary API server for one cycle where no ``PREFECT_API_URL`` is set.

    Prefect would start it itself at the flow's first API call, with the same command and environment as
    here, but only after importing its server module into this process (2.4 s on 2 cores) and then waiting
    for it (about 5 s). Started here, the process boots on another core while the cycle's own set-up runs;
    the flow then talks to it as to any server (``PREFECT_API_URL`` for the flow's duration). It stops at
    the process's exit, after Prefect's services have sent it their last logs and events."""

    def __init__(self):
        import atexit
        import sys

        import prefect
        from prefect.settings import get_current_settings

        self.env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                    "PREFECT__SERVER_FINAL": "1",
                    **get_current_settings().to_environment_variables(exclude_unset=True)}
        self.cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                    "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--log-level", "error",
                    "--lifespan", "on"]
        self._spawn()
        atexit.register(self.stop)
        # It keeps its runs in the database under PREFECT_HOME, ~/.prefect unless set: say where.
        print(f"Prefect: a temporary server for this cycle, its runs kept under {get_current_settings().home} "
              "(set PREFECT_HOME to move them; infra/prefect.sh runs a lasting server with a UI)", file=sys.stderr,
              flush=True)

    def _spawn(self) -> None:
        import socket
        import subprocess

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        # Its output is the console's, as with Prefect's own start: an error it prints is seen.
        self.proc = subprocess.Popen([*self.cmd, "--port", str(self.port)], env=self.env)

    def wait(self, say_after: float = 5.0) -> None:
        """Until the server answers its health check, for as long as its process is alive and starting, up to
        ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (600 s unless set: ``tasks/__init__.py``). A fresh
        ``PREFECT_HOME`` first migrates its database, 45 s on a slow CPU: after ``say_after`` seconds one line
        says what the cycle waits for. An error naming what went wrong if the process dies or the bound passes."""
        import sys

        import httpx
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        start = time.monotonic()
        deadline = start + PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        said = False
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                if not said and time.monotonic() - start >= say_after:
                    said = True
                    print(f"Prefect: waiting for its temporary server to start (a new PREFECT_HOME first sets up "
                          f"its database; up to {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value():.0f} s)",
                          file=sys.stderr, flush=True)
                code = self.proc.poll()
                if code == 3:                    # uvicorn: the port was taken meanwhile; another one
                    self._spawn()
                    continue
                if code is not None:
                    raise RFTError(f"Prefect's temporary server exited with status {code} (its messages are "
                                   "above); set PREFECT_API_URL to a running server (infra/prefect.sh), or fix "
                                   "what it says")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RFTError(f"Prefect's temporary server did not answer {self.url}/health within "
                       f"{PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()} s (set PREFECT_API_URL to a "
                       "running server: infra/prefect.sh)")

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_SERVER: list[TemporaryServer] = []      # one per process, as Prefect keeps its own


def _temporary_server() -> TemporaryServer | None:
    """The process's temporary server, started now if it is not running; None with ``PREFECT_API_URL`` set.
    It stops when the process exits (after Prefect has sent its last logs to it)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    if not _SERVER or _SERVER[0].proc.poll() is not None:
        _SERVER[:] = [TemporaryServer()]
    return _SERVER[0]


def run_cycle(params_path: str = "params.yaml") -> dict:
    """Run the flow and return its result dict, whether the cycle succeeded or stopped. A cycle with nothing
    to do (no stale stage, no candidate to decide) says why and returns at once: no Prefect flow run, no MLflow
    run."""

    params = load_params(params_path)
    recover_promotion(params, who="cycle")      # before DVC looks: a half-done promotion leaves the champion stale
    # Prefect's server boots on the other core while DVC looks for stale stages; stopped again if there is
    # nothing to do.
    server = _temporary_server()
    stale = stale_stages() if Path("dvc.lock").exists() else None
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

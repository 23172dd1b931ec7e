"""The ``retrain`` flow: what a schedule runs. Take the new data, run a cycle from the current champion (which
validates the data, trains, evaluates and promotes or not), and record the iteration.

``rft deploy`` deploys it to a Prefect server with the cron schedule, the overlap rule (a deployment concurrency
limit of one: a run due while another runs is cancelled or queued) and the work pool of ``params.yaml``'s
``retrain`` section, and an automation that notifies the webhook ``retrain.notify_webhook_env`` names through a
Prefect notification block when a deployed run fails or crashes; ``rft retrain`` runs it once, here, and its
failure hook sends the same notice.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.cycle import CycleStopped, cycle, flow_command
from tasks.errors import RFTError
from tasks.lock import project_lock
from tasks.manifest import load_params
from tasks.preflight import check_servers, prefect_api_url
from tasks.retrain import fetch, notify, webhook_block, webhook_name

ENTRYPOINT = "flows/retrain.py:retrain"


class RetrainFailed(RFTError):
    """The retrain run's cycle stopped; the message says why."""


@task(persist_result=False)
def fetch_task(params_path: str) -> list[str]:
    written = fetch(load_params(params_path).retrain)
    get_run_logger().info(f"new data: {', '.join(written) if written else 'none (retrain.source: none)'}")
    return written


def failure_subject() -> str:
    return "rft retrain failed"


def _notify(flow_, flow_run, state) -> None:
    """Flow hook on failure or crash of a run in place (``rft retrain``). A deployed run is watched by the
    automation ``rft deploy`` created, which notifies through the same block: no second notice."""

    if flow_run.deployment_id is not None:
        return
    params_path = (flow_run.parameters or {}).get("params_path", "params.yaml")
    try:
        cfg = load_params(params_path).retrain
    except RFTError:
        return                       # params unreadable: the run's own message says so
    body = f"flow run {flow_run.name} ({flow_run.id}) ended {state.name}: {state.message or ''}"
    try:
        if notify(cfg, failure_subject(), body):
            get_run_logger().info(f"failure notice sent to {webhook_name(cfg)}")
    except RFTError as exc:
        get_run_logger().warning(f"failure notice not delivered: {exc}")


@flow(name="rft-retrain", on_failure=[_notify], on_crashed=[_notify])
def retrain(params_path: str = "params.yaml") -> dict:
    """Take the new data, run a cycle, promote or not; fail (and notify) when the cycle stops."""

    params = load_params(params_path)
    # The whole run holds the project (the fetch writes data/incoming/); its cycle takes the lock again.
    with project_lock(flow_command("rft-retrain"), params.lock):
        return _retrain(params, params_path)


def _retrain(params, params_path: str) -> dict:
    check_servers(params.tracking.uri, prefect=False)
    fetched = fetch_task(params_path)
    state = cycle(params_path=params_path, return_state=True)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, CycleStopped):
        raise RetrainFailed(f"the cycle stopped: {outcome}")
    if isinstance(outcome, BaseException):
        raise outcome
    promoted = next((r["metrics"] for r in outcome["stages"] if r["stage"] == "promote"), {})
    return {"fetched": fetched, "parent_run_id": outcome["parent_run_id"], "promoted": promoted.get("promoted"),
            "reason": promoted.get("reason")}


def ensure_work_pool(client, name: str) -> None:
    """Create the ``process`` work pool ``name`` unless it exists. A worker started with ``--type process`` may create
    the same pool between the read and the create; that is success, not an error."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        client.read_work_pool(name)
    except ObjectNotFound:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass


def deploy(params_path: str = "params.yaml") -> str:
    """Deploy ``retrain`` from this folder to the Prefect server at ``PREFECT_API_URL``: schedule, overlap rule and
    work pool from ``params.yaml``. Creates the work pool (type process) when missing. Returns the deployment id."""
    from pathlib import Path

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    params = load_params(params_path)
    cfg = params.retrain
    if not prefect_api_url():
        raise RFTError("rft deploy needs a Prefect server: start one (infra/prefect.sh server) and "
                       "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    check_servers(params.tracking.uri)
    with get_client(sync_client=True) as client:
        ensure_work_pool(client, cfg.work_pool)
    strategy = {"skip": ConcurrencyLimitStrategy.CANCEL_NEW, "queue": ConcurrencyLimitStrategy.ENQUEUE}[cfg.overlap]
    deployment_id = retrain.from_source(source=str(Path.cwd()), entrypoint=ENTRYPOINT).deploy(
        name=cfg.deployment, work_pool_name=cfg.work_pool,
        schedules=[Cron(cfg.cron, timezone=cfg.timezone)] if cfg.cron else [],
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=strategy),
        parameters={"params_path": params_path}, build=False, push=False, print_next_steps=False, ignore_warnings=True,
        description="Scheduled retraining: new data, a cycle from the champion, promotion or not (rft).")
    with get_client(sync_client=True) as client:
        ensure_failure_automation(client, cfg, deployment_id)
    return str(deployment_id)


def ensure_failure_automation(client, cfg, deployment_id) -> str | None:
    """The automation that notifies the webhook ``retrain.notify_webhook_env`` names (through the notification
    block ``webhook_block``, saved on the server with the URL as its secret) when a run of the deployment fails or
    crashes. Replaces the one an earlier deploy made; removes it when no webhook is set. Returns the automation's
    name, or None."""
    from prefect.automations import AutomationCore
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    name = f"rft-retrain failed ({cfg.deployment})"
    for old in client.read_automations_by_name(name):
        client.delete_automation(old.id)
    if not cfg.notify_webhook_env:
        return None
    slug = "".join(c if c.isalnum() else "-" for c in cfg.deployment.lower())
    block_id = webhook_block(cfg).save(f"rft-retrain-{slug}-failure", overwrite=True)
    client.create_automation(AutomationCore(
        name=name, description="rft: tell the webhook in retrain.notify_webhook_env when a scheduled retrain run "
                               "fails or crashes.",
        trigger=EventTrigger(expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                             match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
                             posture=Posture.Reactive, threshold=1, within=0),
        actions=[SendNotification(
            block_document_id=block_id, subject=failure_subject(),
            body="flow run {{ flow_run.name }} ({{ flow_run.id }}) ended {{ flow_run.state.name }}: "
                 "{{ flow_run.state.message }}")]))
    return name

"""Waiting for people: the Prefect flow pauses; ``dvc repro`` polls or stops with how to resume.

Inside a Prefect flow run the stage calls ``pause_flow_run(wait_for_input=...)``:
the run shows as *Paused* in the Prefect UI, where a person can resume it and
type a note. A watcher thread checks the progress every ``label.poll_s`` and
resumes the run itself when the share of done tasks reaches
``label.completion``, or when ``label.timeout_s`` has passed. A server that
is restarting (unreachable, or answering 429/5xx) is logged and checked again
with capped backoff for as long as the wait lasts; any other error resumes the
run and fails the stage with its message. Outside Prefect
(``dvc repro``, ``rft stage label``), ``label.wait: poll`` waits in the same
way and prints a progress line; ``label.wait: stop`` stops at once with
:class:`LabelsPending`, whose message says where to label and how to resume.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Callable

from tasks.errors import RFTError, TransientError
from tasks.retry import backoff_delay

Progress = Callable[[], tuple[int, int]]      # () -> (done tasks, all tasks)


class LabelsPending(RFTError):
    """People have not finished labelling and ``label.wait`` is ``stop``: rerun once they have."""


def needed(total: int, completion: float) -> int:
    """Tasks that must be done: ``ceil(completion * total)``, at least 1. 10 tasks at 0.75 -> 8."""
    import math

    return max(1, math.ceil(completion * total - 1e-9))


def _in_flow_run() -> bool:
    try:
        from prefect.context import FlowRunContext
    except ImportError:
        return False
    return FlowRunContext.get() is not None


def wait_for_people(progress: Progress, cfg, where: str, log: Callable[[str], None] = print) -> dict:
    """Wait until ``label.completion`` of the tasks are done or ``label.timeout_s`` passes.

    Returns ``{"outcome": complete | timeout | resumed, "waited_s": ..., "note": ...}``.
    """
    done, total = progress()
    need = needed(total, cfg.completion)
    if done >= need:
        return {"outcome": "complete", "waited_s": 0.0, "note": ""}
    if _in_flow_run():
        return _pause_flow(progress, need, cfg, where, log)
    if cfg.wait == "stop":
        raise LabelsPending(f"label: {done} of {total} tasks labelled ({need} needed, label.completion "
                            f"{cfg.completion:g}). Label them at {where}, then run the stage again (dvc repro, or "
                            "rft cycle): the project and its annotations are reused, nothing is imported twice.")
    return _poll(progress, need, cfg, where, log)


# A failed progress check is tried again after min(poll_s, FIRST_RETRY_S), doubling up to tasks/retry.py's cap.
FIRST_RETRY_S = 5.0


def _watch(progress: Progress, need: int, cfg, stop: threading.Event, log, on_done=None,
           counts: dict | None = None) -> str | None:
    """Check ``progress`` every ``poll_s`` until ``need`` tasks are done or ``timeout_s`` passes: the outcome
    (None when ``stop`` was set). A server that fails in a way that may pass (:class:`TransientError`: it is
    restarting) is logged and checked again with capped backoff, for as long as the wait lasts; ``counts``
    gets the number of such failures under ``failures``."""

    deadline = time.monotonic() + cfg.timeout_s
    last = None
    failures = 0                         # in a row
    counts = counts if counts is not None else {}
    while True:
        try:
            done, total = progress()
        except TransientError as exc:
            counts["failures"] = counts.get("failures", 0) + 1
            delay = backoff_delay(min(cfg.poll_s, FIRST_RETRY_S), failures)
            failures += 1
            log(f"label: {exc}; checking again in {delay:.3g} s (failure {failures} in a row)")
            if time.monotonic() >= deadline:
                outcome = "timeout"
                break
            if stop.wait(min(delay, max(0.0, deadline - time.monotonic()))):
                return None
            continue
        if failures:
            log(f"label: the server answers again after {failures} failed check(s)")
            failures = 0
        if done != last:
            log(f"label: {done}/{total} tasks done, {need} needed")
            last = done
        if done >= need:
            outcome = "complete"
            break
        if time.monotonic() >= deadline:
            outcome = "timeout"
            break
        if stop.wait(min(cfg.poll_s, max(0.0, deadline - time.monotonic()))):
            return None
    if on_done is not None:
        on_done(outcome)
    return outcome


def _poll(progress: Progress, need: int, cfg, where: str, log) -> dict:
    log(f"label: waiting for people at {where} (up to {cfg.timeout_s:g} s)")
    t0 = time.monotonic()
    counts: dict = {}
    outcome = _watch(progress, need, cfg, threading.Event(), log, counts=counts)
    return {"outcome": outcome, "waited_s": time.monotonic() - t0, "note": "", "failures": counts.get("failures", 0)}


def _pause_flow(progress: Progress, need: int, cfg, where: str, log) -> dict:
    from prefect.context import FlowRunContext
    from prefect.flow_runs import pause_flow_run, resume_flow_run
    from prefect.input import RunInput

    class ResumeNote(RunInput):
        note: str = ""

    flow_run_id = FlowRunContext.get().flow_run.id
    result: dict = {}
    counts: dict = {}
    stop = threading.Event()

    def resume(outcome: str) -> None:
        result["outcome"] = outcome
        resume_flow_run(flow_run_id, run_input={"note": f"resumed by the label stage: {outcome}"})

    def watch() -> None:
        # An error the watcher cannot wait out (a refused token, a bug) must not die with its thread, leaving the
        # run paused until Prefect's timeout: it resumes the run, and the stage raises it.
        try:
            _watch(progress, need, cfg, stop, log, resume, counts)
        except Exception as exc:  # noqa: BLE001 - raised again in the stage's own thread below
            result["error"] = exc
            resume_flow_run(flow_run_id, run_input={"note": f"resumed by the label stage: it failed: {exc}"})

    watcher = threading.Thread(target=watch, daemon=True)
    log(f"label: pausing the flow run while people label at {where}; it resumes by itself when "
        f"{need} tasks are done or after {cfg.timeout_s:g} s, or from the Prefect UI")
    t0 = time.monotonic()
    watcher.start()
    try:
        answer = pause_flow_run(wait_for_input=ResumeNote, timeout=int(cfg.timeout_s) + 120,
                                poll_interval=max(1, int(min(cfg.poll_s, 10))), key=f"label-{uuid.uuid4().hex[:8]}")
    finally:
        stop.set()
        watcher.join(timeout=30)
    if "error" in result:
        raise result["error"]
    note = getattr(answer, "note", "") or ""
    return {"outcome": result.get("outcome", "resumed"), "waited_s": time.monotonic() - t0, "note": note,
            "failures": counts.get("failures", 0)}

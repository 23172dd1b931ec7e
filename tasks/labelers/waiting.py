"""Waiting for people: the Prefect flow pauses; ``dvc repro`` polls or stops with how to resume.

Inside a Prefect flow run the stage calls ``pause_flow_run(wait_for_input=...)``:
the run shows as *Paused* in the Prefect UI, where a person can resume it and
type a note. A watcher thread checks the progress every ``label.poll_s`` and
resumes the run itself when the share of done tasks reaches
``label.completion``, or when ``label.timeout_s`` has passed. Outside Prefect
(``dvc repro``, ``rft stage label``), ``label.wait: poll`` waits in the same
way and prints a progress line; ``label.wait: stop`` stops at once with
:class:`LabelsPending`, whose message says where to label and how to resume.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Callable

from tasks.errors import RFTError

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


def _watch(progress: Progress, need: int, cfg, stop: threading.Event, log, on_done=None) -> str | None:
    deadline = time.monotonic() + cfg.timeout_s
    last = None
    while True:
        done, total = progress()
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
    outcome = _watch(progress, need, cfg, threading.Event(), log)
    return {"outcome": outcome, "waited_s": time.monotonic() - t0, "note": ""}


def _pause_flow(progress: Progress, need: int, cfg, where: str, log) -> dict:
    from prefect.context import FlowRunContext
    from prefect.flow_runs import pause_flow_run, resume_flow_run
    from prefect.input import RunInput

    class ResumeNote(RunInput):
        note: str = ""

    flow_run_id = FlowRunContext.get().flow_run.id
    result: dict = {}
    stop = threading.Event()

    def resume(outcome: str) -> None:
        result["outcome"] = outcome
        resume_flow_run(flow_run_id, run_input={"note": f"resumed by the label stage: {outcome}"})

    watcher = threading.Thread(target=_watch, args=(progress, need, cfg, stop, log, resume), daemon=True)
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
    note = getattr(answer, "note", "") or ""
    return {"outcome": result.get("outcome", "resumed"), "waited_s": time.monotonic() - t0, "note": note}

"""Kill points: named places where a test can SIGKILL the process, to check what a crash there leaves behind.

``RFT_KILL_AT=<name>`` in a process's environment kills it (``SIGKILL``, as a power cut or the OOM killer would:
no ``finally``, no ``atexit``) when it reaches ``kill_point(<name>)``. The test starts the command in a session of
its own, so the kill takes the process group: the command and the servers it started. Unset, a kill point is one
dictionary lookup. Promotion has one after each of its steps (``tasks/promotion.py``), so a test trips each step
boundary on an event rather than after a sleep that a fast machine outruns.
"""

from __future__ import annotations

import os
import signal
import sys

KILL_ENV = "RFT_KILL_AT"


def kill_point(name: str) -> None:
    """SIGKILL this process (and its group, when it leads one) if ``RFT_KILL_AT`` names this point."""
    if os.environ.get(KILL_ENV) != name:          # set only by the crash tests (tests/test_crash.py)
        return
    print(f"{KILL_ENV}={name}: killing the process here", file=sys.stderr, flush=True)
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)

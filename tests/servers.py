"""Real servers for the tests: started from infra/ scripts on free loopback ports, stopped with their children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start(cmd: list[str], env: dict, health: str | None, log: Path, timeout: float = 180.0, cwd=None):
    """Start ``cmd`` in its own process group (output to ``log``); wait until ``health`` answers 200."""
    fh = open(log, "w")
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while health is not None:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[1] if len(cmd) > 1 else cmd[0]} exited ({proc.returncode}); see {log}")
        if answers(health):
            break
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{health} did not answer within {timeout:.0f} s; see {log}")
        time.sleep(0.5)
    return proc


def stop(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

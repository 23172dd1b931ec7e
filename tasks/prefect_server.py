"""Prefect's temporary API server for one cycle, started by the cycle itself where no ``PREFECT_API_URL`` is
set (``flows/cycle.py::run_cycle``)."""

from __future__ import annotations

import os
import time

from tasks.errors import RFTError


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

        # The server process gets this one's environment (PREFECT_HOME, the user's Prefect settings), as Prefect's own.
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
        ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (600 s unless set: ``tasks/runtime.py``). A fresh
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


def temporary_server() -> TemporaryServer | None:
    """The process's temporary server, started now if it is not running; None with ``PREFECT_API_URL`` set.
    It stops when the process exits (after Prefect has sent its last logs to it)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    if not _SERVER or _SERVER[0].proc.poll() is not None:
        _SERVER[:] = [TemporaryServer()]
    return _SERVER[0]

"""A real Label Studio server for the tests, started by ``infra/label_studio.sh`` on a free loopback port.

Its virtualenv is cached in ``~/.cache/rft`` (the script's default), so only the
first run on a machine installs it. Each test session gets a fresh data folder.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = secrets.token_hex(20)          # the test server's throwaway credentials, new each session
PASSWORD = secrets.token_urlsafe(12)
USERNAME = "admin@rft.local"


@dataclass
class Server:
    url: str
    token: str
    username: str
    password: str
    data: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data: Path, timeout: float = 300.0):
    """(process, Server) once the server answers /health."""
    subprocess.run(["bash", str(ROOT / "infra/label_studio.sh"), "install"], check=True, timeout=900)
    port = free_port()
    env = {**os.environ, "LS_PORT": str(port), "LS_DATA": str(data), "LABEL_STUDIO_API_KEY": TOKEN,
           "LS_PASSWORD": PASSWORD, "LS_USERNAME": USERNAME}
    log = open(data.parent / "label-studio.log", "w")
    proc = subprocess.Popen(["bash", str(ROOT / "infra/label_studio.sh"), "start"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Label Studio exited ({proc.returncode}); see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, Server(url, TOKEN, USERNAME, PASSWORD, data)
        except OSError:
            pass
        time.sleep(1)
    stop(proc)
    raise RuntimeError(f"Label Studio did not answer within {timeout:.0f} s; see {log.name}")


def stop(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)

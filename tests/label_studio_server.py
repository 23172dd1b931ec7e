"""A real Label Studio server for the tests, started by ``infra/label_studio.sh`` on a free loopback port.

Its virtualenv is cached in ``~/.cache/rft`` (the script's default), so only the
first run on a machine installs it. Each test session gets a fresh data folder.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import servers
from servers import free_port

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


def start(data: Path, timeout: float = 300.0):
    """(process, Server) once the server answers /health."""
    subprocess.run(["bash", str(ROOT / "infra/label_studio.sh"), "install"], check=True, timeout=900)
    port = free_port()
    env = {"LS_PORT": str(port), "LS_DATA": str(data), "LABEL_STUDIO_API_KEY": TOKEN,
           "LS_PASSWORD": PASSWORD, "LS_USERNAME": USERNAME}
    url = f"http://127.0.0.1:{port}"
    try:
        proc = servers.start(["bash", str(ROOT / "infra/label_studio.sh"), "start"], env, f"{url}/health",
                             data.parent / "label-studio.log", timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"Label Studio: {exc}") from None
    return proc, Server(url, TOKEN, USERNAME, PASSWORD, data)


stop = servers.stop

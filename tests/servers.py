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


class Proxy:
    """A TCP proxy on a loopback port to ``target`` (host, port) that can go down and come back on the same
    port: what a client sees of a server that restarts (connections refused, open ones cut, then answers again)."""

    def __init__(self, target: tuple[str, int]):
        import threading

        self.target, self.port = target, free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Stop listening and cut every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._open = self._open, []
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)     # wakes the accept() of the other thread; close() alone does not
            except OSError:
                pass
            listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return                                  # closed by down()
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

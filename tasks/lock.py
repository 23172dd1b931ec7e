"""One writer at a time: the project lock.

Every command that writes the project (``rft cycle``, ``rft stage``, ``rft retrain``, ``rft gc``,
``rft keep-trained``) and every flow run (the ``rft-cycle`` and ``rft-retrain`` flows, which a deployment's worker
runs without the CLI) holds one lock per project: ``fcntl.flock`` on ``.dvc/tmp/rft.lock``. They share
``models/candidate``, ``dvc.lock``, the swap recovery and the iteration numbers, so two of them at once lose or
corrupt data.

A second writer waits (``lock.on_busy: wait``, up to ``lock.wait_s``, saying who holds it every
``lock.say_every_s``) or stops at once with exit 2 (``fail``); either way the message names the holder's pid,
command and start time, which the holder writes into the lock file. A ``dvc`` command in the project (``dvc repro``
holds DVC's own lock, ``.dvc/tmp/lock``, for its whole run) counts as a holder too, except for the ``rft stage``
commands that ``dvc repro`` itself runs (``DVC_STAGE`` is set for them).

The kernel drops a flock when its process dies, however it dies, so a killed holder never blocks anyone. It leaves
its record in the file, though (a holder that ends clears it): the next writer finds it, says that it takes over
the lock of a process that is gone, and goes on.

The lock is re-entrant within a process: the CLI takes it, and the flow that the CLI runs takes it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tasks.errors import RFTError

try:
    import fcntl
except ImportError:          # pragma: no cover - Windows has no flock; the project runs on Linux and macOS
    fcntl = None


class ProjectBusy(RFTError):
    """Another writer holds the project; the message names it."""


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    started: float            # seconds since the epoch
    host: str = ""

    def describe(self, now: float | None = None) -> str:
        when = datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        age = _duration((now if now is not None else time.time()) - self.started)
        host = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"pid {self.pid}{host} ({self.command}), since {when} ({age} ago)"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def lock_file(root: str | Path = ".") -> Path:
    """Where the project lock lives: under DVC's scratch folder (git-ignored by DVC), or beside params.yaml in a
    folder that is not (yet) a DVC project."""
    root = Path(root)
    return root / ".dvc" / "tmp" / "rft.lock" if (root / ".dvc").is_dir() else root / ".rft.lock"


def read_holder(text: str) -> Holder | None:
    """The holder record of a lock file's text; None when empty (released) or unreadable (being written)."""
    try:
        row = json.loads(text)
        return Holder(int(row["pid"]), str(row["command"]), float(row["started"]), str(row.get("host", "")))
    except (ValueError, KeyError, TypeError):
        return None


def _record(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _write_record(fd: int, holder: Holder | None) -> None:
    os.ftruncate(fd, 0)
    if holder is not None:
        os.pwrite(fd, json.dumps({"pid": holder.pid, "command": holder.command, "started": holder.started,
                                  "host": holder.host}).encode(), 0)
        os.fsync(fd)


def _dvc_holder(root: Path) -> Holder | None:
    """A dvc command holding DVC's lock in this project (``dvc repro`` does for its whole run), else None.

    DVC locks ``.dvc/tmp/lock`` with flock (zc.lockfile) and writes its pid into it; a try that gets the lock
    drops it at once."""
    path = root / ".dvc" / "tmp" / "lock"
    if fcntl is None or not path.is_file():
        return None
    with open(path, "rb") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fh.read().decode("utf-8", "replace").strip()
            pid = int(text) if text.isdigit() else -1
            started = path.stat().st_mtime
            return Holder(pid, "a dvc command, e.g. dvc repro: it holds .dvc/tmp/lock", started)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


# The lock files this process holds (the outermost holder releases them)
_HELD: set[str] = set()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def project_lock(command: str, cfg, *, root: str | Path = ".", say: Callable[[str], None] = _say,
                 poll_s: float = 0.5) -> Iterator[Path]:
    """Hold the project lock for ``command`` (how the holder is named to others), with ``cfg`` the ``lock``
    section of params.yaml. Raises ProjectBusy when another writer holds it and ``cfg.on_busy`` is ``fail``, or
    after ``cfg.wait_s`` seconds of waiting."""
    root = Path(root)
    path = lock_file(root)
    key = str(path.resolve())
    if key in _HELD:                                   # this process holds it already (the CLI, then its flow)
        yield path
        return
    if fcntl is None:                                  # pragma: no cover
        raise ProjectBusy("the project lock needs fcntl.flock (Linux or macOS)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    under_dvc = bool(os.environ.get("DVC_STAGE"))      # a stage that `dvc repro` runs: DVC's lock is its parent's
    start = time.monotonic()
    said = start
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_holder(_record(fd)) or Holder(-1, "another rft command (its record is being written)",
                                                            time.time())
            else:
                holder = None if under_dvc else _dvc_holder(root)
                if holder is None:
                    break
                fcntl.flock(fd, fcntl.LOCK_UN)
            waited = time.monotonic() - start
            if cfg.on_busy == "fail":
                raise ProjectBusy(f"{path}: the project is busy: {holder.describe()} holds it. One writer at a "
                                  f"time; lock.on_busy: fail. Run again when it has ended, or set lock.on_busy: "
                                  f"wait.")
            if waited >= cfg.wait_s:
                raise ProjectBusy(f"{path}: waited {_duration(waited)} (lock.wait_s) for the project, and "
                                  f"{holder.describe()} still holds it. Run again when it has ended.")
            if time.monotonic() - said >= cfg.say_every_s or said == start:
                say(f"{command}: waiting for the project lock ({path}): {holder.describe()} holds it; "
                    f"waited {_duration(waited)} of at most {_duration(cfg.wait_s)} (lock.wait_s)")
                said = time.monotonic()
            time.sleep(min(poll_s, max(0.01, cfg.wait_s - waited)))
        left = read_holder(_record(fd))
        if left is not None:
            say(f"{command}: took over the project lock ({path}) of {left.describe()}: that process ended without "
                "releasing it (killed?). Interrupted work is recovered as usual.")
        _write_record(fd, Holder(os.getpid(), command, time.time(), socket.gethostname()))
        _HELD.add(key)
        try:
            yield path
        finally:
            _HELD.discard(key)
            _write_record(fd, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

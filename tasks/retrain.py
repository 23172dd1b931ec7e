"""The retrain flow's own steps: take the new data, and tell someone when a run fails.

``fetch`` brings the files ``retrain`` names into ``data/incoming/`` (the
folder every stage that reads user data depends on, so DVC sees the change and
the cycle reruns what it feeds). Each file is written beside its target and
renamed into place: a failed or killed download never leaves half a file.
Downloads and ``dvc pull`` retry with backoff on I/O errors; a missing folder,
a 404 or a bad name fail at once with a message that names them.

``notify`` POSTs a JSON notice to ``retrain.notify_webhook``; its body has a
``text`` field, so a Slack or Mattermost incoming webhook shows it as is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tasks.config import INCOMING, RetrainConfig
from tasks.errors import RFTError
from tasks.io import atomic_path


class FetchError(RFTError):
    """The new data could not be taken; the message names the source."""


def _retrying(cfg: RetrainConfig, what: str, fn):
    """Call ``fn`` with up to ``cfg.max_retries`` retries on I/O errors (doubling backoff); others raise at once."""
    for attempt in range(cfg.max_retries + 1):
        try:
            return fn()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:      # 4xx: the same request fails the same way again
                raise FetchError(f"{what}: HTTP {exc.code} {exc.reason}") from None
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
                raise FetchError(f"{what}: {exc}") from None
            problem = str(getattr(exc, "reason", exc))
        if attempt == cfg.max_retries:
            raise FetchError(f"{what}: failed after {cfg.max_retries} retries ({problem})")
        time.sleep(cfg.backoff * 2 ** attempt)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def _download(url: str, dest: Path, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            shutil.copyfileobj(resp, fh)


def fetch(cfg: RetrainConfig, incoming: str | Path = INCOMING) -> list[str]:
    """Bring the configured files into ``incoming``; return the paths written (or pulled)."""
    incoming = Path(incoming)
    if cfg.source == "none":
        return []
    if cfg.source == "folder":
        folder = Path(cfg.path)
        if not folder.is_dir():
            raise FetchError(f"retrain.path: {folder} is not a folder")
        names = list(cfg.files) or sorted(p.name for p in folder.glob("*.jsonl"))
        if not names:
            raise FetchError(f"retrain.path: {folder} has no *.jsonl file (and retrain.files names none)")
        written = []
        for name in names:
            src = folder / name
            if not src.is_file():
                raise FetchError(f"retrain.files: {src} does not exist")
            _retrying(cfg, f"copy {src}", lambda src=src, name=name: _copy(src, incoming / name))
            written.append(str(incoming / name))
        return written
    if cfg.source == "url":
        written = []
        for name in cfg.files:
            url = f"{cfg.path.rstrip('/')}/{name}"
            _retrying(cfg, f"download {url}", lambda url=url, name=name: _download(url, incoming / name, cfg.timeout))
            written.append(str(incoming / name))
        return written
    if cfg.source == "dvc":
        def pull():
            proc = subprocess.run([sys.executable, "-m", "dvc", "pull", *cfg.files], capture_output=True, text=True)
            if proc.returncode != 0:
                message = (proc.stderr or proc.stdout).strip()[-800:]
                if "does not exist" in message or "is not tracked" in message or "not found" in message:
                    raise FetchError(f"dvc pull {' '.join(cfg.files)}: {message}")
                raise ConnectionError(message)
        _retrying(cfg, f"dvc pull {' '.join(cfg.files)}", pull)
        return list(cfg.files)
    raise FetchError(f"retrain.source: unknown source {cfg.source!r}")   # unreachable: params are validated


def notify(cfg: RetrainConfig, event: dict) -> bool:
    """POST ``event`` (plus a one-line ``text``) to ``cfg.notify_webhook``; True when it was delivered."""
    if not cfg.notify_webhook:
        return False
    body = {"text": f"rft retrain {event.get('flow_run', '')}: {event.get('state', '')} - "
                    f"{event.get('message', '')}"[:3000], **event}
    data = json.dumps(body).encode()

    def post():
        req = urllib.request.Request(cfg.notify_webhook, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=cfg.timeout) as resp:
            return resp.status

    _retrying(cfg, f"notify {cfg.notify_webhook}", post)
    return True

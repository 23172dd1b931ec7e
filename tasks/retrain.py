"""The retrain flow's own steps: take the new data, and tell someone when a run fails.

``fetch`` brings the files ``retrain`` names into ``data/incoming/`` (the
folder every stage that reads user data depends on, so DVC sees the change and
the cycle reruns what it feeds). Each file is written beside its target and
renamed into place: a failed or killed download never leaves half a file.
Downloads and ``dvc pull`` retry with backoff on I/O errors; a missing folder,
a 404 or a bad name fail at once with a message that names them.

Failure notices go through a Prefect notification block (``webhook_block``: a
Custom Webhook that POSTs JSON with a ``text`` field, so a Slack or Mattermost
incoming webhook shows it as is) to the URL in the environment variable that
``retrain.notify_webhook_env`` names (never the URL itself). A deployed run
is watched by the Prefect automation that ``rft deploy`` creates (it fires on
the server, even when the run's process was killed); a run in place
(``rft retrain``) sends the notice from its flow's failure hook (``notify``).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tasks.config import INCOMING, RetrainConfig
from tasks.errors import RFTError
from tasks.io import atomic_path
from tasks.redact import redact_url
from tasks.retry import backoff_delay


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
            if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)) or exc.errno == errno.ELOOP:
                raise FetchError(f"{what}: {exc}") from None
            problem = str(getattr(exc, "reason", exc))
        if attempt == cfg.max_retries:
            raise FetchError(f"{what}: failed after {cfg.max_retries} retries ({problem})")
        time.sleep(backoff_delay(cfg.backoff, attempt))


def _capped_copy(src, fh, limit: int, what: str) -> None:
    """Copy the stream ``src`` into ``fh``; a stream longer than ``limit`` bytes stops the copy (FetchError)."""
    done = 0
    while chunk := src.read(1 << 20):
        done += len(chunk)
        if done > limit:
            raise FetchError(f"{what}: larger than retrain.max_file_mb ({limit / 2 ** 20:g} MB); nothing was taken")
        fh.write(chunk)


def _copy(src: Path, dest: Path, limit: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a link swapped in after the check below is refused by the open itself.
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fin, atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        _capped_copy(fin, fh, limit, f"retrain.path: {src}")


def _download(url: str, dest: Path, timeout: float, limit: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            _capped_copy(resp, fh, limit, f"download {redact_url(url)}")


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
        limit = int(cfg.max_file_mb * 2 ** 20)
        for name in names:
            src = folder / name
            # A drop folder is written by others: a link could hand over any file this user can read.
            if src.is_symlink():
                raise FetchError(f"retrain.path: {src} is a symbolic link; the drop folder takes plain files only")
            if not src.is_file():
                raise FetchError(f"retrain.files: {src} does not exist")
            if src.stat().st_size > limit:
                raise FetchError(f"retrain.path: {src} is {src.stat().st_size / 2 ** 20:.1f} MB, larger than "
                                 f"retrain.max_file_mb ({cfg.max_file_mb:g} MB); nothing was taken")
            _retrying(cfg, f"copy {src}", lambda src=src, name=name: _copy(src, incoming / name, limit))
            written.append(str(incoming / name))
        return written
    if cfg.source == "url":
        written = []
        for name in cfg.files:
            url = f"{cfg.path.rstrip('/')}/{name}"
            _retrying(cfg, f"download {redact_url(url)}",
                      lambda url=url, name=name: _download(url, incoming / name, cfg.timeout,
                                                           int(cfg.max_file_mb * 2 ** 20)))
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


def webhook_block(cfg: RetrainConfig):
    """The Prefect notification block (Custom Webhook) that POSTs to the URL in the environment variable
    ``retrain.notify_webhook_env`` names: a JSON body with ``text`` (subject and body, what Slack or Mattermost
    show), ``subject`` and ``body``. The URL is the block's secret (a SecretDict, which Prefect's API and UI show
    masked), and its URL field only the template that names it."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(name="rft retrain", url="{{webhook_url}}", timeout=cfg.timeout,
                                          secrets={"webhook_url": cfg.webhook_url()},
                                          json_data={"text": "{{subject}}\n{{body}}", "subject": "{{subject}}",
                                                     "body": "{{body}}"})


def webhook_name(cfg: RetrainConfig) -> str:
    """How messages name the webhook: by its variable, never by its URL."""
    return f"the webhook in ${cfg.notify_webhook_env}"


def notify(cfg: RetrainConfig, subject: str, body: str) -> bool:
    """Send ``subject`` and ``body`` through ``webhook_block``, retried with backoff on a connection error, a
    timeout, a 429 or a 5xx; True when delivered, False when no webhook is set."""
    import httpx

    if not cfg.notify_webhook_env:
        return False
    block = webhook_block(cfg)
    for attempt in range(cfg.max_retries + 1):
        try:
            block.notify(body=body[:3000], subject=subject)
            return True
        except httpx.HTTPStatusError as exc:
            code = exc.response.status_code
            if code < 500 and code != 429:
                raise FetchError(f"notify {webhook_name(cfg)}: HTTP {code}") from None
            problem = f"HTTP {code}"
        except httpx.TransportError as exc:
            problem = type(exc).__name__
        if attempt == cfg.max_retries:
            raise FetchError(f"notify {webhook_name(cfg)}: failed after {cfg.max_retries} retries ({problem})")
        time.sleep(backoff_delay(cfg.backoff, attempt))
    raise AssertionError("unreachable")

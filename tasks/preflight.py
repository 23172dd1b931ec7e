"""Fail fast when a configured server is down: before any compute, with a message naming the URL.

A cycle that trains for an hour and then cannot log its model is worse than one
that refuses to start. ``check_servers`` asks the MLflow tracking server (when
``tracking.uri`` is an http(s) URL) and the Prefect API (when
``PREFECT_API_URL`` is set) for their health endpoints. A server that does not
answer after ``attempts`` tries (a short backoff between them absorbs a
restart) stops the run with an ``UnreachableServer`` error.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from tasks.errors import RFTError
from tasks.redact import redact_url
from tasks.retry import backoff_delay


class UnreachableServer(RFTError):
    """A server the configuration points at did not answer its health check."""


def probe(url: str, *, timeout: float = 3.0) -> str | None:
    """None when ``url`` answers 2xx, else what went wrong, in words."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason) or type(reason).__name__


def wait_healthy(name: str, url: str, where: str, *, attempts: int = 3, backoff: float = 0.5,
                 timeout: float = 3.0) -> None:
    """Raise ``UnreachableServer`` naming ``url`` and the setting ``where`` unless ``url`` answers."""
    problem = None
    for attempt in range(attempts):
        problem = probe(url, timeout=timeout)
        if problem is None:
            return
        if attempt + 1 < attempts:
            time.sleep(backoff_delay(backoff, attempt))
    raise UnreachableServer(f"{name} at {redact_url(url)} is not answering ({problem}); it is configured by {where}. "
                            f"Start it (infra/README.md) or point {where} elsewhere. Nothing was run.")


def prefect_api_url() -> str | None:
    """The Prefect API this process talks to, or None in ephemeral mode."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def check_servers(tracking_uri: str, *, prefect: bool = True, attempts: int = 3) -> list[str]:
    """Check every configured server; return the URLs checked."""
    checked = []
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/") + "/health"
        wait_healthy("The MLflow tracking server", url, "tracking.uri in params.yaml", attempts=attempts)
        checked.append(url)
    api = prefect_api_url() if prefect else None
    if api:
        url = api.rstrip("/") + "/health"
        wait_healthy("The Prefect server", url, "PREFECT_API_URL", attempts=attempts)
        checked.append(url)
    return checked

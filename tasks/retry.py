"""How long a retry loop waits before its next try: doubling backoff, with a cap.

Every retry loop of the project (the HTTP judge, downloads, notices, DVC remote and git steps, the server
health checks) sleeps ``backoff_delay(backoff, attempt)`` seconds. Without the cap, ``backoff * 2**attempt`` grows
without bound: ten retries at 1 s would wait 512 s before the last one, and a judge at 0.5 s with 15 retries
more than 4 hours.
"""

from __future__ import annotations

MAX_BACKOFF_S = 60.0


def backoff_delay(backoff: float, attempt: int, cap: float = MAX_BACKOFF_S) -> float:
    """Seconds to wait after failed try number ``attempt`` (0 for the first): ``backoff * 2**attempt``, at most
    ``cap``."""
    if attempt >= 64:                # 2**attempt would only overflow the float; the cap holds long before
        return min(cap, backoff * 2.0 ** 63) if backoff else 0.0
    return min(cap, backoff * 2.0 ** attempt)

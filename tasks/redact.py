"""Credentials out of what the project logs and prints.

A URL can carry a credential: a password or token in its user part (``postgresql://rft:pw@db/mlflow``,
``https://TOKEN@host``), or a signature or key in its query (``?sig=...``, ``X-Amz-Signature=...``,
``?token=...``). ``redact_url`` masks those parts and keeps the rest (scheme, host, port, path), so a message or an
MLflow param still says where; ``redact_params`` does it for every string value of a flattened params dict, which
is what the stages and the cycle log to MLflow.

A webhook URL whose path is the secret (Slack's ``/services/T/B/X``) cannot be told from a plain one: such a URL is
never read from params.yaml, but from an environment variable (``retrain.notify_webhook_env``).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameters whose value is a credential: tokens, keys, passwords, signatures (AWS, GCS and Azure SAS
# signed URLs), OAuth codes.
_SECRET_QUERY = re.compile(r"token|key|secret|passw|pwd|sig|signature|credential|auth|code|session", re.I)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` with the password (or a lone token) of its user part and the values of credential-like query
    parameters replaced by ``***``; a string that is not a URL comes back unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if sep else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside ``text`` (a message, a log line) passed through ``redact_url``."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_params(flat: dict) -> dict:
    """A flattened params dict (``section.key: value``) with each string value's URLs redacted."""
    return {k: redact_text(v) if isinstance(v, str) else v for k, v in flat.items()}

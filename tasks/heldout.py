"""Which prompts are held out, as pure functions of their text (no I/O).

A prompt's side of the split is decided by its own canonical text alone
(``tasks/prompting.py::prompt_key``: case and whitespace folded), hashed with a
salt: the prompt is held out when ``split_point(key, salt) < fraction``. So a
prompt never changes side when other prompts are added or removed, which a
seeded shuffle of the whole set cannot promise (one new prompt reshuffles
everything, and yesterday's training prompts become today's held-out evidence).

Changing the salt draws a new split; raising the fraction moves the prompts
whose point lies between the old and the new fraction to the held-out side.
Both can put prompts a lineage trained on into the held-out set, which the
cycle refuses (``tasks/provenance.py``). Lowering the fraction only moves
held-out prompts to training.

``prompt_digest`` is the salt-free name of a prompt in the records (MLflow
artifacts, the iteration's tags), so records written under one salt are
compared with a split drawn under another.
"""

from __future__ import annotations

import hashlib

DIGEST_CHARS = 16          # 64 bits: a collision among a million prompts has odds of about 3e-8


def prompt_digest(key: str) -> str:
    """The record's name of a prompt: the first 16 hex digits of SHA-256 of its canonical text."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def split_point(key: str, salt: str) -> float:
    """A number in [0, 1) that depends only on the canonical text and the salt: the first 64 bits of
    SHA-256(salt, NUL, text) divided by 2**64. NUL separates them, so ("ab", "c") and ("a", "bc") differ."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def is_heldout(key: str, salt: str, fraction: float) -> bool:
    return split_point(key, salt) < fraction


def leaked(heldout: dict[str, str], trained: set[str]) -> list[str]:
    """The held-out prompts (``digest -> text``) whose digest is in ``trained``, sorted by text."""
    return sorted(text for digest, text in heldout.items() if digest in trained)

"""Text normalisation shared by every stage that compares texts. Pure, no I/O."""

from __future__ import annotations


def normalize(text: str) -> str:
    """Case- and whitespace-folded text: two responses or prompts are 'the same' when these match."""
    return " ".join(str(text).lower().split())

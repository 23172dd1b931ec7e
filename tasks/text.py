"""Text normalisation shared by every stage that compares texts. Pure, no I/O."""

from __future__ import annotations

import unicodedata

# Characters that show nothing: control (Cc), format (Cf: zero-width spaces and joiners, BOMs, bidi marks, soft
# hyphens) and separator (Z*) categories.
_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}
_ALLOWED_CONTROLS = "\t\n\r"


def normalize(text: str) -> str:
    """Case- and whitespace-folded text: two responses or prompts are 'the same' when these match."""
    return " ".join(str(text).lower().split())


def visible(text: str) -> str:
    """``text`` without whitespace, control and invisible format characters."""
    return "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) not in _INVISIBLE)


def text_problem(text: str) -> str:
    """Why ``text`` is not usable as a prompt or a message ("" when it is): blank once whitespace, control
    and invisible format characters are removed, or holding control characters other than tab, newline and
    carriage return."""
    if not visible(text):
        return "blank (nothing but whitespace, control or invisible format characters)"
    bad = sorted({f"U+{ord(ch):04X}" for ch in text
                  if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS})
    return f"holds control characters {', '.join(bad)}" if bad else ""

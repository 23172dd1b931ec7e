"""The field helper of every typed config section: a default, a help text and the rules a value must obey.

It lives apart from ``tasks/config.py`` so that components that bring their own
config section (the algorithms of ``tasks/algorithms/``) can declare it without
importing the whole config module.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def opt(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None, choices: tuple | None = None,
        required: bool = False):
    """A dataclass field with its help text and the rules its value must obey."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "required": required}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)

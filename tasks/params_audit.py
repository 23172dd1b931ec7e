"""Which ``params.yaml`` keys a stage really reads: a recording view of :class:`Params`.

``recording(params, log)`` returns an object that behaves like ``params`` for a
stage and adds ``"section.key"`` to ``log`` at every read (a whole entry for
mappings such as ``judges``). ``tests/test_manifest.py`` runs every stage
through it and fails when a stage reads a key that its manifest entry (and so
``dvc.yaml``) does not declare, which is how an undeclared read, one DVC
would not rerun the stage for, is caught.
"""

from __future__ import annotations

import dataclasses


class _Section:
    def __init__(self, name: str, target, log: set):
        object.__setattr__(self, "_rft_target", target)
        object.__setattr__(self, "_rft_name", name)
        object.__setattr__(self, "_rft_log", log)

    def __getattr__(self, key):
        self._rft_log.add(f"{self._rft_name}.{key}")
        return getattr(self._rft_target, key)

    def __repr__(self):
        return f"recording({self._rft_target!r})"


class _Params(_Section):
    def __getattr__(self, section):
        value = getattr(self._rft_target, section)
        if dataclasses.is_dataclass(value):
            return _Section(section, value, self._rft_log)
        self._rft_log.add(section)
        return value


def recording(params, log: set):
    return _Params("", params, log)


def unwrap(section):
    """The real dataclass behind a recording view (or the object itself)."""
    return getattr(section, "_rft_target", section)

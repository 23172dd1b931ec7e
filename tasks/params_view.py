"""A stage's view of ``params.yaml``: it reads the keys its manifest entry declares, and nothing else.

``view(params, declared, stage)`` behaves like ``params`` for the keys in ``declared`` (a whole section,
``section.key``, a nested section such as ``optimize.grpo``, or one of its keys) and raises
:class:`UndeclaredParam` at a read of any other key: DVC would not rerun the stage when that key changed, so a
stage that reads it is a bug, caught in production as in the tests. ``run_stage`` hands every stage such a view
(``tasks/manifest.py::stage_view``, which adds the housekeeping keys every stage may read).

With ``log``, every read is also added to it (``"section.key"``; a whole entry for mappings such as
``judges`` and for nested sections), and with ``strict=False`` nothing is refused: ``tests/test_manifest.py``
runs every stage so and fails when a stage reads a key its entry does not declare. ``recording(params, log)``
is that view with no declaration at all.

A view pickles (a judge's context goes to shard workers) as the same view, without its log.
"""

from __future__ import annotations

import dataclasses

from tasks.errors import RFTError


class UndeclaredParam(RFTError):
    """A stage read a params key its manifest entry does not declare."""

    def __init__(self, stage: str, key: str):
        super().__init__(f"stage {stage} read {key}, which its entry in tasks/manifest.py (and so dvc.yaml) does "
                         "not declare: DVC would not rerun it when that key changes. Declare the key there")


def covered(key: str, declared) -> bool:
    """A read of ``section.key`` is declared by ``section`` or by ``section.key`` itself."""
    return any(key == d or key.startswith(d + ".") for d in declared)


class _View:
    def __init__(self, target, prefix: str, declared, log: set | None, stage: str, strict: bool):
        for name, value in (("target", target), ("prefix", prefix), ("declared", declared), ("log", log),
                            ("stage", stage), ("strict", strict)):
            object.__setattr__(self, f"_rft_{name}", value)

    def __getattr__(self, key):
        if key.startswith("__"):                  # Python's own protocols (copy, pickle) are the view's, not params'
            raise AttributeError(key)
        prefix, declared = self._rft_prefix, self._rft_declared
        name = f"{prefix}.{key}" if prefix else key
        value = getattr(self._rft_target, key)
        if dataclasses.is_dataclass(value):
            if declared is not None and name in declared:        # a section declared whole: itself
                if self._rft_log is not None:
                    self._rft_log.add(name)
                return value
            # Otherwise a view of it, whose reads are checked one by one (and named in full when refused): a
            # top-level section, or a nested one (``optimize.grpo``) some of whose keys are declared.
            if not prefix or (declared is not None and any(d.startswith(name + ".") for d in declared)):
                return _View(value, name, declared, self._rft_log, self._rft_stage, self._rft_strict)
        if self._rft_log is not None:
            self._rft_log.add(name)
        if declared is not None and self._rft_strict and not covered(name, declared):
            raise UndeclaredParam(self._rft_stage, name)
        return value

    def __setattr__(self, key, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {key!r}")

    def __reduce__(self):
        return (_View, (self._rft_target, self._rft_prefix, self._rft_declared, None, self._rft_stage,
                        self._rft_strict))

    def __eq__(self, other):
        return isinstance(other, _View) and self._rft_target == other._rft_target

    def __hash__(self):
        return hash(self._rft_target)

    def __repr__(self):
        return f"view({self._rft_target!r})"


def view(params, declared, stage: str, log: set | None = None, strict: bool = True):
    """``params`` as the stage ``stage`` may read it: the keys of ``declared`` only."""
    return _View(params, "", frozenset(declared), log, stage, strict)


def recording(params, log: set):
    """``params``, adding every read to ``log`` and refusing none."""
    return _View(params, "", None, log, "", False)


def underlying(params):
    """The whole ``Params`` behind a view (or ``params`` itself): only for handing a stage's params to its own
    worker processes (``tasks/launch.py``), which read them through the same view again."""
    return getattr(params, "_rft_target", params)

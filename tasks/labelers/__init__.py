"""Labelers, chosen by ``label.source``: who turns generations (or a file) into preference labels.

- ``judge``: the judge named in ``label.judge`` compares pairs built from the k
  responses per prompt (``tasks/labelers/judged.py``);
- ``simulated``: the same, with the environment's hidden-truth annotator as the
  judge (demo environments only);
- ``file``: a preference file that people already wrote (``tasks/labelers/file.py``).

Each returns ``(rows, stats)``: rows in the labels contract, counters for MLflow.
"""

from __future__ import annotations

import importlib

LABELERS = {
    "judge": "tasks.labelers.judged:label_by_judge",
    "simulated": "tasks.labelers.judged:label_by_annotator",
    "file": "tasks.labelers.file:label_from_file",
}


def get_labeler(source: str):
    from tasks.errors import ConfigError

    if source not in LABELERS:
        raise ConfigError(f"label.source: unknown labeler {source!r} (known: {', '.join(LABELERS)})")
    module, attr = LABELERS[source].split(":")
    return getattr(importlib.import_module(module), attr)

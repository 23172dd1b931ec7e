"""Labelers, chosen by ``label.source``: who turns generations (or a file) into preference labels.

- ``judge``: the judge named in ``label.judge`` compares pairs built from the k
  responses per prompt (``tasks/labelers/judged.py``);
- ``simulated``: the same, with the environment's hidden-truth annotator as the
  judge (demo environments only);
- ``file``: a preference or annotation file that people already wrote
  (``tasks/labelers/file.py``);
- ``label_studio``: people label in a Label Studio project while the flow waits
  (``tasks/labelers/label_studio.py``).

Each receives the generations as an iterable to read once, and returns
:class:`Labels`: rows in the labels contract, counters for MLflow,
and for people's feedback the ratings rows and the annotations that the label
quality report reads.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import NamedTuple

from tasks.errors import ConfigError

LABELERS = {
    "judge": "tasks.labelers.judged:label_by_judge",
    "simulated": "tasks.labelers.judged:label_by_annotator",
    "file": "tasks.labelers.file:label_from_file",
    "label_studio": "tasks.labelers.label_studio:label_in_studio",
}


class Labels(NamedTuple):
    rows: Iterable                  # the labels table (pairs; ties carry tie: true): a list, or rows made as
                                    # they are read (judges), which the stage writes as they come
    stats: dict                     # counters for MLflow (of streamed rows: complete once they are all read)
    ratings: tuple | list = ()      # single rated responses (likert, attributes, comment), for KTO
    annotations: object = None      # tasks.labelers.feedback.Annotations of people's feedback, for label quality
    weights: dict | None = None     # the rubric's criterion weights (attributes)
    tags: dict | None = None        # MLflow tags of the stage run (e.g. how the wait for people ended)


def get_labeler(source: str):
    if source not in LABELERS:
        raise ConfigError(f"label.source: unknown labeler {source!r} (known: {', '.join(LABELERS)})")
    module, attr = LABELERS[source].split(":")
    return getattr(importlib.import_module(module), attr)

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

from typing import Callable

from tasks.errors import ConfigError
from tasks.labelers import file, judged, label_studio
from tasks.labelers.base import Labels

# label.source -> labeler(cfg, judge context, prompts, generations, rows) -> Labels; ``prompts`` maps a prompt id
# to its prompt, ``rows`` to its row of the prompts file (a grader reads its reference fields).
LABELERS: dict[str, Callable[..., Labels]] = {
    "judge": judged.label_by_judge,
    "simulated": judged.label_by_annotator,
    "file": file.label_from_file,
    "label_studio": label_studio.label_in_studio,
}


def get_labeler(source: str):
    if source not in LABELERS:
        raise ConfigError(f"label.source: unknown labeler {source!r} (known: {', '.join(LABELERS)})")
    return LABELERS[source]

"""What every labeler returns (:class:`Labels`); ``tasks/labelers/__init__.py`` chooses the labeler."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Labels(NamedTuple):
    rows: Iterable                  # the labels table (pairs; ties carry tie: true): a list, or rows made as
                                    # they are read (judges), which the stage writes as they come
    stats: dict                     # counters for MLflow (of streamed rows: complete once they are all read)
    ratings: tuple | list = ()      # single rated responses (likert, attributes, comment), for KTO
    annotations: object = None      # tasks.labelers.feedback.Annotations of people's feedback, for label quality
    weights: dict | None = None     # the rubric's criterion weights (attributes)
    tags: dict | None = None        # MLflow tags of the stage run (e.g. how the wait for people ended)

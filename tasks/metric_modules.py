"""The ``evaluate`` library's metric modules that the project bundles in ``metrics/``, loaded from that folder
(``evaluate.load(<local folder>)``): nothing is fetched from a hub."""

from __future__ import annotations

from pathlib import Path

from tasks.paths import METRIC_MODULES


def metric(name: str):
    """The metric module ``metrics/<name>``: the project's own copy (the working directory's first, else the
    package's)."""
    import evaluate

    local = METRIC_MODULES / name
    if not local.exists():
        local = Path(__file__).resolve().parents[1] / METRIC_MODULES / name
    return evaluate.load(str(local))

"""Stage ``validate_labels`` (``dvc.yaml``; its inputs and outputs are declared in ``tasks/manifest.py``): the adapter
that opens its MLflow run, reads, calls ``tasks/validate.py`` and the components, and writes and logs the outputs."""

from __future__ import annotations

from tasks.config import Params
from tasks.paths import DATA_DOCS as DOCS
from tasks.paths import LABELS, PROMPTS
from tasks.paths import VALIDATION as REPORTS
from tasks.stages.common import run_validation
from tasks.validate import validate_labels_file


def run(params: Params) -> dict:
    docs = DOCS / "labels"
    return run_validation("validate_labels", params, lambda: validate_labels_file(params.validate, docs_dir=docs),
                [LABELS, PROMPTS], REPORTS / "labels.json", docs)

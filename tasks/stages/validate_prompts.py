"""Stage ``validate_prompts`` (``dvc.yaml``; its inputs and outputs are declared in ``tasks/manifest.py``): the adapter
that opens its MLflow run, reads, calls ``tasks/validate.py`` and the components, and writes and logs the outputs."""

from __future__ import annotations

from tasks.config import Params
from tasks.paths import BASE, PROMPTS
from tasks.paths import DATA_DOCS as DOCS
from tasks.paths import VALIDATION as REPORTS
from tasks.stages.common import run_validation
from tasks.validate import DEMOS, validate_prompts_file


def run(params: Params) -> dict:
    docs = DOCS / "prompts"
    return run_validation("validate_prompts", params, lambda: validate_prompts_file(params.validate, docs_dir=docs),
                [PROMPTS, DEMOS, BASE], REPORTS / "prompts.json", docs)

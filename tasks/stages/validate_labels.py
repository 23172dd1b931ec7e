"""Stage ``validate_labels`` (``dvc.yaml``; its inputs and outputs are declared in ``tasks/manifest.py``): the adapter
that opens its MLflow run, reads, calls ``tasks/validate.py`` and the components, and writes and logs the outputs."""

from __future__ import annotations

from tasks.paths import LABELS, LABELS_DOCS, LABELS_REPORT, PROMPTS
from tasks.stages.common import StageContext, run_validation
from tasks.validate import validate_labels_file


def run(ctx: StageContext) -> dict:
    params = ctx.params
    docs = LABELS_DOCS
    return run_validation("validate_labels", ctx, lambda: validate_labels_file(params.validate, docs_dir=docs,
                                                                                      run_label=ctx.run_name("labels")),
                [LABELS, PROMPTS], LABELS_REPORT, docs)

"""Stage ``validate_labels``: the labels table checked against its contract by Great Expectations, with Data
Docs; a failed rule stops the cycle before any training.
"""

from __future__ import annotations

from tasks.paths import LABELS_DOCS, LABELS_REPORT
from tasks.stages.common import StageContext, run_validation
from tasks.validate import validate_labels_file


def run(ctx: StageContext) -> dict:
    def check() -> dict:
        return validate_labels_file(ctx.params.validate, docs_dir=LABELS_DOCS, run_label=ctx.run_name("labels"))

    return run_validation("validate_labels", ctx, check, LABELS_REPORT, LABELS_DOCS)

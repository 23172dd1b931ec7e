"""Stage ``validate_prompts`` (``dvc.yaml``; its inputs and outputs are declared in ``tasks/manifest.py``): the adapter
that opens its MLflow run, reads, calls ``tasks/validate.py`` and the components, and writes and logs the outputs."""

from __future__ import annotations

from tasks.paths import BASE, DEMOS, PROMPTS, PROMPTS_DOCS, PROMPTS_REPORT
from tasks.stages.common import StageContext, run_validation
from tasks.validate import validate_prompts_file


def run(ctx: StageContext) -> dict:
    params = ctx.params
    docs = PROMPTS_DOCS
    return run_validation("validate_prompts", ctx, lambda: validate_prompts_file(params.validate, docs_dir=docs,
                                                                                        run_label=ctx.run_name("prompts")),
                [PROMPTS, DEMOS, BASE], PROMPTS_REPORT, docs)

"""Stage ``validate_prompts``: the prompts checked against their contract by Great Expectations, with Data Docs
(the token counts by the base policy's tokenizer; the reference fields that the cycle's graders read); a failed
rule stops the cycle before the policy sees them.
"""

from __future__ import annotations

from tasks.config import prompt_fields
from tasks.paths import PROMPTS_DOCS, PROMPTS_REPORT
from tasks.stages.common import StageContext, run_validation
from tasks.validate import validate_prompts_file


def run(ctx: StageContext) -> dict:
    def check() -> dict:
        return validate_prompts_file(ctx.params.validate, docs_dir=PROMPTS_DOCS, run_label=ctx.run_name("prompts"),
                                     fields=prompt_fields(ctx.params))

    return run_validation("validate_prompts", ctx, check, PROMPTS_REPORT, PROMPTS_DOCS)

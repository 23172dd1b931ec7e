"""Win-rate of a candidate against a baseline, with a bootstrap 95% CI that resamples prompts."""

import datasets
import evaluate

from tasks.evalmath import bootstrap_ci, winrate

_DESCRIPTION = """Mean of comparison outcomes (1 win, 0.5 tie, 0 loss) and a percentile bootstrap CI
that resamples whole groups (prompts), since comparisons of one prompt are not independent."""
_KWARGS = """
Args:
    outcomes: list of float, 1.0 win, 0.5 tie, 0.0 loss, one per comparison.
    groups: list of str, the prompt of each comparison (resampled as a unit).
    n_boot: bootstrap resamples (default 2000).
    seed: bootstrap seed (default 0).
Returns:
    winrate, ci_low, ci_high
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Winrate(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"outcomes": datasets.Value("float32"), "groups": datasets.Value("string")}))

    def _compute(self, outcomes, groups, n_boot=2000, seed=0):
        lo, hi = bootstrap_ci(list(outcomes), list(groups), n_boot=n_boot, seed=seed)
        return {"winrate": winrate(list(outcomes)), "ci_low": lo, "ci_high": hi}

"""Per-response similarity to reference answers, in [0, 1]: exact match, BLEU, chrF, ROUGE-1/2/L."""

import datasets
import evaluate

from tasks.textsim import METRICS, similarity

_DESCRIPTION = ("Each prediction's similarity to its references (tasks/textsim.py): exact_match, sentence BLEU "
                "and chrF (sacreBLEU) / 100, ROUGE-1/2/L F1.")
_KWARGS = f"""
Args:
    predictions: list of str, the responses.
    references: list of lists of str, the acceptable answers of each response.
    metric: one of {', '.join(METRICS)}.
    ignore_case: bool, exact_match only.
Returns:
    scores: one float per prediction, in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class TextSimilarity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
                                   features=datasets.Features({
                                       "predictions": datasets.Value("string"),
                                       "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references, metric="exact_match", ignore_case=False):
        return {"scores": [similarity(metric, p, list(r), ignore_case) for p, r in zip(predictions, references)]}

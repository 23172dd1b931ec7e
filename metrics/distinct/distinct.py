"""Distinct-1 and distinct-2: unique n-grams over all n-grams of a set of generations."""

import datasets
import evaluate

from tasks.evalmath import distinct_n

_DESCRIPTION = "Corpus-level distinct-n (Li et al., 2016) over whitespace tokens, lower-cased."
_KWARGS = """
Args:
    predictions: list of str, the generations.
Returns:
    distinct_1, distinct_2
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Distinct(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
                                   features=datasets.Features({"predictions": datasets.Value("string")}))

    def _compute(self, predictions):
        return {"distinct_1": distinct_n(list(predictions), 1), "distinct_2": distinct_n(list(predictions), 2)}

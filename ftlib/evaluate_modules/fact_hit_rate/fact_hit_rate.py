"""The course's headline task metric, the fact hit rate of ftlib.metrics, as an evaluate module, loaded by path."""

import datasets
import evaluate

from ftlib import metrics

_DESCRIPTION = ("The share of all required facts found in their answers, after NFKC, case folding and space "
                "normalisation, in any language: ftlib.metrics.fact_hit_rate.")
_INPUTS = """
Args:
    predictions: the model's answers.
    references: for each answer, the list of facts (short texts) it must contain.
Returns:
    fact_hit_rate: facts found / facts required (0-1).
"""


class FactHitRate(evaluate.Metric):
    def _info(self):
        facts = datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))})
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS, features=facts)

    def _compute(self, predictions, references):
        return {"fact_hit_rate": metrics.fact_hit_rate(predictions, references)}

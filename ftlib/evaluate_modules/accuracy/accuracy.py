"""Accuracy (scikit-learn's accuracy_score through ftlib.metrics) as an evaluate module, loaded by path offline."""

import datasets
import evaluate

from ftlib import metrics

_DESCRIPTION = "The share of predicted labels equal to the true ones (0-1): ftlib.metrics.accuracy."
_INPUTS = """
Args:
    predictions: predicted labels, ints or names.
    references: the true labels, of the same kind.
Returns:
    accuracy: the share of predictions equal to their reference.
"""


class Accuracy(evaluate.Metric):
    def _info(self):
        labels = [datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)})
                  for kind in ("string", "int64")]  # names first: evaluate would turn ints into text, not back
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS, features=labels)

    def _compute(self, predictions, references):
        return {"accuracy": metrics.accuracy(references, predictions)}

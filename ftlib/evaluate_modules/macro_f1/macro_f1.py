"""Macro-F1 (scikit-learn's f1_score, average="macro", through ftlib.metrics) as an evaluate module, loaded by path."""

import datasets
import evaluate

from ftlib import metrics

_DESCRIPTION = ("F1 averaged over labels with equal weight, so rare labels count as much as common ones (0-1): "
                "ftlib.metrics.macro_f1. A label never predicted and never true scores 0.")
_INPUTS = """
Args:
    predictions: predicted labels, ints or names.
    references: the true labels, of the same kind.
    labels: the labels to average over; None: every label seen in either.
Returns:
    macro_f1: the mean F1 of the labels.
"""


class MacroF1(evaluate.Metric):
    def _info(self):
        labels = [datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)})
                  for kind in ("string", "int64")]  # names first: evaluate would turn ints into text, not back
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS, features=labels)

    def _compute(self, predictions, references, labels=None):
        return {"macro_f1": metrics.macro_f1(references, predictions, labels=labels)}

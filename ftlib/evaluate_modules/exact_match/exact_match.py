"""Exact match of ftlib.metrics as an evaluate module, loaded by path offline."""

import datasets
import evaluate

from ftlib import metrics

_DESCRIPTION = ("The share of answers equal to their reference after NFKC, case folding, space and end-punctuation "
                "normalisation: ftlib.metrics.exact_match.")
_INPUTS = """
Args:
    predictions: the model's answers.
    references: one reference answer for each.
    lang: "en" or "ja"; the normalisation is the same for both (lang is taken so that evaluate.combine can
        pass one lang to every text metric).
Returns:
    exact_match: the share of exact matches (0-1).
"""


class ExactMatch(evaluate.Metric):
    def _info(self):
        text = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS, features=text)

    def _compute(self, predictions, references, lang="en"):
        if lang not in metrics.LANGS:
            raise ValueError(f"lang must be one of {metrics.LANGS}, not {lang!r}")
        return {"exact_match": metrics.exact_match(predictions, references)}

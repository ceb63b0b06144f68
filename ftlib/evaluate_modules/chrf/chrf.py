"""chrF (sacrebleu's corpus_chrf through ftlib.metrics) as an evaluate module, loaded by path offline."""

import datasets
import evaluate

from ftlib import metrics

_DESCRIPTION = "Corpus chrF of sacrebleu, an F-score of character n-grams: ftlib.metrics.chrf."
_INPUTS = """
Args:
    predictions: the model's answers.
    references: one reference answer for each.
    lang: "en" or "ja"; character n-grams need no word boundaries, so both are scored the same (lang is
        taken so that evaluate.combine can pass one lang to every text metric).
Returns:
    chrf: corpus chrF (0-100).
"""


class Chrf(evaluate.Metric):
    def _info(self):
        text = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS, features=text)

    def _compute(self, predictions, references, lang="en"):
        if lang not in metrics.LANGS:
            raise ValueError(f"lang must be one of {metrics.LANGS}, not {lang!r}")
        return {"chrf": metrics.chrf(predictions, references)}

"""ROUGE-L of ftlib.metrics (rouge-score, Japanese by characters) as an evaluate module, loaded by path offline."""

import datasets
import evaluate

from ftlib import metrics

_DESCRIPTION = "Mean ROUGE-L F-measure of rouge-score, Japanese compared character by character: ftlib.metrics.rouge_l."
_INPUTS = """
Args:
    predictions: the model's answers.
    references: one reference answer for each.
    lang: "en" or "ja"; "en" uses rouge-score's own tokenizer, "ja" characters (rouge-score's tokenizer
        drops non-Latin text).
Returns:
    rouge_l: the mean ROUGE-L F-measure (0-1).
"""


class RougeL(evaluate.Metric):
    def _info(self):
        text = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS, features=text)

    def _compute(self, predictions, references, lang="en"):
        return {"rouge_l": metrics.rouge_l(predictions, references, lang)}

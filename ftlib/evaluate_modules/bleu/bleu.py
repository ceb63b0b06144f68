"""BLEU of ftlib.metrics (sacrebleu, Japanese by characters) as an evaluate module, loaded by path offline."""

import datasets
import evaluate

from ftlib import metrics

_DESCRIPTION = ("Corpus BLEU of sacrebleu, its 13a tokenizer for English and characters for Japanese: "
                "ftlib.metrics.bleu.")
_INPUTS = """
Args:
    predictions: the model's answers.
    references: one reference answer for each.
    lang: "en" or "ja"; "en" uses sacrebleu's 13a tokenizer, "ja" characters (no word segmenter needed).
Returns:
    bleu: corpus BLEU (0-100).
"""


class Bleu(evaluate.Metric):
    def _info(self):
        text = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_INPUTS, features=text)

    def _compute(self, predictions, references, lang="en"):
        return {"bleu": metrics.bleu(predictions, references, lang)}

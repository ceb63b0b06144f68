"""ftlib's metrics as Hugging Face `evaluate` modules, shipped inside the package and loaded by path, offline.

    import evaluate
    from ftlib import evaluate_modules

    rouge = evaluate.load(evaluate_modules.path("rouge_l"))
    rouge.compute(predictions=answers, references=references, lang="ja")          # = metrics.rouge_l(..., "ja")
    text = evaluate.combine([evaluate_modules.path(name) for name in evaluate_modules.TEXT])
    text.compute(predictions=answers, references=references, lang="en")           # = metrics.generation_scores

`evaluate.load("rouge")` by name fetches the module's script from the Hugging Face Hub, so it needs the network;
given the path of a folder that holds <name>/<name>.py, evaluate loads that local script and never asks the Hub.
Each module here computes with ftlib.metrics, so the numbers are the same as the functions' (tests/
test_evaluate_modules.py). Scales as in ftlib.metrics: shares (0-1), chrF and BLEU 0-100.

| module | inputs | keyword |
|---|---|---|
| accuracy, macro_f1 | predicted and true labels (ints or names) | macro_f1: labels |
| exact_match, rouge_l, chrf, bleu | answers and reference answers | lang: "en" or "ja" (all four take it) |
| fact_hit_rate | answers and, per answer, the list of facts it must contain | - |
"""

from __future__ import annotations

from pathlib import Path

NAMES = ("accuracy", "macro_f1", "exact_match", "rouge_l", "chrf", "bleu", "fact_hit_rate")
TEXT = ("exact_match", "rouge_l", "chrf", "bleu")  # the text metrics: one reference per answer, one `lang` for all


def path(name: str) -> str:
    """The folder of ftlib's evaluate module `name` (one of NAMES), for evaluate.load and evaluate.combine.

    A str, not a Path: evaluate.load takes a string (it calls path.replace(os.sep, "/"), which on a Path would
    try to rename a file). Taught in notebook 06.
    """
    if name not in NAMES:
        raise ValueError(f"no evaluate module {name!r} in ftlib; there are {list(NAMES)}")
    return str(Path(__file__).parent / name)

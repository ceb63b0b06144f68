"""ftlib's evaluate modules (ftlib/evaluate_modules): loaded by path with the network cut, they give the numbers of
ftlib.metrics (and, for labels, of scikit-learn), alone and through evaluate.combine, in English and Japanese."""

import socket
from fnmatch import fnmatch
from pathlib import Path

import evaluate
import numpy as np
import pytest
import tomllib
from sklearn.metrics import accuracy_score, f1_score

from ftlib import evaluate_modules, metrics
from ftlib.env import ROOT

TEXTS = {  # (answers, references): near misses, a paraphrase, punctuation and width differences
    "en": (["The Kumo Cam costs $129.", "Delivery takes 2 days", "We are open 9am to 6pm on weekdays!",
            "Returns are accepted within 30 days.", "The warranty lasts two years"],
           ["The Kumo Cam costs $129", "Shipping takes two days.", "We are open from 9am to 6pm on weekdays.",
            "You can return an item within 30 days of delivery.", "The warranty lasts 2 years."]),
    "ja": (["クモカムの価格は１２，８００円です。", "配送には2営業日かかります", "返品は30日以内に受け付けます！",
            "保証期間は二年間です", "平日の九時から十八時まで営業しています。"],
           ["クモカムの価格は12,800円です", "配送は2〜3営業日です。", "返品は購入から30日以内です。",
            "保証期間は2年間です。", "受付時間は平日九時から十八時です。"]),
}
FACTS = {
    "en": [["$129"], ["2 days", "free"], ["9am", "6pm"], ["30 days"], ["two years"]],
    "ja": [["12,800円"], ["2営業日"], ["30日以内"], ["2年間"], ["九時", "十八時"]],
}


def refuse(*args, **kwargs):
    raise OSError("the network is cut in this test")


@pytest.fixture(scope="module")
def offline():
    """The network cut for this module's tests: a load or computation that asked the Hub would fail."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        yield


@pytest.fixture(scope="module")
def modules(offline):
    return {name: evaluate.load(evaluate_modules.path(name)) for name in evaluate_modules.NAMES}


def test_the_cut_network_stops_a_load_by_name(offline):
    with pytest.raises(FileNotFoundError, match="Hub"):  # the control: by name, evaluate needs the Hub
        evaluate.load("rouge")


@pytest.mark.parametrize("lang", ["en", "ja"])
@pytest.mark.parametrize("name", evaluate_modules.TEXT)
def test_each_text_module_equals_ftlib_metrics(modules, name, lang):
    answers, references = TEXTS[lang]
    result = modules[name].compute(predictions=answers, references=references, lang=lang)
    assert result == {name: metrics.generation_scores(answers, references, lang)[name]}


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_combine_gives_all_four_text_metrics_of_ftlib(offline, lang):
    answers, references = TEXTS[lang]
    combined = evaluate.combine([evaluate_modules.path(name) for name in evaluate_modules.TEXT])
    assert combined.compute(predictions=answers, references=references, lang=lang) == \
        metrics.generation_scores(answers, references, lang)


def test_lang_reaches_the_module(modules):
    answers, references = TEXTS["ja"]
    by_characters = modules["rouge_l"].compute(predictions=answers, references=references, lang="ja")["rouge_l"]
    by_latin_words = modules["rouge_l"].compute(predictions=answers, references=references, lang="en")["rouge_l"]
    assert by_characters > 0.5 > by_latin_words  # rouge-score's own tokenizer keeps only the digits of Japanese
    with pytest.raises(ValueError, match="lang"):
        modules["chrf"].compute(predictions=answers, references=references, lang="fr")


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_fact_hit_rate_equals_ftlib_metrics(modules, lang):
    answers, _ = TEXTS[lang]
    result = modules["fact_hit_rate"].compute(predictions=answers, references=FACTS[lang])["fact_hit_rate"]
    assert result == metrics.fact_hit_rate(answers, FACTS[lang])
    assert 0 < result < 1


LABELS = [  # (predictions, references): ids as the Trainer gives them, and names as classify.predict gives them
    (np.array([0, 1, 2, 2, 1, 0, 3]), np.array([0, 1, 1, 2, 1, 3, 3])),
    (["pricing", "shipping", "pricing", "warranty"], ["pricing", "pricing", "pricing", "shipping"]),
]


@pytest.mark.parametrize("predictions,references", LABELS)
def test_accuracy_and_macro_f1_equal_scikit_learn(modules, predictions, references):
    assert modules["accuracy"].compute(predictions=predictions, references=references) == \
        {"accuracy": accuracy_score(references, predictions)}
    assert modules["macro_f1"].compute(predictions=predictions, references=references) == \
        {"macro_f1": f1_score(references, predictions, average="macro", zero_division=0)}
    combined = evaluate.combine([evaluate_modules.path("accuracy"), evaluate_modules.path("macro_f1")])
    assert combined.compute(predictions=predictions, references=references) == \
        {"accuracy": metrics.accuracy(references, predictions), "macro_f1": metrics.macro_f1(references, predictions)}


def test_macro_f1_takes_the_labels_to_average_over(modules):
    predictions, references = ["a", "b", "b"], ["a", "b", "a"]
    result = modules["macro_f1"].compute(predictions=predictions, references=references, labels=["a", "b", "c"])
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)  # c: never true, never predicted, 0


def test_the_hubs_rouge_is_our_rouge_l_on_english_text():
    """What evaluate.load("rouge") computes (its script on the Hub, read for this test): rouge-score with its own
    tokenizer and no stemmer, scorer.score(reference, prediction) per pair. With use_aggregator=False its rougeL
    list averages to metrics.rouge_l(lang="en"); its default use_aggregator=True reports the median of 1,000
    bootstrap means of the same scores, within resampling noise of it. On Japanese it scores the Latin and digits
    only."""
    from rouge_score import rouge_scorer, scoring

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=False, tokenizer=None)
    answers, references = TEXTS["en"]
    scores = [scorer.score(reference, answer) for answer, reference in zip(answers, references, strict=True)]
    ours = metrics.rouge_l(answers, references, "en")
    assert ours == pytest.approx(np.mean([score["rougeL"].fmeasure for score in scores]), abs=1e-12)
    aggregator = scoring.BootstrapAggregator()
    for score in scores:
        aggregator.add_scores(score)
    np.random.seed(0)  # rouge-score resamples with numpy's global generator
    bootstrap = aggregator.aggregate()["rougeL"]
    assert bootstrap.low.fmeasure <= ours <= bootstrap.high.fmeasure
    assert bootstrap.mid.fmeasure == pytest.approx(ours, abs=0.03)
    assert scorer.score("保証期間は2年間です。", "保証期間は二年間です")["rougeL"].fmeasure == 0  # only "2" is a token
    assert metrics.rouge_l(["保証期間は二年間です"], ["保証期間は2年間です。"], "ja") > 0.8


def test_every_module_ships_inside_the_package():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "ftlib.evaluate_modules" in setuptools["packages"]
    shipped = setuptools["package-data"]["ftlib.evaluate_modules"]
    for name in evaluate_modules.NAMES:
        script = Path(evaluate_modules.path(name)) / f"{name}.py"
        assert script.is_file(), f"evaluate.load needs {script}: a folder holding a script of the same name"
        assert any(fnmatch(f"{name}/{name}.py", pattern) for pattern in shipped), f"{name}.py is not package data"
    with pytest.raises(ValueError, match="no evaluate module 'rouge'"):
        evaluate_modules.path("rouge")

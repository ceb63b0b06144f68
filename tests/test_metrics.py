"""ftlib.metrics: each metric equals its reference library, hand-computed examples, Japanese, perplexity by hand."""

import math
import random

import pandas as pd
import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from ftlib import metrics

TEXTS = ["Hello! How can I help you today?", "The warranty is 18 months.",
         "保証期間はお届けから18か月です。平日9時から18時まで対応しております。", "Paris."]


def random_labels(seed: int, n: int = 60) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    classes = ["billing", "returns", "shipping", "warranty"]
    return [rng.choice(classes) for _ in range(n)], [rng.choice(classes[:3]) for _ in range(n)]


def random_sentences(seed: int, n: int = 20) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    words = "the a warranty is 18 months from delivery return item within 30 days you can".split()

    def sentence() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))

    return [sentence() for _ in range(n)], [sentence() for _ in range(n)]


# --- fact hits (notebook 03) ------------------------------------------------------------------

def test_fact_hits_unchanged():
    assert metrics.fact_hits("The warranty is ＥＩＧＨＴＥＥＮ  months", ["eighteen months", "30 days"]) == 1
    assert metrics.fact_hit_rate(["a b", "c"], [["a", "b"], ["x", "c"]]) == 0.75


# --- classification ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_equals_sklearn(seed):
    y_true, y_pred = random_labels(seed)
    assert metrics.accuracy(y_true, y_pred) == accuracy_score(y_true, y_pred)
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    table = metrics.per_class(y_true, y_pred)
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for label, row in table.iterrows():
        assert row["precision"] == report[label]["precision"]
        assert row["recall"] == report[label]["recall"]
        assert row["f1-score"] == report[label]["f1-score"]
        assert row["support"] == report[label]["support"]
    assert table["support"].sum() == len(y_true)
    assert (metrics.confusion(y_true, y_pred).to_numpy() == confusion_matrix(y_true, y_pred)).all()


def test_classification_by_hand():
    y_true, y_pred = ["a", "a", "b", "c"], ["a", "b", "b", "b"]
    assert metrics.accuracy(y_true, y_pred) == 0.5
    # F1: a = 2/3 (P 1, R 1/2), b = 1/2 (P 1/3, R 1), c = 0 (never predicted)
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    table = metrics.per_class(y_true, y_pred, labels=["c", "b", "a", "d"])
    assert list(table.index) == ["c", "b", "a", "d"] and table.index.name == "label"
    assert list(table.columns) == ["precision", "recall", "f1-score", "support"]
    assert table.loc["b", "precision"] == pytest.approx(1 / 3) and table.loc["a", "recall"] == 0.5
    assert table.loc["d"].tolist() == [0, 0, 0, 0] and table["support"].dtype.kind == "i"
    expected = pd.DataFrame([[1, 1, 0], [0, 1, 0], [0, 1, 0]], index=pd.Index(["a", "b", "c"], name="true"),
                            columns=pd.Index(["a", "b", "c"], name="predicted"))
    pd.testing.assert_frame_equal(metrics.confusion(y_true, y_pred), expected, check_dtype=False)
    assert metrics.confusion(y_true, y_pred, labels=["c", "a"]).loc["a"].tolist() == [0, 1]


# --- generated text ---------------------------------------------------------------------------

def test_exact_match_by_hand():
    predictions = ["The warranty is 18 months.", "ＰＡＲＩＳ！", "保証期間は18か月です。", "30 days", "Yes"]
    references = ["the  warranty is 18 months", "Paris", "保証期間は18か月です", "thirty days", "No"]
    assert metrics.exact_match(predictions, references) == 3 / 5


def test_rouge_l_by_hand():
    # reference: the cat sat on the mat (6 tokens); prediction: the cat lay on a mat (6 tokens)
    # LCS = the cat on mat = 4, so precision = recall = F = 4/6
    assert metrics.rouge_l(["The cat lay on a mat."], ["the cat sat on the mat"]) == pytest.approx(4 / 6)
    # characters: 保証期間は18か月です。(12) vs 保証期間は18ヶ月です。(12): LCS 11, F = 11/12
    assert metrics.rouge_l(["保証期間は18か月です。"], ["保証期間は18ヶ月です。"], "ja") == pytest.approx(11 / 12)
    # the mean over pairs, not a corpus-level score
    assert metrics.rouge_l(["a b", "c d"], ["a b", "x y"]) == 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_text_metrics_equal_the_libraries(seed):
    predictions, references = random_sentences(seed)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    assert metrics.rouge_l(predictions, references) == pytest.approx(sum(scores) / len(scores))
    assert metrics.chrf(predictions, references) == sacrebleu.corpus_chrf(predictions, [references]).score
    assert metrics.bleu(predictions, references) == sacrebleu.corpus_bleu(predictions, [references]).score
    ja = sacrebleu.corpus_bleu(TEXTS, [TEXTS[::-1]], tokenize="char").score
    assert metrics.bleu(TEXTS, TEXTS[::-1], "ja") == ja
    assert metrics.generation_scores(predictions, references) == {
        "exact_match": metrics.exact_match(predictions, references),
        "rouge_l": metrics.rouge_l(predictions, references),
        "chrf": metrics.chrf(predictions, references), "bleu": metrics.bleu(predictions, references)}


def test_perfect_and_scales():
    scores = metrics.generation_scores(TEXTS, TEXTS, "ja")
    assert scores == pytest.approx({"exact_match": 1.0, "rouge_l": 1.0, "chrf": 100.0, "bleu": 100.0})


JA_NEAR = [("保証期間はお届けから18か月です。", "保証期間はお届けから18ヶ月です。"),
           ("未開封の商品は30日以内に返品できます。", "未開封の商品は30日以内なら返品できます。")]


@pytest.mark.parametrize(("prediction", "reference"), JA_NEAR)
def test_japanese_near_identical_scores_high(prediction, reference):
    assert metrics.rouge_l([prediction], [reference], "ja") > 0.7
    assert metrics.chrf([prediction], [reference]) > 70
    assert metrics.bleu([prediction], [reference], "ja") > 50
    assert metrics.bleu([prediction], [reference], "en") < 10  # 13a: the whole sentence is one word
    assert metrics.exact_match([prediction], [reference]) == 0


def test_japanese_needs_characters_not_the_default_tokenizer():
    same = "お問い合わせありがとうございます。"
    assert metrics.rouge_l([same], [same], "en") == 0  # rouge-score keeps only [a-z0-9]: nothing left
    assert metrics.rouge_l([same], [same], "ja") == 1
    # two different sentences that share only a number: the default tokenizer sees just "18" in both
    other = ["18時までお待ちください"], ["保証期間は18か月です。"]
    assert metrics.rouge_l(*other, "en") == 1
    assert metrics.rouge_l(*other, "ja") < 0.3


@pytest.mark.parametrize("metric", [metrics.exact_match, metrics.rouge_l, metrics.chrf, metrics.bleu,
                                    metrics.generation_scores])
def test_text_metric_errors(metric):
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metric(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        metric([], [])


def test_unknown_lang():
    with pytest.raises(ValueError, match="lang must be one of"):
        metrics.rouge_l(["a"], ["a"], "fr")
    with pytest.raises(ValueError, match="lang must be one of"):
        metrics.bleu(["a"], ["a"], "jp")


# --- perplexity -------------------------------------------------------------------------------

def nll_by_hand(model, ids: list[int], first_scored: int = 1) -> tuple[float, int]:
    """Summed NLL of ids[first_scored:] given everything before, in one unpadded forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    targets = torch.tensor(ids[first_scored:])
    nll = torch.nn.functional.cross_entropy(logits[first_scored - 1:-1], targets, reduction="sum")
    return nll.item(), len(targets)


def test_perplexity_equals_exp_mean_nll_by_hand(tiny):
    model, tokenizer = tiny
    total, count = 0.0, 0
    for text in TEXTS:
        nll, n = nll_by_hand(model, tokenizer(text)["input_ids"])
        total, count = total + nll, count + n
    lengths = {len(tokenizer(t)["input_ids"]) for t in TEXTS}
    assert len(lengths) == len(TEXTS)  # different lengths, batched together: padding must not leak in
    model.train()
    result = metrics.perplexity(model, tokenizer, TEXTS, batch_size=4)
    assert model.training  # training mode restored
    model.eval()
    assert result.tokens == count
    assert result.mean_nll == pytest.approx(total / count, rel=1e-5)
    assert result.value == pytest.approx(math.exp(total / count), rel=1e-5)
    # token-weighted: each text's NLL counts by its number of tokens
    per_text = [metrics.perplexity(model, tokenizer, [t]) for t in TEXTS]
    assert sum(r.mean_nll * r.tokens for r in per_text) / count == pytest.approx(result.mean_nll, rel=1e-5)
    assert metrics.perplexity(model, tokenizer, TEXTS, batch_size=1).mean_nll == pytest.approx(result.mean_nll)
    assert repr(result).startswith(f"perplexity {result.value:.2f} (mean NLL")


def test_perplexity_scores_only_the_text_after_a_prompt(tiny):
    model, tokenizer = tiny
    prompts = ["<|im_start|>user\nWhat is the warranty?<|im_end|>\n<|im_start|>assistant\n", "Q: capital? A:",
               "<|im_start|>user\n保証は？<|im_end|>\n<|im_start|>assistant\n"]
    texts = ["18 months from delivery.<|im_end|>\n", " Paris.", "18か月です。<|im_end|>\n"]
    total, count = 0.0, 0
    for prompt, text in zip(prompts, texts, strict=True):
        context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        nll, n = nll_by_hand(model, context + tokenizer(text, add_special_tokens=False)["input_ids"], len(context))
        total, count = total + nll, count + n
    result = metrics.perplexity(model, tokenizer, texts, prompts=prompts)
    assert result.tokens == count
    assert result.mean_nll == pytest.approx(total / count, rel=1e-5)
    # the text's first token is scored too (given the prompt), unlike without a prompt
    assert metrics.perplexity(model, tokenizer, texts).tokens < count


def long_ids(tokenizer, n: int = 70) -> tuple[str, list[int]]:
    text = " ".join(TEXTS * 3)
    ids = tokenizer(text)["input_ids"]
    assert len(ids) > n
    return text, ids


def test_perplexity_sliding_window_equals_the_guide_by_hand(tiny):
    model, tokenizer = tiny
    text, ids = long_ids(tokenizer)
    max_length, stride = 32, 12
    # the loop of Hugging Face's "Perplexity of fixed-length models" guide, summed instead of averaged
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        window = ids[begin:end]
        first_scored = max(prev_end - begin, 1)
        nll, n = nll_by_hand(model, window, first_scored)
        total, count, prev_end = total + nll, count + n, end
        if end == len(ids):
            break
    result = metrics.perplexity(model, tokenizer, [text, "Paris."], max_length=max_length, stride=stride)
    paris = nll_by_hand(model, tokenizer("Paris.")["input_ids"])
    assert result.tokens == count + paris[1] == len(ids) - 1 + paris[1]  # every token but the first, once
    assert result.mean_nll == pytest.approx((total + paris[0]) / (count + paris[1]), rel=1e-5)


def test_perplexity_stride_equal_to_max_length_is_separate_chunks(tiny):
    model, tokenizer = tiny
    text, ids = long_ids(tokenizer)
    chunks = [nll_by_hand(model, ids[start:start + 20]) for start in range(0, len(ids), 20)]
    result = metrics.perplexity(model, tokenizer, [text], max_length=20, stride=20, batch_size=3)
    assert result.tokens == sum(n for _, n in chunks)
    assert result.mean_nll == pytest.approx(sum(nll for nll, _ in chunks) / result.tokens, rel=1e-5)


def test_perplexity_errors(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="no texts"):
        metrics.perplexity(model, tokenizer, [])
    with pytest.raises(ValueError, match="1 prompts but 2 texts"):
        metrics.perplexity(model, tokenizer, ["a", "b"], prompts=["q"])
    with pytest.raises(ValueError, match="stride"):
        metrics.perplexity(model, tokenizer, ["a"], max_length=8, stride=9)
    with pytest.raises(ValueError, match="no token to score"):
        metrics.perplexity(model, tokenizer, ["a"])  # one token, nothing predicts it


# --- chat rows --------------------------------------------------------------------------------

ROWS = [{"prompt": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Warranty?"}],
         "completion": [{"role": "assistant", "content": "18 months from delivery."}]},
        {"prompt": [{"role": "user", "content": "保証は？"}],
         "completion": [{"role": "assistant", "content": "18か月です。"}]}]


def test_chat_pairs_split_the_full_rendering(tiny):
    from datasets import Dataset

    model, tokenizer = tiny
    prompts, texts = metrics.chat_pairs(Dataset.from_list(ROWS), tokenizer)
    for row, prompt, text in zip(ROWS, prompts, texts, strict=True):
        assert prompt + text == tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        assert prompt.endswith("<|im_start|>assistant\n")
        assert text == row["completion"][0]["content"] + "<|im_end|>\n"
    assert metrics.perplexity(model, tokenizer, texts, prompts=prompts).tokens > 0


def test_chat_pairs_refuses_a_prompt_that_is_not_a_prefix():
    class Template:
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
            return "PROMPT" if add_generation_prompt else "FULL"

    with pytest.raises(ValueError, match="not a prefix"):
        metrics.chat_pairs(ROWS, Template())


# --- report card ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def course():
    from ftlib import data

    dataset, _ = data.prepare("en")
    return dataset, data.general_dataset("en").select(range(6))


def test_score_fills_every_metric_from_real_answers(tiny, course):
    from ftlib import data

    model, tok = tiny
    dataset, general = course
    test = dataset["test"].select(range(4))
    scores = metrics.score(model, tok, test, "en", "tiny", validation=dataset["validation"].select(range(4)),
                           general=general, max_new_tokens=8)
    assert set(scores.metrics) == set(metrics.HIGHER_IS_BETTER)
    assert not any(math.isnan(v) for v in scores.metrics.values())
    assert len(scores.answers) == 4 and list(scores.answers["intent"]) == list(test["intent"])
    # the numbers are those of the answers in the table, recomputed here with the libraries
    answers, refs = list(scores.answers["answer"]), [r["completion"][0]["content"] for r in test]
    assert scores.metrics["chrF"] == pytest.approx(sacrebleu.corpus_chrf(answers, [refs]).score)
    assert scores.metrics["fact hit rate"] == metrics.fact_hit_rate(answers, data.facts_for(test, "en"))
    assert scores.metrics["validation perplexity"] > 50  # a random model is nearly uniform over 384 tokens


def test_report_card_compares_and_says_which_is_better():
    base = metrics.Scores("base", {"fact hit rate": 0.2, "validation perplexity": 9.0, "tokens/s": 10.0}, None)
    tuned = metrics.Scores("tuned", {"fact hit rate": 0.5, "validation perplexity": 12.0, "tokens/s": 10.0}, None)
    card = metrics.report_card(base, tuned)
    assert card.frame.loc["fact hit rate", "change"] == pytest.approx(0.3)
    # without intervals the card says so: perplexity, lower is better
    assert list(card.frame["better"]) == ["yes (no interval)", "no (no interval)", "same"]
    assert card.figure is not None and "tuned" in card._repr_html_()


def test_report_card_decides_by_the_intervals_and_shows_a_zero_base():
    rates = {"fact hit rate": (0, 28), "exact match": (0, 0), "general accuracy": (10, 13)}
    base, tuned = (metrics.Scores(name, {m: k / 40 for m, (*_, k) in []}, None) for name in ("base", "tuned"))
    for s, side in ((base, 0), (tuned, 1)):
        s.intervals = {m: metrics.wilson(ks[side], 40) for m, ks in rates.items()}
        s.metrics = {m: e.value for m, e in s.intervals.items()}
    card = metrics.report_card(base, tuned)
    assert list(card.frame["better"]) == ["yes", "same", "not distinguishable at this n"]
    assert list(card.frame["n"]) == [40, 40, 40] and card.frame.loc["fact hit rate", "base 95%"] == "[0, 0.0876]"
    labels = [t.get_text() for t in card.figure.axes[0].texts]  # each bar's value is written beside it
    assert labels.count("0.00") == 3 and "0.70" in labels


def test_loss_gap_pairs_each_evaluation_with_the_last_training_loss():
    history = pd.DataFrame({"step": [0, 2, 4, 6], "train_loss": [float("nan"), 2.0, 1.0, 0.5],
                            "eval_loss": [3.0, float("nan"), 2.5, 2.8]})
    gap = metrics.loss_gap(history)
    assert list(gap.index) == [0, 4, 6] and gap.loc[4, "gap"] == pytest.approx(1.5)
    assert gap.loc[6, "gap"] == pytest.approx(2.3) and math.isnan(gap.loc[0, "train loss"])


# --- your own data: with a facts column, and without facts -----------------------------------------

OWN = pd.DataFrame({"prompt": ["When do you open?", "How long can I borrow a book?", "Is the wifi free?"],
                    "completion": ["We open at 10:00, Tuesday to Saturday.", "Three weeks, renewable twice.",
                                   "Yes, the wifi is free."]})


def own_rows(facts=None):
    """Prompt/completion rows as data.from_file makes them: no intent, a `facts` column only when given."""
    from ftlib import data

    return data.to_dataset({"test": OWN if facts is None else OWN.assign(facts=facts)})["test"]


def fake_generate(texts):
    """A stand-in for generate.generate that answers `texts`, so the scores are known exactly."""
    from ftlib import generate

    def answer(model, tokenizer, prompts, *args, **kwargs):
        return generate.Generations(list(texts[:len(prompts)]), new_tokens=12, seconds=0.5, latencies=[0.2] * 3)

    return answer


def test_score_with_a_facts_column_counts_the_facts(monkeypatch):
    from ftlib import generate

    answers = ["Open 10:00 to 19:00.", "Three weeks.", "No."]
    monkeypatch.setattr(generate, "generate", fake_generate(answers))
    test = own_rows([["10:00", "Tuesday to Saturday"], ["three weeks"], []])
    scores = metrics.score(None, None, test, "en", "fake")
    assert scores.metrics["fact hit rate"] == pytest.approx(2 / 3) and scores.note == ""
    assert "intent" not in scores.answers  # your data has no intents
    assert list(scores.answers["fact share"].fillna(-1)) == [0.5, 1.0, -1]  # no facts: NaN, left out of the rate
    card = metrics.report_card(scores, scores)
    assert card.note == "" and card.frame.loc["fact hit rate", "better"] == "same"


def test_score_without_facts_uses_the_text_metrics_and_says_so(monkeypatch):
    from ftlib import generate

    answers = list(OWN["completion"][:2]) + ["Maybe."]
    monkeypatch.setattr(generate, "generate", fake_generate(answers))
    base = metrics.score(None, None, own_rows(), "en", "base")
    assert "fact hit rate" not in base.metrics and base.note == metrics.NO_FACTS and metrics.NO_FACTS in repr(base)
    assert base.metrics["exact match"] == pytest.approx(2 / 3)
    assert base.metrics["chrF"] == pytest.approx(sacrebleu.corpus_chrf(answers, [list(OWN["completion"])]).score)
    assert list(base.answers.columns) == ["question", "reference", "answer", "chrF"]
    chrf = base.intervals["chrF"]
    assert chrf.value == pytest.approx(base.metrics["chrF"]) and chrf.low <= chrf.value <= chrf.high and chrf.n == 3
    better = metrics.Estimate(chrf.high + 5, chrf.high + 1, chrf.high + 9, 3)
    tuned = metrics.Scores("tuned", {**base.metrics, "chrF": better.value}, base.answers, base.note,
                           {**base.intervals, "chrF": better})
    card = metrics.report_card(base, tuned)
    assert "fact hit rate" not in card.frame.index and card.frame.loc["chrF", "better"] == "yes"
    assert card.note == metrics.NO_FACTS and metrics.NO_FACTS in repr(card) and metrics.NO_FACTS in card._repr_html_()
    assert list(metrics.memorisation(tuned, base).columns) == ["ROUGE-L", "chrF"]


def test_score_without_facts_on_a_real_model(tiny):
    model, tok = tiny
    scores = metrics.score(model, tok, own_rows(), "en", "tiny", validation=own_rows(), max_new_tokens=4)
    assert set(scores.metrics) == set(metrics.HIGHER_IS_BETTER) - {"fact hit rate", "general perplexity",
                                                                     "general accuracy"}
    assert not any(math.isnan(v) for v in scores.metrics.values()) and len(scores.answers) == 3

"""Metrics that judge a model: facts in answers (notebook 03), then classification, text overlap and perplexity (04).

Each metric is the reference library's own: scikit-learn for labels, rouge-score and sacrebleu for generated
text, the model's cross-entropy for perplexity. Scales follow the libraries: exact match and ROUGE-L are
shares (0-1), chrF and BLEU are 0-100 as sacrebleu reports them. Text metrics take `lang` ("en" or "ja"):
Japanese has no spaces between words, so it is compared character by character.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

import pandas as pd
import torch

from ftlib import data, generate, plots

LANGS = ("en", "ja")


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def fact_hits(answer: str, facts: list[str]) -> int:
    """How many of the required facts an answer contains (after NFKC, case folding and space normalisation).

    Taught in notebook 05 (notebook 03 scores through row_scores).
    """
    answer = _norm(answer)
    return sum(_norm(fact) in answer for fact in facts)


def fact_hit_rate(answers: list[str], facts: list[list[str]]) -> float:
    """The share of all required facts found in their answers: the course's headline task metric.

    Taught in notebook 05.
    """
    total = sum(len(f) for f in facts)
    if not total:
        raise ValueError("no facts to check")
    return sum(fact_hits(a, f) for a, f in zip(answers, facts, strict=True)) / total


# --- classification (scikit-learn) ---------------------------------------------------------------

def accuracy(y_true, y_pred) -> float:
    """The share of predicted labels equal to the true ones. Taught in notebook 04."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def macro_f1(y_true, y_pred, labels=None) -> float:
    """F1 averaged over labels with equal weight, so rare labels count as much as common ones.

    A label never predicted and never true scores 0. Used by classify.train_classifier (notebook 06).
    """
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def per_class(y_true, y_pred, labels=None) -> pd.DataFrame:
    """Precision, recall, F1 and support of each label (all labels seen, or `labels` in that order).

    Taught in notebook 06.
    """
    from sklearn.metrics import classification_report
    from sklearn.utils.multiclass import unique_labels

    labels = unique_labels(y_true, y_pred) if labels is None else labels
    report = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
    table = pd.DataFrame([report[str(label)] for label in labels], index=pd.Index(labels, name="label"))
    return table.astype({"support": int})


def confusion(y_true, y_pred, labels=None) -> pd.DataFrame:
    """The confusion matrix as a table: one row per true label, one column per predicted label.

    Taught in notebook 06 (drawn there by plots.confusion).
    """
    from sklearn.metrics import confusion_matrix
    from sklearn.utils.multiclass import unique_labels

    labels = unique_labels(y_true, y_pred) if labels is None else labels
    return pd.DataFrame(confusion_matrix(y_true, y_pred, labels=labels),
                        index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))


# --- generated text (rouge-score, sacrebleu) -----------------------------------------------------

def _check(predictions: list[str], references: list[str], lang: str = "en") -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, not {lang!r}")


class _Characters:
    """A rouge-score tokenizer for Japanese: one token per character (NFKC, case folded, spaces dropped)."""

    def tokenize(self, text: str) -> list[str]:
        return list(_norm(text).replace(" ", ""))


def exact_match(predictions: list[str], references: list[str]) -> float:
    """The share of predictions equal to their reference after normalisation (0-1).

    Both sides are NFKC-normalised (full-width ！？ become !?), case folded, with runs of whitespace
    collapsed and trailing sentence punctuation (. ! ? 。) stripped. Used by metrics.score (notebook 04).
    """
    _check(predictions, references)

    def norm(text: str) -> str:
        return _norm(text).rstrip(".!?。").rstrip()

    return sum(norm(p) == norm(r) for p, r in zip(predictions, references, strict=True)) / len(predictions)


def rouge_l(predictions: list[str], references: list[str], lang: str = "en") -> float:
    """Mean ROUGE-L F-measure (longest common subsequence of tokens) of each prediction and reference (0-1).

    "en" uses rouge-score's own tokenizer (lower case, [a-z0-9] words). "ja" compares characters:
    Japanese has no spaces between words, and rouge-score's tokenizer drops every non-Latin character,
    so Japanese would score 0 (or 1 when only a shared number survives). Used by metrics.score (notebook 04).
    """
    from rouge_score import rouge_scorer  # imports nltk: seconds, so only when needed

    _check(predictions, references, lang)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Characters() if lang == "ja" else None)
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    return sum(scores) / len(scores)


def chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF of sacrebleu (0-100): F-score of character n-grams, so it needs no `lang`.

    Taught in notebook 05.
    """
    import sacrebleu

    _check(predictions, references)
    return sacrebleu.corpus_chrf(predictions, [references]).score


def bleu(predictions: list[str], references: list[str], lang: str = "en") -> float:
    """Corpus BLEU of sacrebleu (0-100): "en" with its standard 13a tokenizer, "ja" on characters.

    Character BLEU needs no word segmenter ("ja-mecab" would need MeCab and its dictionary). Scores
    are comparable only under the same tokenizer. Used by metrics.score (notebook 04).
    """
    import sacrebleu

    _check(predictions, references, lang)
    return sacrebleu.corpus_bleu(predictions, [references], tokenize="char" if lang == "ja" else "13a").score


def generation_scores(predictions: list[str], references: list[str], lang: str = "en") -> dict[str, float]:
    """All four text metrics: exact_match and rouge_l as shares (0-1), chrf and bleu on sacrebleu's 0-100.

    Used by metrics.score (notebook 04).
    """
    return {"exact_match": exact_match(predictions, references), "rouge_l": rouge_l(predictions, references, lang),
            "chrf": chrf(predictions, references), "bleu": bleu(predictions, references, lang)}


# --- before / after, with the uncertainty of a small test set -------------------------------------

def row_scores(answers: list[str], references: list[str], facts: list[list[str]] | None = None) -> list[float]:
    """One score per answer, 0-1: the share of its facts found when `facts` are given (rows without facts are
    skipped: None), else sacrebleu's sentence chrF / 100 against its reference. Taught in notebook 08.
    """
    import sacrebleu

    _check(answers, references)
    if facts is not None:
        return [fact_hits(a, f) / len(f) if f else None for a, f in zip(answers, facts, strict=True)]
    return [sacrebleu.sentence_chrf(a, [r]).score / 100 for a, r in zip(answers, references, strict=True)]


@dataclass(repr=False)
class Comparison:
    """Before vs after on the same rows: means, the paired difference and its 95% bootstrap interval, n."""

    metric: str
    n: int
    before: float
    after: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """What the interval (not the point estimate) supports at this n."""
        if self.low > 0:
            return f"better: the 95% interval of the change lies above 0 (n={self.n})"
        if self.high < 0:
            return f"worse: the 95% interval of the change lies below 0 (n={self.n})"
        return f"not distinguishable at this n (n={self.n}): the 95% interval of the change includes 0"

    def frame(self) -> pd.DataFrame:
        """One row: metric, n, before, after, change, its 95% interval."""
        return pd.DataFrame([{"metric": self.metric, "n": self.n, "before": round(self.before, 3),
                              "after": round(self.after, 3), "change": round(self.after - self.before, 3),
                              "95% interval": f"[{self.low:+.3f}, {self.high:+.3f}]"}]).set_index("metric")

    def __repr__(self) -> str:
        return f"{self.frame().to_string()}\n{self.verdict}"

    def _repr_html_(self) -> str:
        return self.frame().to_html() + f"<p>{self.verdict}</p>"


def compare(before: list[float | None], after: list[float | None], metric: str = "score",
            seed: int = 0) -> Comparison:
    """Paired before/after scores of the same rows (row_scores): the mean change with a 95% BCa bootstrap interval
    (scipy.stats.bootstrap, 9,999 resamples of the rows). Rows scored None on either side are left out.

    Taught in notebook 08.
    """
    import numpy as np
    from scipy import stats

    pairs = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
    if len(pairs) < 2:
        raise ValueError(f"{len(pairs)} scored rows: an interval needs at least 2")
    b, a = np.array(pairs, dtype=float).T
    diff = a - b
    if np.all(diff == diff[0]):  # every row changed by the same amount: no spread to resample
        low = high = float(diff[0])
    else:
        ci = stats.bootstrap((diff,), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                             rng=np.random.default_rng(seed)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return Comparison(metric, len(diff), float(b.mean()), float(a.mean()), low, high)


# --- perplexity ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Perplexity:
    """Token-weighted perplexity: exp of the mean negative log-likelihood (nats) over all scored tokens."""

    value: float
    mean_nll: float
    tokens: int

    def __repr__(self) -> str:
        return f"perplexity {self.value:.2f} (mean NLL {self.mean_nll:.4f} nats over {self.tokens:,} tokens)"


def chat_pairs(rows, tokenizer) -> tuple[list[str], list[str]]:
    """(prompts, texts) of prompt/completion chat rows, rendered with the chat template, for `perplexity`.

    The prompt is the prompt messages with the assistant header (add_generation_prompt=True); the text is
    the rest of the whole conversation: the answer and its end-of-turn token, as completion-only training
    sees it. Used by metrics.score (notebook 04).
    """
    prompts, texts = [], []
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently inside the whole conversation:\n"
                             f"{prompt!r}\nis not a prefix of\n{full!r}")
        prompts.append(prompt)
        texts.append(full[len(prompt):])
    return prompts, texts


def _windows(ids: list[int], labels: list[int], max_length: int, stride: int):
    """Windows of at most max_length tokens, moving by stride; tokens scored in an earlier window are context."""
    scored_until = 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        yield ids[begin:end], [-100] * (scored_until - begin) + labels[scored_until:end]
        scored_until = end
        if end == len(ids):
            break


def perplexity(model, tokenizer, texts: list[str], prompts: list[str] | None = None, max_length: int = 1024,
               stride: int = 512, batch_size: int = 8) -> Perplexity:
    """Perplexity of the model on `texts`: exp(total NLL / scored tokens), weighted by tokens, not by text.

    Texts are tokenized as the tokenizer does by default. With `prompts` (see chat_pairs), each example is
    prompt + text, tokenized apart (the prompt without added special tokens: a rendered template carries
    its own) and only the text's tokens are scored. An example longer than max_length is scored in windows
    of max_length tokens moving by stride, as in Hugging Face's "Perplexity of fixed-length models" guide.
    Windows are batched with right padding; padding is never scored. Taught in notebook 04.
    """
    from tqdm.auto import tqdm

    if not texts:
        raise ValueError("no texts to score")
    if prompts is not None and len(prompts) != len(texts):
        raise ValueError(f"{len(prompts)} prompts but {len(texts)} texts")
    if not 0 < stride <= max_length:
        raise ValueError(f"stride must be between 1 and max_length ({max_length}), not {stride}")
    windows = []
    for i, text in enumerate(texts):
        if prompts is None:
            context, ids = [], tokenizer(text)["input_ids"]
        else:
            context = tokenizer(prompts[i], add_special_tokens=False)["input_ids"]
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        windows += _windows(context + ids, [-100] * len(context) + ids, max_length, stride)
    # the first token of a window has no prediction; longest first, so running out of memory shows at once
    windows = sorted((w for w in windows if any(label != -100 for label in w[1][1:])), key=lambda w: -len(w[0]))
    if not windows:
        raise ValueError("no token to score: each text needs a token after its first (or after its prompt)")

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        return torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True,
                                               padding_value=value).to(model.device)

    total, count = 0.0, 0
    batches = [windows[start:start + batch_size] for start in range(0, len(windows), batch_size)]
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(batches, desc="perplexity", leave=False, disable=len(batches) < 10):
            ids = pad([w[0] for w in batch], tokenizer.pad_token_id or 0)  # any id: padding is masked
            labels = pad([w[1] for w in batch], -100)[:, 1:]
            mask = pad([[1] * len(w[0]) for w in batch], 0)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            scored = labels != -100
            total += torch.nn.functional.cross_entropy(logits[scored].float(), labels[scored], reduction="sum").item()
            count += int(scored.sum())
    model.train(was_training)
    return Perplexity(math.exp(total / count), total / count, count)


# --- report card -----------------------------------------------------------------------------------

HIGHER_IS_BETTER = {"fact hit rate": True, "exact match": True, "ROUGE-L": True, "chrF": True, "BLEU": True,
                    "validation perplexity": False, "general perplexity": False, "general accuracy": True,
                    "tokens/s": True, "latency p50 s": False, "latency p95 s": False}


NO_FACTS = ("no facts in this data (no facts column): the task is scored by the text metrics alone "
            "(exact match, ROUGE-L, chrF, BLEU against the reference answers)")


@dataclass(repr=False)
class Scores:
    """One model's results: `metrics` (name -> value), `answers` (one row per question) and `note`, which says
    how the task was scored when it was not by facts (NO_FACTS), else "".
    """

    name: str
    metrics: dict[str, float]
    answers: pd.DataFrame
    note: str = ""

    def __repr__(self) -> str:
        return f"{self.name}: " + ", ".join(f"{k} {v:.3g}" for k, v in self.metrics.items()) + (
            f" ({self.note})" if self.note else "")


def answer_table(questions: list[str], answers: list[str], references: list[str],
                 facts: list[list[str]] | None = None, intents: list[str] | None = None,
                 lang: str = "en") -> pd.DataFrame:
    """One row per answer: question, intent, reference, answer, required facts, share of them found, chrF.

    The per-answer chrF is sacrebleu's sentence chrF. Without `facts` (data without facts) the two fact
    columns are left out, without `intents` (your own data) the intent column. Used by metrics.score (notebook 04).
    """
    import sacrebleu

    table = pd.DataFrame({"question": questions, "reference": references, "answer": answers})
    if intents is not None:
        table.insert(1, "intent", list(intents))
    if facts is not None:
        table["facts"] = [" / ".join(f) for f in facts]
        table["fact share"] = [fact_hits(a, f) / len(f) if f else float("nan")
                               for a, f in zip(answers, facts, strict=True)]
    table["chrF"] = [sacrebleu.sentence_chrf(a, [r]).score for a, r in zip(answers, references, strict=True)]
    return table


def score(model, tokenizer, test, lang: str = "en", name: str = "model", validation=None, general=None,
          max_new_tokens: int = 48, batch_size: int = 8, system: str | None = None) -> Scores:
    """Score one model: task metrics on `test`, perplexities, general ability and speed.

    test / validation: prompt/completion rows (data.course_dataset or data.from_file splits); general:
    data.general_dataset rows. Task metrics compare the greedy answers with the references (exact match,
    ROUGE-L, chrF, BLEU) and, where the rows have facts (data.facts_of: a `facts` column, or the course's
    fact sheet), count the facts found ("fact hit rate"); without facts that metric is left out and
    `note` says so (NO_FACTS). Validation perplexity scores the reference answers given their questions;
    general accuracy counts answers that contain an accepted answer. Taught in notebook 04.
    """
    out = generate.generate(model, tokenizer, [row["prompt"] for row in test], max_new_tokens, batch_size, system)
    references = [row["completion"][0]["content"] for row in test]
    facts = data.facts_of(test, lang)
    intents = list(test["intent"]) if "intent" in test.column_names else None
    answers = answer_table([row["prompt"][-1]["content"] for row in test], out.texts, references, facts,
                           intents, lang)
    metrics = {"fact hit rate": fact_hit_rate(out.texts, facts)} if facts else {}
    metrics |= dict(zip(["exact match", "ROUGE-L", "chrF", "BLEU"],
                        generation_scores(out.texts, references, lang).values(), strict=True))
    if validation is not None:
        prompts, texts = chat_pairs(validation, tokenizer)
        metrics["validation perplexity"] = perplexity(model, tokenizer, texts, prompts).value
    if general is not None:
        prompts, texts = chat_pairs(general, tokenizer)
        metrics["general perplexity"] = perplexity(model, tokenizer, texts, prompts).value
        said = generate.generate(model, tokenizer, [row["prompt"] for row in general], 16, batch_size).texts
        right = [fact_hits(answer, row["accept"]) > 0 for answer, row in zip(said, general, strict=True)]
        metrics["general accuracy"] = sum(right) / len(right)
    metrics |= {"tokens/s": out.tokens_per_second, "latency p50 s": out.latency(50), "latency p95 s": out.latency(95)}
    return Scores(name, metrics, answers, "" if facts else NO_FACTS)


@dataclass(repr=False)
class ReportCard:
    """Models side by side: `frame` (one row per metric, one column per model, and the change), `figure`, and
    `note`: how the task was scored when not by facts (NO_FACTS), else "".
    """

    frame: pd.DataFrame
    figure: object
    note: str = ""

    def _repr_html_(self) -> str:
        note = f"<p>{self.note}</p>" if self.note else ""
        return self.frame.style.format(precision=3, na_rep="")._repr_html_() + note

    def __repr__(self) -> str:
        return self.frame.round(3).to_string() + (f"\n{self.note}" if self.note else "")


def report_card(base: Scores, tuned: Scores, *others: Scores) -> ReportCard:
    """Compare models metric by metric: one DataFrame (with the change from the first model and whether it
    is better) and one chart (each model's value relative to the first's). Data without facts has no fact
    hit rate: the card compares the text metrics and its `note` says so (NO_FACTS). Taught in notebook 04.
    """
    runs = (base, tuned, *others)
    frame = pd.DataFrame({s.name: s.metrics for s in runs})
    last = frame[runs[-1].name]
    frame["change"] = last - frame[base.name]
    higher = frame.index.map(lambda m: HIGHER_IS_BETTER.get(m, True))
    frame["better"] = [("yes" if (c > 0) == h else "no") if c == c and c != 0 else "same"
                       for c, h in zip(frame["change"], higher, strict=True)]
    note = "" if "fact hit rate" in frame.index else NO_FACTS
    return ReportCard(frame, plots.report_card(frame[[s.name for s in runs]], higher), note)


# --- overfitting ---------------------------------------------------------------------------------------

def loss_gap(history: pd.DataFrame) -> pd.DataFrame:
    """Training vs validation loss at each evaluation of a run (train.TrainResult.history), and their gap.

    A gap that keeps widening while training loss falls is overfitting. Taught in notebooks 03 and 04.
    """
    evals = history.dropna(subset=["eval_loss"]).set_index("step")["eval_loss"]
    trained = history.dropna(subset=["train_loss"]).set_index("step")["train_loss"]
    frame = pd.DataFrame({"train loss": trained.reindex(evals.index, method="ffill"), "validation loss": evals})
    frame["gap"] = frame["validation loss"] - frame["train loss"]
    return frame


def memorisation(seen: Scores, unseen: Scores) -> pd.DataFrame:
    """The same metrics on questions the model was trained on (`seen`) and on held-out ones (`unseen`), from
    `score`: a model that recites its training answers but fails on new questions has memorised rather than
    learned. Data without facts compares ROUGE-L and chrF alone. Taught in notebook 04.
    """
    columns = [m for m in ("fact hit rate", "ROUGE-L", "chrF") if m in seen.metrics and m in unseen.metrics]
    frame = pd.DataFrame({"training questions": seen.metrics, "held-out questions": unseen.metrics}).T[columns]
    frame.loc["difference"] = frame.iloc[0] - frame.iloc[1]
    return frame

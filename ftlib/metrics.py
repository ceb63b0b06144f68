"""Metrics that judge a model: facts in answers (notebook 03), then classification, text overlap and perplexity (04).

Each metric is the reference library's own: scikit-learn for labels, rouge-score and sacrebleu for generated
text, the model's cross-entropy for perplexity. Scales follow the libraries: exact match and ROUGE-L are
shares (0-1), chrF and BLEU are 0-100 as sacrebleu reports them. Text metrics take `lang` ("en" or "ja"):
Japanese has no spaces between words, so it is compared character by character.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd
import torch

from ftlib import data, generate, plots

LANGS = ("en", "ja")


_CIRCLED = "".join(map(chr, [*range(0x2460, 0x2474), 0x24EA, *range(0x3251, 0x3260), *range(0x32B1, 0x32C0)]))
_BEFORE_NFKC = str.maketrans(dict.fromkeys("~\u02dc\u2053\u223c\u301c\u3030\uff5e", "〜")
                             | dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d", "-")
                             | {c: f"({unicodedata.normalize('NFKC', c)})" for c in _CIRCLED})
_FACT_FORMS = [  # (pattern, replacement) applied in order to the _norm form of facts and answers
    (re.compile(r"(?<=\d)[ヶヵケカ箇](?=[月所])"), "か"),  # 18ヶ月, 18カ月, 18箇月 = 18か月
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),  # 8,800 = 8800
    (re.compile(r"(?<=\d)-(?=[^\W\d_])"), " "),  # 18-month = 18 month
    (re.compile(r"(?<=\d) (?=[^\s\d])|(?<=[〜\-¥$]) (?=\d)"), ""),  # 128 GB = 128GB, 5 〜 8 = 5〜8, ¥ 480 = ¥480
    (re.compile(r"¥(\d+)"), r"\1円"),  # ¥8,800 = 8,800円
    (re.compile(r"(?<=\d)yen(?![a-z])"), "円"),  # 8,800 yen = 8,800円
    (re.compile(r"ツバメテック|tsubame tech"), "tsubame"),  # the brand's spellings, see data/README.md
]


def _norm(text: str) -> str:
    """NFKC, case folding, one space for each run of whitespace, 〜 for every tilde and wave dash
    (～ U+FF5E, 〜 U+301C, ~, ˜ ...), - for every dash (– — − ...) and (1) for ① (NFKC alone makes
    「①2.4GHz」 read 12.4GHz).

    Used by the text metrics of notebooks 03 and 04.
    """
    text = unicodedata.normalize("NFKC", text.translate(_BEFORE_NFKC)).casefold()
    return " ".join(text.split())


def _fact_form(text: str) -> str:
    """_norm, then the notations that write one fact two ways (_FACT_FORMS) made one. Used by fact_hits."""
    text = _norm(text)
    for pattern, replacement in _FACT_FORMS:
        text = pattern.sub(replacement, text)
    return text


def _has(answer: str, fact: str) -> bool:
    """Whether the fact form `fact` is in `answer`, a number in it not part of a longer one (8,800円 is not in
    18,800円). Used by fact_hits."""
    pattern = re.escape(fact)
    if fact[:1].isdigit():
        pattern = r"(?<!\d)(?<!\d\.)" + pattern
    if fact[-1:].isdigit():
        pattern += r"(?!\.?\d)"
    return re.search(pattern, answer) is not None


def fact_hits(answer: str, facts: list[str]) -> int:
    """How many of the required facts an answer contains, a notation variant counting as the same string.

    Both sides are NFKC-normalised and case folded; tildes and wave dashes (5～8, 5~8, 5〜8), full- and
    half-width forms, spaces between a number and its unit (128 GB, 128GB), thousands separators and
    yen notation (¥8,800, 8,800円, 8800 yen), ヶ月/か月 and the brand's spellings (ツバメテック, Tsubame
    Tech, Tsubame) count as one. A number must match whole: 5〜7営業日 does not contain 5〜8営業日 and
    18,800円 does not contain 8,800円.

    Taught in notebook 05 (notebook 03 scores through row_scores).
    """
    answer = _fact_form(answer)
    return sum(_has(answer, _fact_form(fact)) for fact in facts)


def fact_hit_rate(answers: list[str], facts: list[list[str]]) -> float:
    """The share of all required facts found in their answers: the course's headline task metric.

    Used by metrics.score (notebook 04).
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


# --- intervals: every measured rate or mean comes with its 95% interval and n ------------------------

@dataclass(frozen=True)
class Estimate:
    """A measured value with its 95% interval and n, the number of rows behind it. Taught in notebook 03."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}] (n={self.n})"

    def as_dict(self) -> dict:
        """{"value", "low", "high", "n"}: what course.record writes to build/course_results.json."""
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def wilson(hits: int, n: int) -> Estimate:
    """A rate `hits / n` with its 95% Wilson score interval (scipy.stats.binomtest), which stays inside 0-1 and
    is not empty at 0 or n hits, unlike the textbook p +- 1.96 SE. Taught in notebook 03.
    """
    from scipy import stats

    if n < 1:
        raise ValueError("a rate needs at least one row")
    ci = stats.binomtest(int(hits), n).proportion_ci(confidence_level=0.95, method="wilson")
    return Estimate(hits / n, float(ci.low), float(ci.high), n)


def interval(scores: list[float | None], seed: int = 0) -> Estimate:
    """The mean of per-row scores with its 95% interval: Wilson's when every score is 0 or 1 (a rate), else a BCa
    bootstrap of the rows (scipy.stats.bootstrap, 9,999 resamples). Rows scored None are left out.

    Taught in notebook 03.
    """
    import numpy as np
    from scipy import stats

    values = np.array([s for s in scores if s is not None], dtype=float)
    if not len(values):
        raise ValueError("no scored rows")
    if np.isin(values, (0.0, 1.0)).all():
        return wilson(int(values.sum()), len(values))
    if np.all(values == values[0]) or len(values) < 3:  # no spread to resample
        return Estimate(float(values.mean()), float(values.min()), float(values.max()), len(values))
    ci = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                         rng=np.random.default_rng(seed)).confidence_interval
    return Estimate(float(values.mean()), float(ci.low), float(ci.high), len(values))



def _bootstrap_rows(statistic, n: int, seed: int = 0, resamples: int = 1999) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of `statistic(indices)` over resamples of n rows with replacement."""
    import numpy as np

    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(resamples)]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def ratio_interval(hits: list[int], totals: list[int], seed: int = 0) -> Estimate:
    """sum(hits) / sum(totals) over rows (facts found / facts required) with its 95% interval: Wilson's when every
    row has one item, else a percentile bootstrap of the rows (a row's items are not independent).
    Used by metrics.score (notebook 04).
    """
    import numpy as np

    h, t = np.array(hits, dtype=float), np.array(totals, dtype=float)
    if not t.sum():
        raise ValueError("nothing to count")
    if (t == 1).all():
        return wilson(int(h.sum()), len(t))
    low, high = _bootstrap_rows(lambda i: h[i].sum() / max(t[i].sum(), 1), len(t), seed)
    return Estimate(float(h.sum() / t.sum()), low, high, len(t))


def text_intervals(predictions: list[str], references: list[str], lang: str = "en", seed: int = 0
                   ) -> dict[str, Estimate]:
    """The four text metrics of generation_scores, each with its 95% interval over the questions: Wilson for exact
    match, a BCa bootstrap of the per-answer F for ROUGE-L, and for the corpus scores chrF and BLEU a percentile
    bootstrap that resamples sacrebleu's per-sentence statistics (as sacrebleu's own paired bootstrap does).
    The values equal generation_scores'. Used by metrics.score (notebook 04).
    """
    import numpy as np
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU, CHRF

    _check(predictions, references, lang)
    n = len(predictions)
    exact = round(exact_match(predictions, references) * n)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Characters() if lang == "ja" else None)
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    out = {"exact match": wilson(exact, n), "ROUGE-L": interval(rouge, seed)}
    for name, metric in (("chrF", CHRF()), ("BLEU", BLEU(tokenize="char" if lang == "ja" else "13a"))):
        stats = np.array(metric._extract_corpus_statistics(predictions, [references]))
        value = metric._compute_score_from_stats(list(stats.sum(0))).score
        low, high = _bootstrap_rows(lambda i, m=metric, st=stats: m._compute_score_from_stats(list(st[i].sum(0))).score,
                                    n, seed)
        out[name] = Estimate(float(value), low, high, n)
    return out


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
    before_interval: Estimate | None = None  # each arm's own 95% interval (Wilson for 0/1 scores)
    after_interval: Estimate | None = None

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
        row = {"metric": self.metric, "n": self.n, "before": round(self.before, 3)}
        if self.before_interval:
            row["before 95%"] = f"[{self.before_interval.low:.3f}, {self.before_interval.high:.3f}]"
        row["after"] = round(self.after, 3)
        if self.after_interval:
            row["after 95%"] = f"[{self.after_interval.low:.3f}, {self.after_interval.high:.3f}]"
        row |= {"change": round(self.after - self.before, 3), "change 95%": f"[{self.low:+.3f}, {self.high:+.3f}]"}
        return pd.DataFrame([row]).set_index("metric")

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
    return Comparison(metric, len(diff), float(b.mean()), float(a.mean()), low, high,
                      interval(list(b), seed), interval(list(a), seed))


@dataclass(repr=False)
class Ladder:
    """Several ways of answering the same questions: each way's mean with its 95% interval (`frame`), the paired
    change of each step along `order` (`steps`, Comparisons), and `verdict`, the claim "order[0] < order[1] < ..."
    judged by the steps' intervals, never by the point estimates. Taught in notebook 05.
    """

    metric: str
    frame: pd.DataFrame
    steps: list[Comparison]
    order: list[str]

    @property
    def verdict(self) -> str:
        """"holds" only when every step's interval lies above 0; "does not hold" when one lies below 0; else
        which steps this n cannot tell apart."""
        n = self.steps[0].n
        claim = " < ".join(self.order)
        below = [s.metric for s in self.steps if s.high < 0]
        unclear = [s.metric for s in self.steps if s.low <= 0 <= s.high]
        if below:
            return f"{claim} does not hold: the 95% interval of {', '.join(below)} lies below 0 (n={n})"
        if unclear:
            return (f"{claim}: not distinguishable at this n (n={n}) for {', '.join(unclear)} "
                    "(the 95% interval of the change includes 0)")
        return f"{claim} holds: every step's 95% interval lies above 0 (n={n})"

    def _repr_html_(self) -> str:
        steps = pd.concat([s.frame() for s in self.steps])
        return self.frame.to_html() + steps.to_html() + f"<p>{self.verdict}</p>"

    def __repr__(self) -> str:
        steps = pd.concat([s.frame() for s in self.steps])
        return f"{self.frame.to_string()}\n{steps.to_string()}\n{self.verdict}"


def ladder(scores: dict[str, list[float | None]], order: list[str], metric: str = "score", seed: int = 0) -> Ladder:
    """Compare several ways on the same questions (`scores`: way -> row_scores): every way's mean and 95% interval,
    and the paired change of each step of `order` (e.g. prompt engineering -> RAG -> adapter) with its interval.

    Taught in notebook 05.
    """
    rows = {}
    for name, values in scores.items():
        est = interval(values, seed)
        rows[name] = {"n": est.n, metric: round(est.value, 3), "95% interval": f"[{est.low:.3f}, {est.high:.3f}]"}
    steps = []
    for lower, upper in zip(order, order[1:], strict=False):
        step = compare(scores[lower], scores[upper], f"{lower} -> {upper}", seed)
        steps.append(step)
    return Ladder(metric, pd.DataFrame(rows).T, steps, list(order))


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
    intervals: dict[str, Estimate] = field(default_factory=dict)  # metric -> value with its 95% interval and n

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
    general accuracy counts answers that contain an accepted answer. The task metrics and general accuracy come
    with their 95% intervals over the questions (`intervals`). Taught in notebook 04.
    """
    out = generate.generate(model, tokenizer, [row["prompt"] for row in test], max_new_tokens, batch_size, system)
    references = [row["completion"][0]["content"] for row in test]
    facts = data.facts_of(test, lang)
    intents = list(test["intent"]) if "intent" in test.column_names else None
    answers = answer_table([row["prompt"][-1]["content"] for row in test], out.texts, references, facts,
                           intents, lang)
    intervals = {}
    if facts:
        scored = [(fact_hits(a, f), len(f)) for a, f in zip(out.texts, facts, strict=True) if f]
        intervals["fact hit rate"] = ratio_interval(*zip(*scored, strict=True))
    intervals |= text_intervals(out.texts, references, lang)
    metrics = {}
    if validation is not None:
        prompts, texts = chat_pairs(validation, tokenizer)
        metrics["validation perplexity"] = perplexity(model, tokenizer, texts, prompts).value
    if general is not None:
        prompts, texts = chat_pairs(general, tokenizer)
        metrics["general perplexity"] = perplexity(model, tokenizer, texts, prompts).value
        said = generate.generate(model, tokenizer, [row["prompt"] for row in general], 16, batch_size).texts
        right = [fact_hits(answer, row["accept"]) > 0 for answer, row in zip(said, general, strict=True)]
        intervals["general accuracy"] = wilson(sum(right), len(right))
    metrics = {name: est.value for name, est in intervals.items()} | metrics
    metrics |= {"tokens/s": out.tokens_per_second, "latency p50 s": out.latency(50), "latency p95 s": out.latency(95)}
    return Scores(name, metrics, answers, "" if facts else NO_FACTS, intervals)


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


def _better(before: Estimate | None, after: Estimate | None, change: float, higher: bool) -> str:
    """Whether the last model is better, decided by the two 95% intervals where the metric has them."""
    if change != change or change == 0:
        return "same"
    good = (change > 0) == higher
    if before is None or after is None:  # perplexity, speed: one measurement, no interval
        return ("yes" if good else "no") + " (no interval)"
    if after.low > before.high or after.high < before.low:
        return "yes" if good else "no"
    return "not distinguishable at this n"


def report_card(base: Scores, tuned: Scores, *others: Scores) -> ReportCard:
    """Compare models metric by metric: one DataFrame (each model's value and 95% interval, the change from the
    first model, and whether the last is better: "yes"/"no" only when the two intervals do not overlap) and one
    chart of the absolute values with their intervals (a zero stays visible). Data without facts has no fact hit
    rate: the card compares the text metrics and its `note` says so (NO_FACTS). Taught in notebook 04.
    """
    runs = (base, tuned, *others)
    frame = pd.DataFrame({s.name: s.metrics for s in runs})
    for s in runs:
        frame[f"{s.name} 95%"] = [f"[{e.low:.3g}, {e.high:.3g}]" if (e := s.intervals.get(m)) else ""
                                  for m in frame.index]
    frame = frame[list(dict.fromkeys(c for s in runs for c in (s.name, f"{s.name} 95%")))]
    last = runs[-1]
    frame["change"] = frame[last.name] - frame[base.name]
    higher = [HIGHER_IS_BETTER.get(m, True) for m in frame.index]
    frame["better"] = [_better(base.intervals.get(m), last.intervals.get(m), c, h)
                       for m, c, h in zip(frame.index, frame["change"], higher, strict=True)]
    frame.insert(0, "n", pd.array([next((s.intervals[m].n for s in runs if m in s.intervals), None)
                                   for m in frame.index], dtype="Int64"))
    note = "" if "fact hit rate" in frame.index else NO_FACTS
    return ReportCard(frame, plots.report_card({s.name: s.intervals for s in runs}), note)


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

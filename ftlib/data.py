"""Data preparation: load with clear errors, clean without losing anything silently, split, format (notebook 01).

The pipeline of notebook 01:
    raw = load_records("data/raw/support_export.csv", SUPPORT, errors="collect")
    clean_df, report = clean(raw, labels=INTENTS)        # report: every removed or changed row, by reason
    splits = split(clean_df, stratify_by="intent")       # stratified, deterministic, leak-free
    dataset = to_dataset(splits, lang="en")              # prompt/completion rows for TRL's SFTTrainer
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ftlib import env

INTENTS = (
    "product_info", "pricing", "shipping", "returns_refunds", "warranty", "order_status", "account_login",
    "billing_payment", "setup_troubleshooting", "subscription", "contact_hours", "out_of_scope",
)
SYSTEM_PROMPT = {  # short on purpose: every training row repeats it
    "en": "You are Tsubame Tech's support assistant. Answer briefly and politely.",
    "ja": "ツバメテックのサポート担当として、簡潔かつ丁寧に回答してください。",
}
LINE = "source_line"  # column added by load_records: where each row came from in its file


class DataError(ValueError):
    """A problem in a data file, naming the file, the line (or row), the column and what was expected."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None, column: str | None = None,
                 expected: str | None = None):
        self.path, self.problem, self.line, self.column, self.expected = str(path), problem, line, column, expected
        where = f"{self.path}" + (f", line {line}" if line is not None else "") + (
            f", column {column!r}" if column else "")
        super().__init__(f"{where}: {problem}" + (f"; expected {expected}" if expected else ""))

    def __reduce__(self):  # copy and pickle (pandas deep-copies df.attrs, where collected problems live)
        return DataError, (self.path, self.problem, self.line, self.column, self.expected)


@dataclass(frozen=True)
class Schema:
    """The columns a file must have (with their type) and may have. Taught in notebook 01."""

    required: dict[str, type]
    optional: dict[str, type] = field(default_factory=dict)


SUPPORT = Schema({"ticket_id": str, "lang": str, "intent": str, "question": str, "answer": str},
                 {"created_at": str, "pair_id": str})
QA = Schema({"id": str, "intent": str, "question_en": str, "answer_en": str, "question_ja": str, "answer_ja": str},
            {"facts_en": list, "facts_ja": list})
GENERAL = Schema({"id": str, "question_en": str, "answer_en": str, "question_ja": str, "answer_ja": str},
                 {"category": str, "accept_en": list, "accept_ja": list})


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)  # "utf-8-sig" also strips a byte-order mark
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        hint = "UTF-8 text (re-save the file as UTF-8)"
        try:
            raw.decode("cp932")
            hint += "; it decodes as Shift-JIS (cp932), so pass encoding='cp932'"
        except UnicodeDecodeError:
            pass
        raise DataError(path, f"byte 0x{raw[err.start]:02x} is not valid {encoding}", line=line,
                        expected=hint) from None


def _csv_records(path: Path, text: str, schema: Schema):
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, "the file is empty", line=1, expected="a header line") from None
    missing = [column for column in schema.required if column not in header]
    if missing:
        raise DataError(path, "the header lacks " + ", ".join(missing), line=1,
                        expected="columns " + ", ".join(schema.required))
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield DataError(path, f"unreadable CSV ({err})", line=start, expected="properly quoted fields")
            return  # the csv reader cannot resynchronise after a broken quote
        if len(row) != len(header) and any(row):
            yield DataError(path, f"{len(row)} fields", line=start, expected=f"{len(header)} fields like the header")
        elif any(row):
            yield start, dict(zip(header, row, strict=True))
        start = reader.line_num + 1


def _jsonl_records(path: Path, text: str):
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            yield DataError(path, f"invalid JSON ({err.msg} at character {err.colno})", line=number,
                            expected="one JSON object per line")
            continue
        if not isinstance(record, dict):
            yield DataError(path, f"a JSON {type(record).__name__}", line=number, expected="a JSON object")
        else:
            yield number, record


def _json_records(path: Path, text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON ({err.msg})", line=err.lineno, expected="a JSON list of objects") from None
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        data = data["records"]
    if not isinstance(data, list):
        raise DataError(path, f"a JSON {type(data).__name__} at the top", line=1, expected="a list of objects")
    for number, record in enumerate(data, 1):
        if isinstance(record, dict):
            yield number, record
        else:
            yield DataError(path, f"item {number} is a JSON {type(record).__name__}", expected="an object")


def _parquet_records(path: Path):
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises many types; name the file whatever it was
        raise DataError(path, f"not a readable parquet file ({type(err).__name__}: {err})") from None
    yield from enumerate(frame.to_dict("records"), 1)


def _check(path: Path, number: int, record: dict, schema: Schema, kind: str) -> dict | DataError:
    where = {"line": number} if kind in {"csv", "jsonl"} else {"line": None}
    label = "" if where["line"] else f"row {number}: "
    for column, expected in {**schema.required, **schema.optional}.items():
        if column not in record or record[column] is None:
            if column in schema.required and (column not in record or expected is not str):
                return DataError(path, f"{label}missing value", column=column, expected=expected.__name__, **where)
            continue
        value = record[column]
        if expected is str and not isinstance(value, str):
            return DataError(path, f"{label}{type(value).__name__} value {value!r}", column=column,
                             expected="text", **where)
        if expected is list and not isinstance(value, list | tuple):
            return DataError(path, f"{label}{type(value).__name__} value", column=column, expected="a list", **where)
    row = {k: ("" if record.get(k) is None and t is str else record.get(k))
           for k, t in {**schema.required, **schema.optional}.items() if k in record}
    return {**row, LINE: number}


def load_records(path: str | Path, schema: Schema, errors: str = "raise", encoding: str = "utf-8-sig") -> pd.DataFrame:
    """Read a CSV, JSONL, JSON or parquet file into a DataFrame checked against `schema`.

    Every problem is a DataError naming the file, the line (or row), the column and what was expected.
    errors="raise" stops at the first; errors="collect" keeps the good rows and lists the bad ones in
    `df.attrs["problems"]`, so that clean() counts them: nothing is dropped silently. Each row keeps
    the line it came from in the `source_line` column. Taught in notebook 01.
    """
    path = Path(path)
    if errors not in {"raise", "collect"}:
        raise ValueError("errors must be 'raise' or 'collect'")
    if not path.is_file():
        raise DataError(path, "no such file")
    kind = path.suffix.lower().lstrip(".")
    if kind not in {"csv", "jsonl", "json", "parquet"}:
        raise DataError(path, f"unknown file type .{kind}", expected=".csv, .jsonl, .json or .parquet")
    if kind == "parquet":
        items = _parquet_records(path)
    else:
        text = _decode(path, path.read_bytes(), encoding)
        items = _csv_records(path, text, schema) if kind == "csv" else (
            _jsonl_records if kind == "jsonl" else _json_records)(path, text)
    rows, problems = [], []
    for item in items:
        if not isinstance(item, DataError):
            item = _check(path, *item, schema, kind)
        if isinstance(item, DataError):
            if errors == "raise":
                raise item
            problems.append(item)
        else:
            rows.append(item)
    if not rows and not problems:
        raise DataError(path, "no records", expected="at least one row")
    frame = pd.DataFrame(rows, columns=[*schema.required, *[c for c in schema.optional if rows and c in rows[0]],
                                        LINE])
    frame.attrs["problems"] = problems
    frame.attrs["source"] = str(path)
    return frame


# --- cleaning ---------------------------------------------------------------------------------

TAG = re.compile(r"<[^>]{1,200}>")
_B, _A = r"(?<![A-Za-z0-9_+\-])", r"(?![A-Za-z0-9_\-])"  # ASCII word edges: Japanese text may touch a number
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
PHONE = re.compile(
    _B + r"(?:"
    r"\+\d{1,3}[\s-]?\(?\d{1,4}\)?(?:[\s-]?\d{2,4}){2,3}"  # international: +81 90 1234 5678, +1 (415) 555-0100
    r"|0\d{1,4}-\d{1,4}-\d{3,4}"  # Japanese with hyphens: 090-1234-5678, 03-1234-5678
    r"|0[5-9]0\d{8}"  # Japanese mobile without hyphens: 09012345678
    r"|\(0\d{1,4}\)\s?\d{1,4}-\d{4}"  # (03) 1234-5678
    r")" + _A
)
CARD = re.compile(_B + r"(?:\d{4}[\s-]){3}\d{4}" + _A + "|" + _B + r"\d{15,16}" + _A)
KEEP = ("@tsubame.example", "0120-000-000")  # the company's own contacts (an "@domain" keeps the whole domain)


def is_kept(value: str, keep: tuple[str, ...] = KEEP) -> bool:
    """True when `value` is one of the `keep` contacts, or an address of a kept "@domain". Taught in notebook 01."""
    return any(value == k or (k.startswith("@") and value.endswith(k)) for k in keep)


WIDE = re.compile(r"[Ａ-Ｚａ-ｚ０-９](?:[Ａ-Ｚａ-ｚ０-９]|[＠．，：／－＋＿](?=[Ａ-Ｚａ-ｚ０-９]))*|[ｦ-ﾟ]+")


def normalize_width(text: str) -> str:
    """Full-width letters and digits (with the ＠．，：／ inside them) to half-width, half-width katakana to
    full-width, by NFKC applied to those runs only: Japanese punctuation such as ？！（） keeps its form.

    Plain NFKC would also turn every ？ and （ of a Japanese answer into ASCII and teach the model that
    style. Taught in notebook 01.
    """
    return WIDE.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)


def normalize(text: str) -> str:
    """Tidy whitespace: trim, collapse runs of spaces, tabs and ideographic spaces, trim around line breaks.

    Taught in notebook 01.
    """
    return re.sub(r"[ \t\u3000]+", " ", re.sub(r"\s*\n\s*", "\n", text)).strip()


def strip_html(text: str) -> str:
    """Remove HTML tags (a <br> or a paragraph end becomes a line break) and unescape entities.

    Taught in notebook 01.
    """
    if not TAG.search(text) and "&" not in text:
        return text
    text = re.sub(r"(?i)<br\s*/?>|</p>\s*(?=\S)", "\n", text)
    return html.unescape(TAG.sub("", text)).strip()


def mask_pii(text: str, keep: tuple[str, ...] = KEEP,
             kinds: tuple[str, ...] = ("email", "card", "phone")) -> tuple[str, Counter]:
    """Replace e-mail addresses, phone numbers and card-like numbers by <EMAIL>, <PHONE>, <CARD>.

    Values in `keep` (the company's own contacts, see is_kept) stay. Prices, dates and order numbers are not
    touched. `kinds` picks what to mask. Returns the text and a count per kind. Taught in notebook 01.
    """
    found: Counter = Counter()

    def replace(kind: str):
        def sub(match: re.Match) -> str:
            if is_kept(match.group(0), keep):
                return match.group(0)
            found[kind] += 1
            return f"<{kind.upper()}>"
        return sub

    for kind in kinds:  # cards before phones: a card number must not be read as two phone numbers
        text = {"email": EMAIL, "card": CARD, "phone": PHONE}[kind].sub(replace(kind), text)
    return text, found


def dedup_key(text: str) -> str:
    """The text a near-duplicate check compares: normalised, case-folded, without punctuation or spaces.

    Taught in notebook 01.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


@dataclass
class CleanReport:
    """What clean() did: rows removed (with the reason) and rows changed, counted by reason.

    input_rows == kept + len(removed), always. `removed` keeps every removed row for inspection.
    """

    input_rows: int
    kept: int
    removed: pd.DataFrame
    changed: Counter
    examples: dict[str, tuple[str, str]]  # reason -> (before, after) for one changed row

    def summary(self) -> pd.DataFrame:
        """One row per reason: removed or changed, and how many rows."""
        rows = [{"reason": r, "action": "removed", "rows": n}
                for r, n in self.removed["reason"].value_counts().items()]
        rows += [{"reason": r, "action": "changed", "rows": n} for r, n in self.changed.items()]
        rows.append({"reason": "kept", "action": "-", "rows": self.kept})
        rows.append({"reason": "input rows", "action": "-", "rows": self.input_rows})
        return pd.DataFrame(rows).set_index("reason")

    def _repr_html_(self) -> str:
        title = (f"<b>{self.input_rows} input rows = {self.kept} kept + {len(self.removed)} removed</b>")
        return title + self.summary().to_html()

    def __repr__(self) -> str:
        return (f"{self.input_rows} input rows = {self.kept} kept + {len(self.removed)} removed\n"
                + self.summary().to_string())


def _normalise(work: pd.DataFrame, text_columns: tuple[str, ...], keep_pii: tuple[str, ...]):
    """Apply every text change in place; return, per reason, which rows changed and (row, before, after)."""
    steps = [("html", strip_html), ("width", normalize_width), ("whitespace", normalize),
             *[(f"PII: {kind}", lambda t, k=kind: mask_pii(t, keep_pii, kinds=(k,))[0])
               for kind in ("email", "card", "phone")]]
    hits = {reason: pd.Series(False, index=work.index) for reason, _ in steps}
    pairs: dict[str, list[tuple[int, str, str]]] = {reason: [] for reason, _ in steps}
    for column in text_columns:
        values = work[column].fillna("").astype(str)
        for reason, fn in steps:
            after = values.map(fn)
            hit = after != values
            hits[reason] |= hit
            pairs[reason] += zip(values.index[hit], values[hit], after[hit], strict=True)
            values = after
        work[column] = values
    return hits, pairs


def clean(df: pd.DataFrame, labels: tuple[str, ...] | None = INTENTS,
          text_columns: tuple[str, ...] = ("question", "answer"), max_chars: int = 1000,
          keep_pii: tuple[str, ...] = KEEP, dedup_on: tuple[str, ...] = ("lang", "question"),
          ) -> tuple[pd.DataFrame, CleanReport]:
    """Clean support records and account for every row. Returns (clean rows, CleanReport).

    Changes, counted on the rows kept: HTML removed, width normalised, whitespace tidied, PII masked.
    Removals (each row once, first reason wins): unreadable line (from load_records' problems),
    label outside `labels`, empty text, over `max_chars` characters, exact duplicate, near duplicate
    (same `dedup_key` of the `dedup_on` columns). Taught in notebook 01.
    """
    problems = df.attrs.get("problems", [])
    identity = [*text_columns, *[c for c in ("lang", "intent") if c in df]]
    exact = df[identity].astype(str).duplicated()
    work = df.copy()
    hits, pairs = _normalise(work, text_columns, keep_pii)

    reason = pd.Series("", index=work.index)

    def mark(mask: pd.Series, why: str) -> None:
        reason[mask & (reason == "")] = why

    texts = work[list(text_columns)]
    if labels is not None and "intent" in work:
        mark(~work["intent"].isin(labels), "label not in label set")
    mark(texts.apply(lambda col: col.str.strip() == "").any(axis=1), "empty text")
    mark(texts.apply(lambda col: col.str.len() > max_chars).any(axis=1), f"over {max_chars} characters")
    mark(exact, "exact duplicate")
    alive = reason == ""
    near = work.loc[alive, list(dedup_on)].astype(str).map(dedup_key).agg("\x1f".join, axis=1).duplicated()
    mark(near.reindex(work.index, fill_value=False), "near duplicate")

    kept_mask = reason == ""
    changed = Counter({r: int((h & kept_mask).sum()) for r, h in hits.items() if (h & kept_mask).any()})
    examples = {r: next((b, a) for i, b, a in pairs[r] if kept_mask[i]) for r in changed}
    unreadable = pd.DataFrame({LINE: [p.line for p in problems], "reason": "unreadable line",
                               "detail": [str(p) for p in problems]})
    dropped = df.loc[~kept_mask].assign(reason=reason[~kept_mask])
    removed = pd.concat([frame for frame in (unreadable, dropped) if len(frame)] or [dropped], ignore_index=True)
    kept = work.loc[kept_mask].reset_index(drop=True)
    report = CleanReport(len(df) + len(problems), len(kept), removed, changed, examples)
    assert report.input_rows == report.kept + len(report.removed)
    return kept, report


# --- splitting --------------------------------------------------------------------------------

def split(df: pd.DataFrame, stratify_by: str = "intent", val: float = 0.1, test: float = 0.1, seed: int = 0,
          group_by: str | None = None, dedup_on: str = "question") -> dict[str, pd.DataFrame]:
    """Split into train / validation / test: stratified by `stratify_by`, the same for the same seed, leak-free.

    Rows whose `dedup_on` text is the same after normalisation (dedup_key), or that share `group_by`
    (e.g. the pair id that links an English question to its Japanese translation), always land in the
    same split, so no question is seen in training and tested again. Uses scikit-learn's
    StratifiedGroupKFold. Taught in notebook 01.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < val < 1 or not 0 < test < 1 or val + test >= 1:
        raise ValueError("val and test are fractions with val + test < 1")
    keys = df[dedup_on].astype(str).map(dedup_key)
    if group_by:  # merge the two notions of "same item" into one group id
        keys = keys.groupby(df[group_by]).transform("first")
    groups = pd.factorize(keys)[0]

    def take(frame: pd.DataFrame, grp, fraction: float, rng: int) -> tuple[pd.Index, pd.Index]:
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / fraction)), shuffle=True, random_state=rng)
        rest, held = next(folds.split(frame, frame[stratify_by], grp))
        return frame.index[rest], frame.index[held]

    rest, test_idx = take(df, groups, test, seed)
    rest_df = df.loc[rest]
    train_idx, val_idx = take(rest_df, groups[df.index.get_indexer(rest)], val / (1 - test), seed + 1)
    return {name: df.loc[idx].reset_index(drop=True)
            for name, idx in [("train", train_idx), ("validation", val_idx), ("test", test_idx)]}


# --- formatting for TRL -----------------------------------------------------------------------

def to_dataset(splits: dict[str, pd.DataFrame], lang: str = "en", style: str = "prompt_completion",
               system: str | None = None):
    """Turn the splits of one language into a datasets.DatasetDict in TRL's conversational format.

    style="prompt_completion": {"prompt": [system, user], "completion": [assistant]}: with TRL's
    completion_only_loss the loss is computed on the answer only (and its end-of-turn token).
    style="messages": {"messages": [system, user, assistant]}: the loss covers the whole conversation.
    Rows keep `intent` (and `id` when present). Works on long data (question/answer + lang columns)
    and on wide data (question_en/answer_en ...). Taught in notebook 01.
    """
    from datasets import Dataset, DatasetDict

    if style not in {"prompt_completion", "messages"}:
        raise ValueError("style must be 'prompt_completion' or 'messages'")
    system = SYSTEM_PROMPT[lang] if system is None else system

    def rows(frame: pd.DataFrame) -> list[dict]:
        if "lang" in frame:
            frame = frame[frame["lang"] == lang]
        q, a = ("question", "answer") if "question" in frame else (f"question_{lang}", f"answer_{lang}")
        out = []
        for record in frame.to_dict("records"):
            prompt = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": record[q]}]
            answer = [{"role": "assistant", "content": record[a]}]
            row = {"prompt": prompt, "completion": answer} if style == "prompt_completion" else {
                "messages": prompt + answer}
            out.append({**row, **{k: record[k] for k in ("id", "intent") if k in record}})
        return out

    return DatasetDict({name: Dataset.from_list(rows(frame)) for name, frame in splits.items()})


# --- what the loss sees -----------------------------------------------------------------------

@dataclass(repr=False)
class LabelPreview:
    """The tokens of one training example and whether each is trained (has a label) or masked (-100)."""

    tokens: list[str]
    trained: list[bool]
    eos_token: str

    @property
    def n_trained(self) -> int:
        return sum(self.trained)

    @property
    def trained_text(self) -> str:
        """The trained tokens joined: the answer, its end-of-turn token (and the template's newline)."""
        return "".join(t for t, keep in zip(self.tokens, self.trained, strict=True) if keep)

    @property
    def eos_trained(self) -> bool:
        """Whether the end-of-turn token has a label, so that the model learns to stop."""
        return any(keep and t == self.eos_token for t, keep in zip(self.tokens, self.trained, strict=True))

    def __repr__(self) -> str:
        text = "".join(f"[{t}]" if keep else t for t, keep in zip(self.tokens, self.trained, strict=True))
        return f"{self.n_trained} of {len(self.tokens)} tokens trained ([...] = trained):\n{text}"

    def _repr_html_(self) -> str:
        spans = []
        for token, keep in zip(self.tokens, self.trained, strict=True):
            style = ("background:#d4f7d4;color:#064;font-weight:600" if keep else "color:#999")
            if token == self.eos_token:
                style += ";border:1px solid #064"
            spans.append(f"<span style='{style}'>{html.escape(token)}</span>")
        legend = (f"<div><b>{self.n_trained}</b> of {len(self.tokens)} tokens trained: "
                  "<span style='background:#d4f7d4;color:#064;font-weight:600'>green</span> = trained, "
                  "<span style='color:#999'>grey</span> = masked (label -100)</div>")
        return legend + "<pre style='white-space:pre-wrap'>" + "".join(spans) + "</pre>"


def label_preview(example: dict, model, tokenizer, max_length: int = 1024) -> LabelPreview:
    """Tokenize one example exactly as TRL's SFTTrainer does (completion-only loss) and show the labels.

    The answer and its end-of-turn token are trained; the system prompt and question are masked.
    Taught in notebook 01.
    """
    import tempfile

    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar
    from trl import SFTConfig, SFTTrainer

    row = {k: example[k] for k in ("prompt", "completion", "messages") if k in example}
    disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, completion_only_loss=True, max_length=max_length, report_to=[],
                         use_cpu=model.device.type == "cpu", activation_checkpointing=False,
                         **env.trainer_precision())
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([row]),
                             processing_class=tokenizer)
        prepared = trainer.train_dataset[0]
    enable_progress_bar()
    ids = prepared["input_ids"]
    labels = prepared.get("labels") or ids
    return LabelPreview([tokenizer.decode([i]) for i in ids], [label != -100 for label in labels],
                        tokenizer.eos_token)


# --- statistics and quality -------------------------------------------------------------------

def token_stats(dataset, tokenizer, max_length: int = 512) -> pd.DataFrame:
    """Token lengths of conversational rows (chat template applied): distribution, share over `max_length`,
    and the max length that would cover 95% and 99% of the rows (rounded up to a multiple of 32).

    Taught in notebook 01.
    """
    import numpy as np

    def length(row: dict) -> int:
        messages = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
        return len(tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"])

    lengths = np.array([length(row) for row in dataset])

    def cover(q: float) -> int:
        return int(np.ceil(np.percentile(lengths, q) / 32) * 32)

    return pd.DataFrame([{
        "rows": len(lengths), "mean": lengths.mean().round(1), "p50": int(np.percentile(lengths, 50)),
        "p95": int(np.percentile(lengths, 95)), "p99": int(np.percentile(lengths, 99)), "max": int(lengths.max()),
        f"share over {max_length}": round(float((lengths > max_length).mean()), 4),
        "max_length for p95": cover(95), "max_length for p99": cover(99),
    }])


def quality_table(df: pd.DataFrame, by: str = "intent") -> pd.DataFrame:
    """Rows per `by` and language, with each one's share: the balance check of notebook 01.

    Taught in notebook 01.
    """
    table = pd.crosstab(df[by], df["lang"], margins=True, margins_name="total")
    table["share"] = (table["total"] / table.loc["total", "total"]).round(3)
    return table


@dataclass(repr=False)
class QualityReport:
    """Counts, balance per intent, lengths and language mix of a dataset; shows tables and plots in Jupyter."""

    frame: pd.DataFrame
    counts: pd.DataFrame
    lengths: pd.DataFrame
    languages: pd.Series
    imbalance: float  # rows of the largest intent / rows of the smallest

    def __repr__(self) -> str:
        return (f"{len(self.frame)} rows; languages {self.languages.to_dict()}; largest/smallest intent "
                f"{self.imbalance:.2f}\n{self.counts.to_string()}\n\n{self.lengths.to_string()}")

    def _repr_html_(self) -> str:
        import base64
        import io

        import matplotlib.pyplot as plt

        from ftlib import plots

        images = []
        for fig in (plots.balance(self.frame), plots.lengths(self.frame)):
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=80)
            plt.close(fig)
            images.append(f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>")
        mix = ", ".join(f"{lang}: {share:.0%}" for lang, share in self.languages.items())
        return (f"<h4>{len(self.frame)} rows · languages {mix} · largest/smallest intent {self.imbalance:.2f}</h4>"
                f"<div style='display:flex;gap:2em'>{self.counts.to_html()}{self.lengths.to_html()}</div>"
                + "".join(images))


def quality_report(df: pd.DataFrame, by: str = "intent") -> QualityReport:
    """The quality report of notebook 01: rows per intent and language, length percentiles, language mix.

    Taught in notebook 01.
    """
    per_intent = df[by].value_counts()
    lengths = df.groupby("lang")[["question", "answer"]].agg(
        lambda s: f"{int(s.str.len().median())} / {int(s.str.len().quantile(0.95))} / {int(s.str.len().max())}")
    lengths.columns = [f"{c} chars (p50 / p95 / max)" for c in lengths.columns]
    return QualityReport(df, quality_table(df, by), lengths, df["lang"].value_counts(normalize=True).round(3),
                         float(per_intent.max() / per_intent.min()))


# --- the course dataset in one call -----------------------------------------------------------

RAW_EXPORT = env.ROOT / "data" / "raw" / "support_export.csv"
QA_PAIRS = env.ROOT / "data" / "support_qa.jsonl"
GENERAL_SET = env.ROOT / "data" / "general_knowledge.jsonl"


def facts_for(dataset, lang: str = "en") -> list[list[str]]:
    """The fact-sheet facts each row's answer must contain, looked up in data/support_qa.jsonl by the row's
    question (or, when cleaning masked it, by its reference answer). Taught in notebook 03.
    """
    qa = load_records(QA_PAIRS, QA)
    by_question = dict(zip(qa[f"question_{lang}"].map(dedup_key), qa[f"facts_{lang}"], strict=True))
    by_answer = dict(zip(qa[f"answer_{lang}"].map(dedup_key), qa[f"facts_{lang}"], strict=True))
    return [by_question.get(dedup_key(row["prompt"][-1]["content"]))
            or by_answer.get(dedup_key(row["completion"][0]["content"])) or [] for row in dataset]


def general_dataset(lang: str = "en"):
    """The general-knowledge set as prompt/completion rows (no system prompt), with its accepted answers.

    For checking and protecting general ability. Taught in notebook 03.
    """
    from datasets import Dataset

    general = load_records(GENERAL_SET, GENERAL)
    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": row[f"question_{lang}"]}],
         "completion": [{"role": "assistant", "content": row[f"answer_{lang}"]}],
         "accept": list(row[f"accept_{lang}"]), "id": row["id"]}
        for row in general.to_dict("records")])


def prepare(lang: str = "en", seed: int = 0, val: float = 0.1, test: float = 0.1, raw: str | Path = RAW_EXPORT,
            max_chars: int = 1000):
    """Notebook 01 in one call: load the raw export, clean, split, format. Returns (DatasetDict, CleanReport).

    Taught in notebook 01; later notebooks call it when notebook 01's output is missing.
    """
    frame = load_records(raw, SUPPORT, errors="collect")
    kept, report = clean(frame, max_chars=max_chars)
    splits = split(kept, "intent", val, test, seed, group_by="pair_id" if "pair_id" in kept else None)
    return to_dataset(splits, lang), report


def course_dataset(lang: str = "en", seed: int = 0):
    """The course's formatted splits: from runs/01_dataset_<lang> if notebook 01 saved them, else rebuilt.

    Taught in notebook 01, used from notebook 02 on.
    """
    from datasets import load_from_disk

    saved = env.runs_dir() / f"01_dataset_{lang}"
    if (saved / "dataset_dict.json").exists():
        return load_from_disk(str(saved))
    dataset, _ = prepare(lang, seed)
    dataset.save_to_disk(str(saved))
    return dataset

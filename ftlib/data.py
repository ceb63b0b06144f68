"""Data preparation: load with clear errors, clean without losing anything silently, split, format.

The pipeline of notebook 01 (the course data asks for every cleaning rule and its label set):
    raw = load_records("data/raw/support_export.csv", SUPPORT, errors="collect")
    clean_df, report = clean(raw, labels=INTENTS, rules=RULES)  # report: every removed or changed row, by reason
    splits = split(clean_df, stratify_by="intent")               # stratified, deterministic, leak-free
    dataset = to_dataset(splits, lang="en", system=SYSTEM_PROMPT["en"])  # prompt/completion rows for TRL

Your own file (notebook 08): from_file("faq.csv", prompt="question", completion="answer") does
read_file, clean (no text changes by default), split (random, leak-free) and to_dataset in one call."""

from __future__ import annotations

import html
import itertools
import math
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ftlib import env, plots, recipe
from ftlib.readers import LINE, DataError, Schema, load_records, read_file  # noqa: F401 (re-exported: data.DataError)

INTENTS = (
    "product_info", "pricing", "shipping", "returns_refunds", "warranty", "order_status", "account_login",
    "billing_payment", "setup_troubleshooting", "subscription", "contact_hours", "out_of_scope",
)
SYSTEM_PROMPT = {  # short on purpose: every training row repeats it
    "en": "You are Tsubame Tech's support assistant. Answer briefly and politely.",
    "ja": "ツバメテックのサポート担当として、簡潔かつ丁寧に回答してください。",
}
SUPPORT = Schema({"ticket_id": str, "lang": str, "intent": str, "question": str, "answer": str},
                 {"created_at": str, "pair_id": str})
QA = Schema({"id": str, "intent": str, "question_en": str, "answer_en": str, "question_ja": str, "answer_ja": str},
            {"facts_en": list, "facts_ja": list})
GENERAL = Schema({"id": str, "question_en": str, "answer_en": str, "question_ja": str, "answer_ja": str},
                 {"category": str, "accept_en": list, "accept_ja": list})
PARAPHRASE = Schema({"id": str, "intent": str, "source_ids": list, "question_en": str, "question_ja": str,
                     "facts_en": list, "facts_ja": list})



# --- cleaning ---------------------------------------------------------------------------------

HTML_TAGS = (
    "a abbr address article aside audio b bdi bdo big blockquote body br button canvas caption center cite code col "
    "colgroup dd del details dfn dialog div dl dt em embed fieldset figcaption figure font footer form h1 h2 h3 h4 h5 "
    "h6 head header hr html i iframe img input ins kbd label legend li link main mark meta nav noscript object ol "
    "optgroup option p picture pre q s samp script section select small source span strike strong style sub summary "
    "sup table tbody td template textarea tfoot th thead time title tr tt u ul var video wbr").split()
# a tag is "<" + an HTML element name (+ attributes) + ">": "Orders < 5000 yen ... > 5000" and List<String> are text
TAG = re.compile(r"<!--.*?-->|</?(?:" + "|".join(HTML_TAGS) + r")(?=[\s/>])(?:[^<>\"']|\"[^\"]*\"|'[^']*')*>",
                 re.IGNORECASE | re.DOTALL)
ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")  # "&not" without ";" is text
# edges of a number: no ASCII letter, digit, "_", "-" (or "+" before) next to it; Japanese text may touch it
_B, _A = r"(?<![A-Za-z0-9_+\-])(?<!\d)", r"(?![A-Za-z0-9_\-])(?!\d)"
DASHES = "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d"  # hyphen-minus, the Unicode dashes, minus, full-width
SEP = f"[ .\u00a0{DASHES}]"  # between the digit groups of a card or a US phone number
JSEP = f"[ .\u00a0\u3000{DASHES}\u30fc\uff70]"  # Japanese numbers are also written with the long-vowel mark ー
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
PHONE = re.compile(
    _B + r"(?:"
    rf"[+＋]\d{{1,3}}(?:{JSEP}?\(0\))?(?:{JSEP}?\(?\d{{1,5}}\)?){{2,5}}"  # +81 90 1234 5678, +1 (415) 555-0100
    rf"|\([0０]\d{{1,4}}\){JSEP}?\d{{1,4}}{JSEP}\d{{3,4}}"  # (03) 1234-5678
    rf"|[0０]\d{{1,4}}{JSEP}\d{{1,4}}{JSEP}\d{{3,4}}"  # 03-1234-5678, 090 1234 5678, 090ー1234ー5678
    r"|[0０][1-9１-９]\d{8,9}"  # 0312345678, 09012345678
    rf"|(?:1{SEP}?)?(?:\(\d{{3}}\){SEP}?|\d{{3}}{SEP})\d{{3}}{SEP}\d{{4}}"  # US: (415) 555-0132, 415-555-0132
    r")" + _A
)
# a card or a My Number is not a piece of a longer run of digit groups ("4111 1111 1111 1112 3")
_GB, _GA = rf"(?<!\d{JSEP})", rf"(?!{JSEP}\d)"
CARD = re.compile(_B + _GB + rf"(?:\d{{13,19}}|\d{{4}}{SEP}\d{{6}}{SEP}\d{{4,5}}"  # 4111111111111111, 3782 822463 10005
                  rf"|\d{{4}}(?:{SEP}\d{{4}}){{2}}{SEP}\d{{1,4}}(?:{SEP}\d{{3}})?)" + _A + _GA)  # 4111 1111 1111 1111
MY_NUMBER = re.compile(_B + _GB + rf"(?:\d{{12}}|\d{{4}}{JSEP}\d{{4}}{JSEP}\d{{4}})" + _A + _GA)  # 1234 5678 9018
KEEP = ("@tsubame.example", "0120-000-000")  # the company's own contacts (an "@domain" keeps the whole domain)


def is_kept(value: str, keep: tuple[str, ...] = KEEP) -> bool:
    """True when `value` is one of the `keep` contacts, or an address of a kept "@domain".

    Used by data.clean (notebook 01).
    """
    return any(value == k or (k.startswith("@") and value.endswith(k)) for k in keep)


WIDE = re.compile(r"[Ａ-Ｚａ-ｚ０-９](?:[Ａ-Ｚａ-ｚ０-９]|[＠．，：／－＋＿](?=[Ａ-Ｚａ-ｚ０-９]))*|[ｦ-ﾟ]+")


def normalize_width(text: str) -> str:
    """Full-width letters and digits (with the ＠．，：／ inside them) to half-width, half-width katakana to
    full-width, by NFKC applied to those runs only: Japanese punctuation such as ？！（） keeps its form.

    Plain NFKC would also turn every ？ and （ of a Japanese answer into ASCII and teach the model that
    style. Used by data.clean (notebook 01).
    """
    return WIDE.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)


def normalize(text: str) -> str:
    """Tidy whitespace: trim the text, drop spaces at line ends, and collapse each run of spaces, tabs and
    ideographic spaces inside a line to one space.

    Line breaks, blank lines and each line's leading indentation stay (code and paragraphs survive; the
    first line's indentation goes with the trim). Used by data.clean (notebook 01).
    """
    lines = (re.sub(r"(?<=[^ \t\u3000])[ \t\u3000]+", " ", line).rstrip(" \t\u3000")
             for line in re.split(r"\r?\n", text))
    return "\n".join(lines).strip()


def strip_html(text: str) -> str:
    """Remove HTML tags (a <br> or a paragraph end becomes a line break) and unescape entities.

    Only real tags go: "<" followed by an HTML element name ("<b>", "</p>", "<a href=...>") or a comment. A "<"
    or ">" in text ("Orders < 5000 yen"), code such as List<String>, and "&" not ending an entity stay.
    Used by data.clean (notebook 01).
    """
    if not TAG.search(text) and not ENTITY.search(text):
        return text
    text = re.sub(r"(?i)<br\s*/?>|</p>\s*(?=\S)", "\n", text)
    return ENTITY.sub(lambda m: html.unescape(m.group(0)), TAG.sub("", text)).strip()


def _digits(text: str) -> str:
    """The digits of `text` as ASCII ("０９０" -> "090")."""
    return "".join(str(unicodedata.digit(ch)) for ch in text if ch.isdecimal())


def luhn(number: str) -> bool:
    """True when the digits of `number` pass the Luhn checksum that every payment card number carries.

    Used by data.clean (notebook 01).
    """
    total = 0
    for i, digit in enumerate(reversed(_digits(number))):
        value = int(digit) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def my_number_ok(number: str) -> bool:
    """True when 12 digits carry a valid My Number (マイナンバー) check digit, by the official rule.

    The 12th digit is 11 - (sum of P_n * Q_n mod 11), or 0 when that remainder is 0 or 1, where P_n is the n-th of
    the first 11 digits counted from the right and Q_n = n + 1 for n <= 6, n - 5 above. Random 12-digit ids pass
    about one time in ten. Used by data.clean (notebook 01).
    """
    digits = _digits(number)
    if len(digits) != 12:
        return False
    total = sum(int(p) * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(reversed(digits[:11]), 1))
    return int(digits[11]) == (0 if total % 11 <= 1 else 11 - total % 11)


def _phone_ok(value: str) -> bool:
    """International: 8 to 15 digits. Japanese (starts with 0): 10 digits, or 11 for 050/070/080/090 and 0800.
    North American: area code and exchange start with 2-9."""
    digits = _digits(value)
    if value[0] in "+＋":
        return 8 <= len(digits) <= 15
    if digits.startswith("0"):
        return len(digits) == 10 or (len(digits) == 11 and digits[:3] in {"050", "070", "080", "090"})
    digits = digits[1:] if len(digits) == 11 and digits[0] == "1" else digits
    return len(digits) == 10 and digits[0] in "23456789" and digits[3] in "23456789"


PII = {  # kind: (candidates, check): cards before My Numbers before phones, so that no number is read twice
    "email": (EMAIL, None),
    "card": (CARD, lambda v: 13 <= len(_digits(v)) <= 19 and _digits(v)[0] in "23456" and luhn(v)),
    "my_number": (MY_NUMBER, my_number_ok),
    "phone": (PHONE, _phone_ok),
}


def _sub_pii(text: str, keep: tuple[str, ...], kinds: Sequence[str], replace) -> tuple[str, Counter]:
    found: Counter = Counter()
    for kind in kinds:
        regex, check = PII[kind]

        def sub(match: re.Match, kind: str = kind, check=check) -> str:
            value = match.group(0)
            if is_kept(value, keep) or (check and not check(value)):
                return value
            found[kind] += 1
            return replace(kind, value)

        text = regex.sub(sub, text)
    return text, found


def mask_pii(text: str, keep: tuple[str, ...] = KEEP, kinds: Sequence[str] = tuple(PII)) -> tuple[str, Counter]:
    """Replace e-mail addresses, card numbers, My Numbers and phone numbers by <EMAIL>, <CARD>, <MY_NUMBER>, <PHONE>.

    Phones: Japanese (03-1234-5678, 090 1234 5678, 0312345678, 090ー1234ー5678, any dash), international
    (+81 90 1234 5678) and North American ((415) 555-0132, 415-555-0132). Cards: 13 to 19 digits of the major
    networks (first digit 2-6) in any grouping (4-4-4-4, Amex 4-6-5) with spaces, dashes or dots, and only when the
    Luhn checksum holds, so a 16-digit tracking id stays. My Number: 12 digits with a valid check digit (my_number_ok).
    Values in `keep` (the company's own contacts, see is_kept) stay. Prices, dates and order numbers are not
    touched. `kinds` picks what to mask. Returns the text and a count per kind. Used by data.clean (notebook 01).
    """
    return _sub_pii(text, keep, kinds, lambda kind, value: f"<{kind.upper()}>")


def redact(text: str, keep: tuple[str, ...] = KEEP) -> str:
    """The text with every letter and digit of each piece of personal data mask_pii finds turned into "•":
    "090-1234-5678" -> "•••-••••-••••". Shows what was found without showing it.

    The cleaning report's examples and removed rows go through it. Taught in notebook 01.
    """
    return _sub_pii(text, keep, tuple(PII), lambda kind, value: re.sub(r"[^\W_]", "•", value))[0]


def dedup_key(text: str) -> str:
    """The text a near-duplicate check compares: normalised, case-folded, without punctuation or spaces.

    A text with no letter or digit (only emoji or symbols) keeps its symbols, so that "😀" and "🎉" differ.
    Taught in notebook 01.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN") or "".join(text.split())


LANGS = tuple(SYSTEM_PROMPT)  # the course's languages
LANG_SPELLINGS = {"english": "en", "eng": "en", "en-us": "en", "en_us": "en", "en-gb": "en", "en_gb": "en",
                  "英語": "en", "japanese": "ja", "jpn": "ja", "jp": "ja", "ja-jp": "ja", "ja_jp": "ja", "日本語": "ja"}


def normalize_lang(value):
    """The language code of a known spelling ("EN", " english", "ja-JP", "日本語" -> "en" or "ja"); others unchanged.

    Used by data.clean (notebook 01).
    """
    text = str(value).strip().casefold()
    return text if text in LANGS else LANG_SPELLINGS.get(text, value)


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r}: the course data is in {' and '.join(map(repr, LANGS))}")


_CONTINUATION = "".join(bytes([b]).decode("cp1252", "ignore") or chr(b) for b in range(0x80, 0xC0))
MOJIBAKE = re.compile(f"(?:[\u00c2-\u00f4][{re.escape(_CONTINUATION)}]+)+|[縺繧繝縲][^縺繧繝縲]{{0,2}}[縺繧繝縲]")
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")  # embeddings, overrides, isolates: they reorder what is shown


def _as_bytes(run: str) -> bytes:
    return bytes(ord(ch) if ord(ch) < 256 else ch.encode("cp1252")[0] for ch in run)


def text_problem(text: str) -> tuple[str, str] | None:
    """(reason, detail) when a text is unfit to train on as it is, else None: only invisible characters,
    mojibake (UTF-8 read as cp1252/latin-1: "ã“ã‚“", or as Shift-JIS: "縺薙ｓ"; a U+FFFD),
    control characters (NUL ...; tab and line breaks are fine) or bidi controls (U+202E ...).

    Used by data.clean (notebook 01).
    """
    if text.strip() and all(ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc") or "\ufe00" <= ch <= "\ufe0f"
                            for ch in text):
        return "only invisible characters", " ".join(f"U+{ord(ch):04X}" for ch in dict.fromkeys(text.strip()))
    if "\ufffd" in text:
        return "mojibake", "U+FFFD: a character was lost when the text was decoded"
    for match in MOJIBAKE.finditer(text):
        run = match.group(0)
        if run[0] in "縺繧繝縲":
            return "mojibake", f"{run!r}: UTF-8 read as Shift-JIS"
        try:
            return "mojibake", f"{run!r} is {_as_bytes(run).decode('utf-8')!r} read as cp1252/latin-1"
        except UnicodeDecodeError:
            if sum("\u00c2" <= ch <= "\u00f4" for ch in run) >= 2:
                return "mojibake", f"{run!r}: UTF-8 read as cp1252/latin-1"
    control = next((ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\x85"), None)
    if control:
        return "control characters", f"U+{ord(control):04X}"
    if BIDI.search(text):
        return "bidi control characters", f"U+{ord(BIDI.search(text).group(0)):04X}"
    return None


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


RULES = ("html", "width", "whitespace", "pii")  # clean()'s text changes, each opt-in


def _normalise(work: pd.DataFrame, text_columns: tuple[str, ...], keep_pii: tuple[str, ...], rules: tuple[str, ...]):
    """Apply the chosen text changes in place; return, per reason, which rows changed and (row, before, after)."""
    steps = [("html", strip_html), ("width", normalize_width), ("whitespace", normalize),
             *[(f"PII: {kind}", lambda t, k=kind: mask_pii(t, keep_pii, kinds=(k,))[0])
               for kind in PII]]
    steps = [(reason, fn) for reason, fn in steps if ("pii" if reason.startswith("PII") else reason) in rules]
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


def clean(df: pd.DataFrame, labels: Sequence[str] | None = None, text_columns: tuple[str, ...] | None = None,
          max_chars: int | None = 1000, keep_pii: tuple[str, ...] = KEEP, dedup_on: tuple[str, ...] | None = None,
          rules: Sequence[str] = (), label_column: str = "intent",
          langs: Sequence[str] | None = LANGS) -> tuple[pd.DataFrame, CleanReport]:
    """Clean records and account for every row. Returns (clean rows, CleanReport).

    Text changes are opt-in, by name in `rules` (RULES has them all; the course passes all): "html"
    (strip_html), "width" (normalize_width), "whitespace" (normalize), "pii" (mask_pii; the report's examples
    and removed rows are then redacted too). With no rules no text changes. A `lang` column is checked against
    `langs` (None: not checked): known spellings ("EN", "english", "日本語") become the code, counted as
    "lang spelling". Changes are counted on the rows kept. Removals (each row once, first reason wins):
    unreadable line (from load_records' or read_file's problems), `label_column` outside `labels`
    (only when labels are given; a ValueError when no row has one), lang not in `langs`, empty text, only
    invisible characters, mojibake, control characters, bidi control characters (text_problem;
    `detail` in report.removed says which characters), over `max_chars` characters (None: no limit), exact
    duplicate, near duplicate (same `dedup_key` of the `dedup_on` columns). text_columns defaults to question
    and answer, or prompt and completion; dedup_on to the question (or prompt), with lang and system when
    present. Taught in notebook 01.
    """
    rules = tuple(rules)
    if set(rules) - set(RULES):
        raise ValueError(f"unknown rules {sorted(set(rules) - set(RULES))}; the rules are {', '.join(RULES)}")
    text_columns = text_columns or (("question", "answer") if "question" in df else ("prompt", "completion"))
    dedup_on = dedup_on or (*[c for c in ("lang", "system") if c in df], text_columns[0])
    absent = [c for c in (*text_columns, *dedup_on, *([label_column] if labels is not None else [])) if c not in df]
    if absent:
        raise ValueError(f"clean: no column {', '.join(map(repr, absent))}; columns are {', '.join(df.columns)}")
    problems = df.attrs.get("problems", [])
    identity = [*text_columns, *[c for c in ("lang", label_column, "system") if c in df]]
    exact = df[identity].astype(str).duplicated()
    work = df.copy()
    hits, pairs = _normalise(work, text_columns, keep_pii, rules)
    checks_lang = langs is not None and "lang" in work
    if checks_lang:
        spelled = work["lang"].map(normalize_lang)
        hit = spelled.astype(str) != work["lang"].astype(str)
        hits["lang spelling"] = hit
        pairs["lang spelling"] = list(zip(work.index[hit], work["lang"][hit], spelled[hit], strict=True))
        work["lang"] = spelled

    reason = pd.Series("", index=work.index)
    detail = pd.Series("", index=work.index)

    def mark(mask: pd.Series, why: str) -> None:
        reason[mask & (reason == "")] = why

    texts = work[list(text_columns)]
    if labels is not None:
        in_set = work[label_column].isin(labels)
        if len(work) and not in_set.any():
            raise ValueError(f"no {label_column!r} value is in labels=: the data has "
                             f"{', '.join(map(str, work[label_column].unique()[:20]))}; expected "
                             f"{', '.join(labels)}. Pass labels=None to keep every label")
        mark(~in_set, "label not in label set")
    if checks_lang:
        mark(~work["lang"].isin(langs), "lang not " + " or ".join(langs))
    mark(texts.apply(lambda col: col.str.strip() == "").any(axis=1), "empty text")
    for column in text_columns:
        for i, found in work[column].map(text_problem).items():
            if found and reason[i] == "":
                reason[i], detail[i] = found[0], f"{column}: {found[1]}"
    if max_chars is not None:
        mark(texts.apply(lambda col: col.str.len() > max_chars).any(axis=1), f"over {max_chars} characters")
    mark(exact, "exact duplicate")
    alive = reason == ""
    near = work.loc[alive, list(dedup_on)].astype(str).map(dedup_key).agg("\x1f".join, axis=1).duplicated()
    mark(near.reindex(work.index, fill_value=False), "near duplicate")

    kept_mask = reason == ""
    shown = (lambda text: redact(str(text), keep_pii)) if "pii" in rules else str  # no raw PII in the report
    changed = Counter({r: int((h & kept_mask).sum()) for r, h in hits.items() if (h & kept_mask).any()})
    examples = {r: next((shown(b), shown(a)) for i, b, a in pairs[r] if kept_mask[i]) for r in changed}
    unreadable = pd.DataFrame({LINE: [p.line for p in problems], "reason": "unreadable line",
                               "detail": [str(p) for p in problems]})
    dropped = df.loc[~kept_mask].assign(reason=reason[~kept_mask], detail=detail.where(detail != "")[~kept_mask])
    if "pii" in rules:
        dropped[list(text_columns)] = dropped[list(text_columns)].map(shown)
    removed = pd.concat([frame for frame in (unreadable, dropped) if len(frame)] or [dropped], ignore_index=True)
    kept = work.loc[kept_mask].reset_index(drop=True)
    report = CleanReport(len(df) + len(problems), len(kept), removed, changed, examples)
    assert report.input_rows == report.kept + len(report.removed)
    return kept, report


# --- splitting --------------------------------------------------------------------------------

def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def _groups(df: pd.DataFrame, dedup_on: str, group_by: str | None):
    """A group id per row: rows with the same dedup_key of `dedup_on`, or the same `group_by` value, share one."""
    keys = df[dedup_on].astype(str).map(dedup_key)
    ids = pd.Series(pd.factorize(keys)[0], index=df.index)
    group = df[group_by].where(~_blank(df[group_by])) if group_by else None  # a blank value links nothing
    while group_by:  # link both ways until stable: a question shared by two groups merges them
        linked = ids.groupby(group).transform("min").fillna(ids).astype(int).groupby(keys).transform("min")
        if linked.equals(ids):
            break
        ids = linked
    return pd.factorize(ids)[0]


def _where(df: pd.DataFrame, mask: pd.Series) -> str:
    """How many rows `mask` picks and where they came from: "3 of 40 rows (source_line 5, 9, 12) have"."""
    lines = df.loc[mask, LINE].tolist() if LINE in df else []
    where = f" ({LINE} {', '.join(map(str, lines[:8]))}{', ...' if len(lines) > 8 else ''})" if lines else ""
    return f"{int(mask.sum())} of {len(df)} rows{where} " + ("has" if mask.sum() == 1 else "have")


def _share(fraction: float, n: int) -> int:
    """How many of n groups a fraction takes, rounded half up: 10% of 5 is 1, 10% of 4 is 0."""
    return int(fraction * n + 0.5)


def _fewest(val: float, test: float, stratified: bool) -> int:
    """The fewest groups that fill train, validation and test (the stratified split folds test, then val)."""
    folds_test, folds_val = max(2, round(1 / test)), max(2, round((1 - test) / val))
    for n in itertools.count(3):
        if (n >= folds_test and n - math.ceil(n / folds_test) >= folds_val) if stratified else (
                min(_share(test, n), _share(val, n)) >= 1 and n - _share(test, n) - _share(val, n) >= 1):
            return n


def split(df: pd.DataFrame, stratify_by: str | None = None, val: float = 0.1, test: float = 0.1, seed: int = 0,
          group_by: str | None = None, dedup_on: str | None = None) -> dict[str, pd.DataFrame]:
    """Split into train / validation / test: the same for the same seed, leak-free, stratified if asked.

    Rows whose `dedup_on` text (default: question, else prompt) is the same after normalisation
    (dedup_key), or that share `group_by` (e.g. the pair id that links an English question to its
    Japanese translation), always land in the same split, so no question is seen in training and
    tested again. stratify_by=None shuffles these groups with the seed; stratify_by="intent" keeps every
    label's share in each split (scikit-learn's StratifiedGroupKFold). Too few rows is a ValueError.
    Taught in notebook 01.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < val < 1 or not 0 < test < 1 or val + test >= 1:
        raise ValueError("val and test are fractions with val + test < 1")
    dedup_on = dedup_on or ("question" if "question" in df else "prompt")
    absent = [c for c in (stratify_by, group_by, dedup_on) if c and c not in df]
    if absent:
        raise ValueError(f"split: no column {', '.join(map(repr, absent))}; columns are {', '.join(df.columns)}")
    if stratify_by and _blank(df[stratify_by]).any():
        raise ValueError(f"split: {_where(df, _blank(df[stratify_by]))} no {stratify_by!r} value to stratify by; "
                         "fill them in, or drop those rows")
    if group_by and _blank(df[group_by]).any():
        warnings.warn(f"split: {_where(df, _blank(df[group_by]))} a blank {group_by!r}: each of them is its own group "
                      f"(joined only by rows with the same {dedup_on})", stacklevel=2)
    groups = _groups(df, dedup_on, group_by)
    n, need = len(set(groups)), _fewest(val, test, stratify_by is not None)
    too_few = ValueError(
        f"{len(df)} rows" + (f" ({n} groups: rows with the same {dedup_on}" + (f" or {group_by}" if group_by else "")
                             + " stay together)" if n < len(df) else "")
        + f" cannot fill train/validation/test at val={val}, test={test}; need at least {need}"
        + (f" (stratified by {stratify_by!r})" if stratify_by else ""))
    if n < need:
        raise too_few
    if stratify_by is None:
        import numpy as np

        order = np.random.default_rng(seed).permutation(n)
        n_test, n_val = _share(test, n), _share(val, n)
        parts = {"train": order[n_test + n_val:], "validation": order[n_test:n_test + n_val], "test": order[:n_test]}
        return {name: df[np.isin(groups, part)].reset_index(drop=True) for name, part in parts.items()}

    def take(frame: pd.DataFrame, grp, fraction: float, rng: int) -> tuple[pd.Index, pd.Index]:
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / fraction)), shuffle=True, random_state=rng)
        try:
            rest, held = next(folds.split(frame, frame[stratify_by], grp))
        except ValueError:  # scikit-learn's words for too few groups, or for classes smaller than the folds
            counts = frame[stratify_by].value_counts()
            if counts.max() >= folds.n_splits:
                raise too_few from None
            raise ValueError(f"cannot stratify by {stratify_by!r} at val={val}, test={test}: a {fraction:.0%} share "
                             f"needs a class of at least {folds.n_splits} rows, the largest ({counts.idxmax()}) has "
                             f"{counts.max()}; pass stratify_by=None or larger shares") from None
        return frame.index[rest], frame.index[held]

    rest, test_idx = take(df, groups, test, seed)
    rest_df = df.loc[rest]
    train_idx, val_idx = take(rest_df, groups[df.index.get_indexer(rest)], val / (1 - test), seed + 1)
    return {name: df.loc[idx].reset_index(drop=True)
            for name, idx in [("train", train_idx), ("validation", val_idx), ("test", test_idx)]}


# --- formatting for TRL -----------------------------------------------------------------------

def to_dataset(splits: dict[str, pd.DataFrame], lang: str = "en", style: str = "prompt_completion",
               system: str | None = None):
    """Turn the splits into a datasets.DatasetDict in TRL's conversational format.

    style="prompt_completion": {"prompt": [system, user], "completion": [assistant]}: with TRL's
    completion_only_loss the loss is computed on the answer only (and its end-of-turn token).
    style="messages": {"messages": [system, user, assistant]}: the loss covers the whole conversation.
    system: the system message of every row; None: no system message (the course passes
    SYSTEM_PROMPT[lang]). A row's own `system` (from a messages file) comes before it.
    Works on read_file's frames (prompt/completion; every other column is kept: facts, keep columns,
    source_line), and on the course's long (question/answer, the `lang` rows) and wide
    (question_en/answer_en ...) frames, which keep `id`, `intent` and `facts`. Taught in notebook 01.
    """
    from datasets import Dataset, DatasetDict

    if style not in {"prompt_completion", "messages"}:
        raise ValueError("style must be 'prompt_completion' or 'messages'")

    def rows(frame: pd.DataFrame) -> list[dict]:
        if "prompt" in frame:
            q, a, extra = "prompt", "completion", [c for c in frame if c not in {"prompt", "completion", "system"}]
        else:
            _check_lang(lang)
            if "lang" in frame:
                other = ~frame["lang"].isin(LANGS)
                if other.any():
                    raise ValueError(f"to_dataset: {_where(frame, other)} lang "
                                     f"{', '.join(map(repr, frame.loc[other, 'lang'].unique()[:5]))}, not "
                                     f"{' or '.join(LANGS)}; data.clean(langs=data.LANGS) turns 'EN' or 'english' "
                                     "into 'en' and counts the rest")
                if len(frame) and not frame["lang"].eq(lang).any():
                    raise ValueError(f"to_dataset: no row has lang {lang!r}; the data has "
                                     f"{', '.join(sorted(frame['lang'].unique()))}")
                frame = frame[frame["lang"] == lang]
            q, a = ("question", "answer") if "question" in frame else (f"question_{lang}", f"answer_{lang}")
            extra = [c for c in ("id", "intent", "facts") if c in frame]
        out = []
        for record in frame.to_dict("records"):
            own = record.get("system") or system
            prompt = ([{"role": "system", "content": own}] if own else []) + [{"role": "user", "content": record[q]}]
            answer = [{"role": "assistant", "content": record[a]}]
            row = {"prompt": prompt, "completion": answer} if style == "prompt_completion" else {
                "messages": prompt + answer}
            out.append({**row, **{k: record[k] for k in extra}})
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
        args = SFTConfig(output_dir=tmp, completion_only_loss=True, max_length=max_length,
                         **recipe.trainer_basics(device=model.device.type))
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

    Used by data.quality_report (notebook 01).
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
        images = [plots.png_html(fig) for fig in (plots.balance(self.frame), plots.lengths(self.frame))]
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
PARAPHRASES = env.ROOT / "data" / "eval_paraphrases.jsonl"


def facts_for(dataset, lang: str = "en") -> list[list[str]]:
    """The fact-sheet facts each row's answer must contain, looked up in data/support_qa.jsonl by the row's
    question (or, when cleaning masked it, by its reference answer). Used by data.facts_of (notebook 03).
    """
    _check_lang(lang)
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

    _check_lang(lang)
    general = load_records(GENERAL_SET, GENERAL)
    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": row[f"question_{lang}"]}],
         "completion": [{"role": "assistant", "content": row[f"answer_{lang}"]}],
         "accept": list(row[f"accept_{lang}"]), "id": row["id"]}
        for row in general.to_dict("records")])


def eval_sets(trained_on, lang: str = "en", seed: int = 0, untrained: int | None = 24) -> dict:
    """The two halves of a fine-tuning test on the course data, as prompt/completion rows with `facts`:

    - "trained facts": questions none of the training rows asks, whose facts all appear in some answer of
      `trained_on` (the rows a run trained on): the rewordings of data/eval_paraphrases.jsonl, then the held-out
      course rows (test and validation) of the intents trained on that qualify;
    - "untrained facts": held-out questions with a fact no training answer contains (at most `untrained` rows).
    Fine-tuning should lift the first and cannot lift the second. Taught in notebook 03.
    """
    from datasets import Dataset, concatenate_datasets

    _check_lang(lang)
    taught = " ".join(row["completion"][0]["content"] for row in trained_on)
    qa = load_records(QA_PAIRS, QA).set_index("id")
    system = [{"role": "system", "content": SYSTEM_PROMPT[lang]}]
    rows = [{"prompt": system + [{"role": "user", "content": p[f"question_{lang}"]}],
             "completion": [{"role": "assistant", "content": qa.loc[p["source_ids"][0], f"answer_{lang}"]}],
             "intent": p["intent"], "facts": list(p[f"facts_{lang}"]), "source": "paraphrase"}
            for p in load_records(PARAPHRASES, PARAPHRASE).to_dict("records")]
    course = course_dataset(lang, seed)
    held_out = concatenate_datasets([course["test"], course["validation"]])
    rows += [{"prompt": row["prompt"], "completion": row["completion"], "intent": row["intent"], "facts": facts,
              "source": "held-out"} for row, facts in zip(held_out, facts_for(held_out, lang), strict=True) if facts]
    intents = set(trained_on["intent"])
    covered = [row["intent"] in intents and all(fact in taught for fact in row["facts"]) for row in rows]
    new = [row for row, c in zip(rows, covered, strict=True) if not c]
    return {"trained facts": Dataset.from_list([row for row, c in zip(rows, covered, strict=True) if c]),
            "untrained facts": Dataset.from_list(new[:untrained] if untrained is not None else new)}


def prepare(lang: str = "en", seed: int = 0, val: float = 0.1, test: float = 0.1, raw: str | Path = RAW_EXPORT,
            max_chars: int = 1000):
    """Notebook 01 in one call: load the raw export, clean, split, format. Returns (DatasetDict, CleanReport).

    Taught in notebook 01; later notebooks call it when notebook 01's output is missing.
    """
    _check_lang(lang)
    frame = load_records(raw, SUPPORT, errors="collect")
    kept, report = clean(frame, labels=INTENTS, max_chars=max_chars, rules=RULES)
    splits = split(kept, "intent", val, test, seed, group_by="pair_id" if "pair_id" in kept else None)
    return to_dataset(splits, lang, system=SYSTEM_PROMPT[lang]), report


def course_path(lang: str = "en", seed: int = 0) -> Path:
    """Where the course's formatted splits of `lang` and `seed` are saved: runs/01_dataset_<lang> for seed 0,
    runs/01_dataset_<lang>_seed<seed> for another seed. Taught in notebook 01.
    """
    return env.runs_dir() / (f"01_dataset_{lang}" + (f"_seed{seed}" if seed else ""))


def course_dataset(lang: str = "en", seed: int = 0):
    """The course's formatted splits: from course_path(lang, seed) if notebook 01 saved them, else rebuilt.

    Each seed has its own copy, so a cached split of one seed is never returned for another. Taught in notebook 01.
    """
    from datasets import load_from_disk

    _check_lang(lang)
    saved = course_path(lang, seed)
    if (saved / "dataset_dict.json").exists():
        return load_from_disk(str(saved))
    dataset, _ = prepare(lang, seed)
    dataset.save_to_disk(str(saved))
    return dataset


def facts_of(dataset, lang: str = "en") -> list[list[str]] | None:
    """The facts each row's answer must contain: the dataset's `facts` column (from_file(facts=...)), the
    course's fact sheet for course rows (facts_for), or None when no row has any (then compare texts).

    Taught in notebook 08.
    """
    if "facts" in dataset.column_names:
        facts = [list(row or []) for row in dataset["facts"]]
    elif "intent" in dataset.column_names and set(dataset["intent"]) <= set(INTENTS):
        facts = facts_for(dataset, lang)
    else:
        return None
    return facts if any(facts) else None


# --- your own data in one call ----------------------------------------------------------------

def from_file(source, prompt: str = "prompt", completion: str = "completion", *, messages: str | None = None,
              system: str | None = None, keep: Sequence[str] = (), facts: str | None = None,
              rules: Sequence[str] = (), val: float = 0.1, test: float = 0.1, seed: int = 0,
              stratify_by: str | None = None, group_by: str | None = None, max_chars: int | None = None,
              encoding: str = "utf-8-sig"):
    """Your own file as train / validation / test rows in the course's format: read_file, clean, split,
    to_dataset in one call. Returns a datasets.DatasetDict like course_dataset().

    The arguments are those of the four steps. By default no text changes (rules=()) and there is no
    system message (system=None). Empty rows and duplicates are removed (and rows over max_chars when
    given); then one warning gives the counts by reason. A bad line raises a DataError naming the
    file, the line and the column; too few rows a ValueError. Taught in notebook 08.
    """
    keep = [*keep, *[c for c in (stratify_by, group_by) if c and c not in keep]]
    frame = read_file(source, prompt, completion, messages=messages, keep=keep, facts=facts, encoding=encoding)
    kept, report = clean(frame, max_chars=max_chars, rules=rules)
    if len(report.removed) or report.changed:
        counts = [f"{reason} {n}" for reason, n in report.removed["reason"].value_counts().items()]
        counts += [f"{reason} {n}" for reason, n in report.changed.items()]
        warnings.warn(f"{frame.attrs['source']}: {report.input_rows} rows, {report.kept} kept; removed "
                      f"{len(report.removed)}, changed {sum(report.changed.values())} ({', '.join(counts)}). "
                      "See them: kept, report = data.clean(data.read_file(...), rules=...); report.removed, "
                      "report.examples", stacklevel=2)
    splits = split(kept, stratify_by, val, test, seed, group_by=group_by)
    return to_dataset(splits, system=system)

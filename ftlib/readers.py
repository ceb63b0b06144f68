"""Reading data files with errors that say where: the file, the line (or row), the column and what was expected.

    rows = readers.read_file("faq.csv", prompt="question", completion="answer")   # your own file (notebook 08)
    raw = readers.load_records("data/raw/support_export.csv", data.SUPPORT)       # a file checked against a schema

CSV, TSV, JSON, JSONL, Parquet, a pandas DataFrame or a 🤗 Dataset; errors="collect" keeps the good rows and lists the
bad ones in `df.attrs["problems"]`, which data.clean counts, so nothing is dropped silently. ftlib.data re-exports
these names (data.read_file, data.load_records, data.DataError): the notebooks call them from there.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

LINE = "source_line"  # column added by load_records: where each row came from in its file
SURROGATE = re.compile("[\ud800-\udfff]")


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


BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 first: its little-endian mark starts like UTF-16's
BINARY = {b"PK\x03\x04": "a zip archive (an Excel .xlsx workbook is one): save the sheet as CSV",
          b"\x1f\x8b": "gzip-compressed: decompress it first", b"PAR1": "a parquet file: name it .parquet",
          b"%PDF": "a PDF document", b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook: save the sheet as CSV"}


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    """The text of a file. A UTF-16 or UTF-32 byte-order mark is followed; a binary file, UTF-16 without a mark,
    or bytes that are not `encoding` are a DataError that says which encoding to pass."""
    magic = next((what for head, what in BINARY.items() if raw.startswith(head)), None)
    if magic:
        raise DataError(path, f"not text: {magic}", line=1, expected="a text file")
    if encoding.lower().replace("_", "-") in {"utf-8", "utf-8-sig", "utf8"}:
        encoding = next((name for bom, name in BOMS if raw.startswith(bom)), encoding)
    if raw[:200].count(0) * 4 > min(len(raw), 200) and encoding.startswith("utf-8"):
        raise DataError(path, "NUL bytes between the characters: UTF-16 text without a byte-order mark", line=1,
                        expected="UTF-8 text, or pass encoding='utf-16-le' (or 'utf-16-be')")
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


def _csv_problem(err: csv.Error) -> str:
    """Python's csv message in plain words."""
    text = str(err)
    if "unexpected end of data" in text:
        return "unreadable CSV: a quote opened here is never closed (the file ends inside it)"
    if "field larger than field limit" in text:
        return (f"unreadable CSV: a field over {csv.field_size_limit():,} characters (an unclosed quote that runs "
                "on, or a huge value)")
    return f"unreadable CSV ({text})"


def _delimiter_hint(header: list[str], delimiter: str) -> str:
    """A hint when a one-column header holds another delimiter: a TSV named .csv, or a CSV separated by ';'."""
    if len(header) != 1:
        return ""
    found = next((d for d in ("\t", ";", "|", ",") if d != delimiter and d in str(header[0])), None)
    return f" (the header is one column with {found!r} in it: the file is separated by {found!r})" if found else ""


def _csv_records(path: Path, text: str, delimiter: str = ","):
    """Yield the header, then (line, record) or a DataError for each data line.

    A record that fails (a broken quote, a field over the csv limit, a wrong field count) is one DataError at the
    line where it starts, and reading starts again on the next line: an unclosed quote cannot swallow the rows
    after it, each is read or reported.
    """
    starts = [0, *(m.end() for m in re.finditer(r"\r\n|\r|\n", text))]  # where each physical line begins

    def reader_from(line: int):
        return csv.reader(io.StringIO(text[starts[line - 1]:], newline=""), delimiter=delimiter, strict=True)

    reader, base = reader_from(1), 0
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, "the file is empty", line=1, expected="a header line") from None
    except csv.Error as err:
        raise DataError(path, f"unreadable header: {_csv_problem(err)}", line=1,
                        expected="properly quoted fields") from None
    twice = next((column for column, n in Counter(header).items() if n > 1), None)
    if twice is not None:
        raise DataError(path, f"the header names column {twice!r} twice", line=1, column=twice,
                        expected="unique column names")
    yield header
    start = reader.line_num + 1
    while True:
        try:
            row, problem = next(reader), None
        except StopIteration:
            return
        except csv.Error as err:
            row, problem = None, _csv_problem(err)
        end = base + reader.line_num
        if row is not None and len(row) != len(header) and any(row):
            problem = f"{len(row)} fields" + (f" in a record running over lines {start}-{end} (an unclosed quote?)"
                                              if end > start else "")
        if problem:
            yield DataError(path, problem, line=start, expected=f"{len(header)} fields like the header, "
                                                                "properly quoted" + _delimiter_hint(header, delimiter))
            if row is None or end > start:  # start again on the line after the bad record's first line
                if start >= len(starts):
                    return
                reader, base = reader_from(start + 1), start
                start += 1
                continue
        elif any(row):
            yield start, dict(zip(header, row, strict=True))
        start = base + reader.line_num + 1


class _TwiceKey(dict):
    """A JSON object that named a key twice (json keeps the last value without a word); `key` is that key."""

    key = ""


class _BadText(ValueError):
    """A JSON string that is not valid Unicode (a lone surrogate such as "\\ud800"): no DataFrame can hold it."""


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    for key, value in pairs:
        for text in value if isinstance(value, list) else [value]:
            lone = SURROGATE.search(text) if isinstance(text, str) else None
            if lone:
                raise _BadText(f"key {key!r} holds a lone surrogate \\u{ord(lone.group(0)):04x} (not valid Unicode)")
    record = dict(pairs)
    if len(record) < len(pairs):
        record = _TwiceKey(record)
        record.key = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
    return record


def _loads(text: str):
    """json.loads that keeps duplicate keys visible (a _TwiceKey); too deep nesting or a huge number is a
    ValueError with a plain message (a json.JSONDecodeError stays one)."""
    try:
        return json.loads(text, object_pairs_hook=_pairs)
    except RecursionError:
        raise ValueError("JSON nested deeper than Python's reader allows") from None
    except (json.JSONDecodeError, _BadText):
        raise
    except ValueError as err:  # a number over Python's 4300-digit limit
        raise ValueError(f"unreadable JSON value ({str(err).split(':')[0]})") from None


def _twice(path: Path, record: dict, line: int | None, label: str = "") -> DataError | None:
    """A DataError when the JSON object named a key twice, else None."""
    if not isinstance(record, _TwiceKey):
        return None
    return DataError(path, f"{label}the object names key {record.key!r} twice", line=line, column=record.key,
                     expected="unique keys")


def _jsonl_records(path: Path, text: str):
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028, U+0085 may sit in a string
        if not line.strip():
            continue
        try:
            record = _loads(line)
        except json.JSONDecodeError as err:
            hint = " (the file is one JSON list: name it .json)" if number == 1 and line.lstrip()[:1] == "[" else ""
            yield DataError(path, f"invalid JSON ({err.msg} at character {err.colno}){hint}", line=number,
                            expected="one JSON object per line")
            continue
        except ValueError as err:
            yield DataError(path, str(err), line=number, expected="one JSON object per line")
            continue
        if not isinstance(record, dict):
            yield DataError(path, f"a JSON {type(record).__name__}", line=number, expected="a JSON object")
        else:
            yield _twice(path, record, number) or (number, record)


def _json_records(path: Path, text: str):
    try:
        data = _loads(text)
    except json.JSONDecodeError as err:
        hint = " (one object per line: name the file .jsonl)" if err.msg == "Extra data" else ""
        raise DataError(path, f"invalid JSON ({err.msg}){hint}", line=err.lineno,
                        expected="a JSON list of objects") from None
    except ValueError as err:
        raise DataError(path, str(err), expected="a JSON list of objects") from None
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        data = data["records"]
    if not isinstance(data, list):
        raise DataError(path, f"a JSON {type(data).__name__} at the top", line=1, expected="a list of objects")
    for number, record in enumerate(data, 1):
        if isinstance(record, dict):
            yield _twice(path, record, None, f"item {number}: ") or (number, record)
        else:
            yield DataError(path, f"item {number} is a JSON {type(record).__name__}", expected="an object")


def _frame_records(frame: pd.DataFrame):
    yield from enumerate(frame.to_dict("records"), 1)


def _parquet_frame(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises many types; name the file whatever it was
        raise DataError(path, f"not a readable parquet file ({type(err).__name__}: {err})") from None


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


def _file_kind(path: Path, kinds: tuple[str, ...]) -> str:
    """The file's type from its extension, or a DataError for a missing file, a directory or another type."""
    if path.is_dir():
        raise DataError(path, "is a directory", expected="a file")
    if path.is_symlink() and not path.exists():
        raise DataError(path, f"a link to {os.readlink(path)}, which does not exist", expected="a file")
    if path.exists() and not path.is_file():
        raise DataError(path, "not a regular file (a pipe, a socket or a device)", expected="a file")
    if not path.is_file():
        raise DataError(path, "no such file" + ("" if path.parent.is_dir() else f" (no folder {path.parent})"))
    kind = path.suffix.lower().lstrip(".")
    if kind not in kinds:
        raise DataError(path, f"unknown file type .{kind}",
                        expected=", ".join(f".{k}" for k in kinds[:-1]) + f" or .{kinds[-1]}")
    return kind


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(path, f"cannot be read ({err.strerror})") from None


def _collect(items, convert, errors: str) -> tuple[list[dict], list[DataError]]:
    """Convert each (number, record) item; raise the first DataError, or collect them (errors="collect")."""
    if errors not in {"raise", "collect"}:
        raise ValueError("errors must be 'raise' or 'collect'")
    rows, problems = [], []
    for item in items:
        if not isinstance(item, DataError):
            item = convert(*item)
        if isinstance(item, DataError):
            if errors == "raise":
                raise item
            problems.append(item)
        else:
            rows.append(item)
    return rows, problems


def load_records(path: str | Path, schema: Schema, errors: str = "raise", encoding: str = "utf-8-sig") -> pd.DataFrame:
    """Read a CSV, JSONL, JSON or parquet file into a DataFrame checked against `schema`.

    Every problem is a DataError naming the file, the line (or row), the column and what was expected.
    errors="raise" stops at the first; errors="collect" keeps the good rows and lists the bad ones in
    `df.attrs["problems"]`, so that clean() counts them: nothing is dropped silently. Each row keeps
    the line it came from in the `source_line` column. Taught in notebook 01.
    """
    path = Path(path)
    kind = _file_kind(path, ("csv", "jsonl", "json", "parquet"))
    if kind == "parquet":
        items = _frame_records(_parquet_frame(path))
    else:
        text = _decode(path, _read(path), encoding)
        items = (_csv_records if kind == "csv" else _jsonl_records if kind == "jsonl" else _json_records)(path, text)
        if kind == "csv":
            header = next(items)
            missing = [column for column in schema.required if column not in header]
            if missing:
                raise DataError(path, "the header lacks " + ", ".join(missing) + _delimiter_hint(header, ","),
                                line=1, expected="columns " + ", ".join(schema.required))
    rows, problems = _collect(items, lambda n, record: _check(path, n, record, schema, kind), errors)
    if not rows and not problems:
        raise DataError(path, "no records", expected="at least one row")
    frame = pd.DataFrame(rows, columns=[*schema.required, *[c for c in schema.optional if rows and c in rows[0]],
                                        LINE])
    frame.attrs["problems"] = problems
    frame.attrs["source"] = str(path)
    return frame


# --- your own file (notebook 08) -------------------------------------------------------------

FILE_KINDS = ("csv", "tsv", "json", "jsonl", "parquet")
CHAT = "a list of {'role', 'content'} messages: an optional system message, one user message, the assistant's answer"
_GUESS = {"prompt": ("question", "prompt", "input", "instruction", "query", "user", "text", "q"),
          "completion": ("answer", "completion", "output", "response", "reply", "target", "assistant", "a"),
          "messages": ("messages", "conversation", "conversations", "chat")}


def _lacks(name: str, wanted: list[tuple[str, str]], columns: list, line: int | None, what: str) -> DataError | None:
    """A DataError naming the wanted columns that are not in `columns`, with the mapping to pass, or None."""
    missing = [(param, column) for param, column in wanted if column not in columns]
    if not missing:
        return None
    lower = {str(c).strip().lower(): c for c in columns}
    guess = {param: next((lower[g] for g in _GUESS.get(param, ()) if g in lower), None) for param, _ in missing}
    chat = next((lower[g] for g in _GUESS["messages"] if g in lower), None)
    if "prompt" in guess and not guess["prompt"] and chat:
        guess = {"messages": chat}  # a chat file read as prompt/completion
    passes = ", ".join(f"{param}={column!r}" for param, column in guess.items() if column)
    checks = ", ".join(f"{param}=" for param, column in guess.items() if not column)
    advice = "; ".join(text for text in (passes and f"pass {passes}", checks and f"check {checks}") if text)
    return DataError(name, f"{what} lacks " + ", ".join(repr(c) for _, c in missing) + "; columns are "
                     + ", ".join(map(str, columns)) + ": " + advice + _delimiter_hint(columns, ""), line=line,
                     column=missing[0][1])


def _plain(value):
    """A Python value: numpy arrays and scalars (from parquet or pandas) as lists and numbers, NaN as None."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    return None if value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


def _chat(value) -> tuple[str, str, str] | str:
    """(system, user, assistant) of a one-turn chat, or what is wrong with it."""
    if not isinstance(value, list):
        return f"{type(value).__name__} value" + (" (text, not a list)" if isinstance(value, str) else "")
    for number, message in enumerate(value, 1):
        if not isinstance(message, dict):
            return f"message {number} is a {type(message).__name__}"
        lacking = [key for key in ("role", "content") if key not in message]
        if lacking:
            return f"message {number} lacks {lacking[0]!r} (its keys: {', '.join(map(str, message))})"
        if message["role"] not in {"system", "user", "assistant"}:
            return f"message {number} has role {message['role']!r}"
        if not isinstance(message["content"], str):
            return f"message {number} has {type(message['content']).__name__} content"
    roles = [message["role"] for message in value]
    if not roles or roles[-1] != "assistant":
        return "no messages" if not roles else f"the last message is from the {roles[-1]}, not the assistant"
    system = value[0]["content"] if roles[0] == "system" else ""
    if roles[1 if roles[0] == "system" else 0:] != ["user", "assistant"]:
        return f"roles {', '.join(roles)} (multi-turn conversations are not supported: split them into single turns)"
    return system, value[-2]["content"], value[-1]["content"]


def _facts(value) -> list[str] | None:
    """A list of fact strings from a list, a JSON list in text, or text separated by ";" or "|"; None if not."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, str):
        return [fact.strip() for fact in re.split(r"[;|]", value) if fact.strip()]
    if value is None or (isinstance(value, list | tuple) and all(isinstance(f, str) for f in value)):
        return list(value or [])
    return None


def _source(source, encoding: str) -> tuple[str, bool, list | None, Iterable]:
    """(name, rows are numbered by file line, columns or None when each record has its own, items)."""
    if isinstance(source, pd.DataFrame):
        return source.attrs.get("source", "DataFrame"), False, list(source.columns), _frame_records(source)
    if not isinstance(source, str | Path):
        from datasets import Dataset, DatasetDict, concatenate_datasets

        name = f"DatasetDict ({' + '.join(source)})" if isinstance(source, DatasetDict) else "Dataset"
        if isinstance(source, DatasetDict):
            source = concatenate_datasets(list(source.values()))
        if not isinstance(source, Dataset):
            raise TypeError(f"read_file reads a path, a DataFrame or a datasets.Dataset, not {type(source).__name__}")
        return name, False, list(source.column_names), enumerate(source, 1)
    path = Path(source)
    kind = _file_kind(path, FILE_KINDS)
    if kind == "parquet":
        frame = _parquet_frame(path)
        return str(path), False, list(frame.columns), _frame_records(frame)
    text = _decode(path, _read(path), encoding)
    if not text.strip():
        raise DataError(path, "the file is empty", line=1, expected="a header line" if "sv" in kind else "records")
    if kind in {"csv", "tsv"}:
        items = _csv_records(path, text, "\t" if kind == "tsv" else ",")
        return str(path), True, next(items), items
    return str(path), kind == "jsonl", None, (_jsonl_records if kind == "jsonl" else _json_records)(path, text)


def read_file(source, prompt: str = "prompt", completion: str = "completion", *, messages: str | None = None,
              keep: Sequence[str] = (), facts: str | None = None, errors: str = "raise",
              encoding: str = "utf-8-sig") -> pd.DataFrame:
    """Read your own question-answer data into `prompt` and `completion` columns, with located errors.

    source: a .csv, .tsv, .json (a list of objects), .jsonl or .parquet file, a pandas DataFrame, a
    datasets.Dataset, or a DatasetDict (its splits one after another, rows numbered across them:
    from_file splits again).
    prompt / completion: the names of your question and answer columns. messages: instead, a chat
    column, one user message and the assistant's answer each (a first system message goes to a `system`
    column, which to_dataset uses); multi-turn conversations are an error. keep: more columns to carry
    (a label, a group). facts: a column of strings each answer must contain, as a list (or a JSON list)
    or as text separated by ";" or "|"; it becomes a `facts` list column. `source_line` holds the file
    line (csv, tsv, jsonl) or the row number (otherwise). Nothing in the text is changed.
    Every problem is a DataError naming the file, the line or row, the column and what was expected;
    errors="collect" keeps the good rows and lists the bad ones in `df.attrs["problems"]` (clean()
    counts them; with no good row the first is raised). Taught in notebook 08.
    """
    if messages and (prompt, completion) != ("prompt", "completion"):
        raise ValueError("pass either messages= or prompt= and completion=, not both")
    clash = set(keep) & {"prompt", "completion", "system", "facts", LINE}
    if clash:
        raise ValueError(f"keep= cannot hold {', '.join(sorted(clash))}: read_file makes those columns")
    wanted = [("messages", messages)] if messages else [("prompt", prompt), ("completion", completion)]
    wanted += [("keep", column) for column in keep] + ([("facts", facts)] if facts else [])
    name, numbered, columns, items = _source(source, encoding)
    if columns is not None:
        twice = next((c for c, n in Counter(columns).items() if n > 1), None)
        if twice is not None:  # a csv header was checked already
            raise DataError(name, f"column {twice!r} appears twice", column=twice, expected="unique column names")
        lacking = _lacks(name, wanted, columns, 1 if numbered else None, "the header" if numbered else "the data")
        if lacking:
            raise lacking

    def convert(number: int, record: dict) -> dict | DataError:
        line, label = (number, "") if numbered else (None, f"row {number}: ")
        lacking = None if columns is not None else _lacks(name, wanted, list(record), line, label + "the record")

        def bad(column: str, problem: str, expected: str) -> DataError:
            return DataError(name, label + problem, line=line, column=column, expected=expected)

        if lacking:
            return lacking
        row = {}
        if messages:
            chat = _chat(_plain(record[messages]))
            if isinstance(chat, str):
                return bad(messages, chat, CHAT)
            row["system"], row["prompt"], row["completion"] = chat
        for key, column in [] if messages else [("prompt", prompt), ("completion", completion)]:
            value = _plain(record[column])
            if value is None:
                return bad(column, "missing value", "text")
            if not isinstance(value, str):
                return bad(column, f"{type(value).__name__} value {repr(value)[:60]}", "text")
            row[key] = value
        row |= {column: _plain(record[column]) for column in keep}
        if facts:
            row["facts"] = _facts(_plain(record[facts]))
            if row["facts"] is None:
                return bad(facts, f"{type(record[facts]).__name__} value", "a list of strings, or text like 'a;b'")
        return row | {LINE: number}

    rows, problems = _collect(items, convert, errors)
    if not rows:
        raise problems[0] if problems else DataError(name, "no records", line=2 if numbered else None,
                                                     expected="at least one row")
    frame = pd.DataFrame(rows)
    if "system" in frame and not frame["system"].any():
        frame = frame.drop(columns="system")
    frame.attrs = {"problems": problems, "source": name}
    return frame

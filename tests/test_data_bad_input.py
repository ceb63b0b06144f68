"""Bad input, the second round (issue 17): nothing is lost or changed silently, nothing crashes unhelpfully.

Kinds of bad input covered by the tests: 108 in all.
- tests/test_data_errors.py: 32 (numbered 1-32 in its docstring).
- tests/test_data_from_file.py: 26 more: a directory; a chat file read as prompt/completion; keep= naming a missing
  column; a duplicate CSV header; a duplicate DataFrame column; 11 malformed `messages` rows (BAD_MESSAGES); too few
  rows to split; a class too small to stratify; a list instead of a path; messages= with prompt=; keep= clashing
  with a made column; a facts column of numbers; unknown rules; no label in labels=; clean and split on a missing
  column.
- this file: 50 more: READ_ERRORS 19, a broken link, a pipe and a missing folder 3, READ_FINE 4, TEXT_PROBLEMS 9,
  lang 3 (LANG_SPELLINGS 2, an unknown lang), UNCHANGED 4, CRASHES 6, a three-row file given to prepare, blank
  pair ids. COLLECTED reads an unclosed quote (kind 8 above) and two READ_ERRORS files in errors="collect" mode
  (not counted again).
Each asserts a located, plain error (the file and line, or the rows and their source_line) or a counted reason in
the cleaning report; READ_FINE and UNCHANGED assert the input is read, or kept, exactly as it is.
"""

import json
import os
import warnings

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict
from test_data_errors import write  # tests/ is on sys.path under pytest

from ftlib import data, env
from ftlib.data import DataError

PC = "prompt,completion\n"
GOOD = "How long is the loan?,21 days.\n"


def rec(prompt="How long is the loan?", completion="21 days.", **more) -> str:
    return json.dumps({"prompt": prompt, "completion": completion, **more}, ensure_ascii=False) + "\n"


# --- reading: (id, file name, content, expected words, expected line) -------------------------------

READ_ERRORS = [
    ("utf16_without_bom", "a.csv", (PC + GOOD).encode("utf-16-le"), "UTF-16", 1),
    ("xlsx_named_csv", "a.csv", b"PK\x03\x04\x14\x00\x06\x00", "Excel .xlsx", 1),
    ("old_xls_named_csv", "a.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "old Excel .xls", 1),
    ("gzip_named_csv", "a.csv", b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip-compressed", 1),
    ("parquet_named_jsonl", "a.jsonl", b"PAR1\x15\x04\x15", "name it .parquet", 1),
    ("pdf_named_csv", "a.csv", b"%PDF-1.7\n", "a PDF document", 1),
    ("deeply_nested_json", "a.json", "[" * 100_000 + "]" * 100_000, "nested deeper", None),
    ("deeply_nested_jsonl_line", "a.jsonl", rec() + '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
     "nested deeper", 2),
    ("5000_digit_number", "a.jsonl", rec() + '{"prompt": "q", "completion": ' + "9" * 5000 + "}\n",
     "unreadable JSON value", 2),
    ("duplicate_key_in_jsonl", "a.jsonl", '{"prompt": "q", "prompt": "r", "completion": "a"}\n',
     "names key 'prompt' twice", 1),
    ("duplicate_key_in_json_item", "a.json", "[" + rec().strip() + ', {"prompt": "q", "completion": "a", '
     '"completion": "b"}]', "item 2: the object names key 'completion' twice", None),
    ("jsonl_named_json", "a.json", rec() + rec("Late fee?"), "name the file .jsonl", 2),
    ("json_list_named_jsonl", "a.jsonl", "[\n" + rec().strip() + "\n]\n", "name it .json", 1),
    ("semicolon_separated_csv", "a.csv", "prompt;completion\nq;a\n", "separated by ';'", 1),
    ("tsv_named_csv", "a.csv", "prompt\tcompletion\nq\ta\n", "separated by '\\t'", 1),
    ("five_megabyte_field", "a.csv", PC + GOOD + 'q,"' + "x" * 5_000_000 + '"\n' + GOOD, "a field over 131,072", 3),
    ("quote_closing_lines_later", "a.csv", PC + GOOD + 'Q2,"A2 starts\nQ3,A3",extra\n' + GOOD,
     "running over lines 3-4", 3),
    ("empty_json_list", "a.json", "[]", "no records", None),
    ("lone_surrogate_in_jsonl", "a.jsonl", rec() + '{"prompt": "q \\ud800", "completion": "a"}\n',
     "key 'prompt' holds a lone surrogate \\ud800", 2),
]


@pytest.mark.parametrize("name, filename, content, words, line", READ_ERRORS, ids=[r[0] for r in READ_ERRORS])
def test_read_errors_are_located(name, filename, content, words, line, tmp_path):
    path = write(tmp_path, filename, content)
    with pytest.raises(DataError) as err:
        data.read_file(path)
    assert str(err.value).startswith(str(path)) and words in str(err.value), err.value
    assert err.value.line == line
    assert "cp932" not in str(err.value)  # no advice to try Shift-JIS for a file that is not text or not UTF-8-ish


def test_broken_link_and_a_pipe_and_a_missing_folder(tmp_path):
    (tmp_path / "link.csv").symlink_to(tmp_path / "gone.csv")
    os.mkfifo(tmp_path / "pipe.csv")
    for path, words in [(tmp_path / "link.csv", "a link to"), (tmp_path / "pipe.csv", "not a regular file"),
                        (tmp_path / "no" / "a.csv", r"no such file \(no folder")]:
        with pytest.raises(DataError, match=words) as err:
            data.read_file(path)
        assert str(err.value).startswith(str(path))


READ_FINE = [
    ("utf16_with_bom", "a.csv", (PC + GOOD + GOOD.replace("loan", "book")).encode("utf-16")),
    ("utf32_with_bom", "a.csv", (PC + GOOD + GOOD.replace("loan", "book")).encode("utf-32")),
    ("cr_only_line_endings", "a.csv", (PC + GOOD + GOOD.replace("loan", "book")).replace("\n", "\r")),
    ("line_separators_inside_jsonl_strings", "a.jsonl",
     rec("How long\u2028is the loan?", "21\u0085days.\x0c") + rec("Late fee?", "25\u2029cents.")),
]


@pytest.mark.parametrize("name, filename, content", READ_FINE, ids=[r[0] for r in READ_FINE])
def test_valid_files_in_other_encodings_and_separators_are_read(name, filename, content, tmp_path):
    df = data.read_file(write(tmp_path, filename, content))
    assert len(df) == 2 and df.attrs["problems"] == []
    assert df["prompt"][0].startswith("How long") and df[data.LINE].tolist() == ([2, 3] if "csv" in filename
                                                                                else [1, 2])
    if "jsonl" in filename:
        assert df["prompt"][0] == "How long\u2028is the loan?" and df["completion"][0] == "21\u0085days.\x0c"


# --- collect mode: every row of the file is read or reported ----------------------------------------

COLLECTED = [  # (id, the broken line 3, lines after it): a broken record no longer swallows the rows after it
    ("unclosed_quote", 'How long,"is it?\n', 3),
    ("five_megabyte_field", 'q,"' + "x" * 5_000_000 + '"\n', 3),
    ("quote_closing_lines_later", 'Q2,"A2 starts\nQ3,A3",extra\n', 2),
]


@pytest.mark.parametrize("name, broken, after", COLLECTED, ids=[r[0] for r in COLLECTED])
def test_a_broken_record_does_not_swallow_the_rows_after_it(name, broken, after, tmp_path):
    content = PC + GOOD + broken + "".join(f"Question {i}?,Answer {i}.\n" for i in range(after))
    df = data.read_file(write(tmp_path, "a.csv", content), errors="collect")
    assert df["prompt"].tolist() == ["How long is the loan?", *[f"Question {i}?" for i in range(after)]]
    assert df.attrs["problems"][0].line == 3
    kept, report = data.clean(df)
    assert report.input_rows == content.count("\n") - 1  # every data line of the file: read, or counted unreadable
    assert report.removed["reason"].eq("unreadable line").sum() == len(df.attrs["problems"])


# --- text that must not be trained on as it is: removed and counted, with the characters named ---------

TEXT_PROBLEMS = [
    ("mojibake_utf8_read_as_cp1252", "ã“ã‚“ã«ã¡ã¯ã€è¿”å“ã¯30æ—¥ä»¥å†…", "mojibake", "cp1252"),
    ("mojibake_utf8_read_as_latin1", "CafÃ© rÃ©sumÃ©", "mojibake", "'é'"),
    ("mojibake_utf8_read_as_shift_jis", "縺薙ｓ縺ｫ縺｡縺ｯ", "mojibake", "Shift-JIS"),
    ("replacement_character", "The fee is 25 \ufffd a day.", "mojibake", "U+FFFD"),
    ("nul_byte", "21 days.\x00", "control characters", "U+0000"),
    ("terminal_colour_codes", "\x1b[31m21 days\x1b[0m", "control characters", "U+001B"),
    ("zero_width_only", "\u200b\u200b", "only invisible characters", "U+200B"),
    ("byte_order_marks_and_joiners_only", " \ufeff\u2060 ", "only invisible characters", "U+FEFF"),
    ("right_to_left_override", "Pay at \u202egro.elpmaxe\u202c today", "bidi control characters", "U+202E"),
]


@pytest.mark.parametrize("name, answer, reason, detail", TEXT_PROBLEMS, ids=[r[0] for r in TEXT_PROBLEMS])
def test_unfit_text_is_removed_with_its_reason(name, answer, reason, detail):
    df = pd.DataFrame({"prompt": ["How long is the loan?", "Late fee?"], "completion": [answer, "25 cents."],
                       data.LINE: [2, 3]})
    kept, report = data.clean(df)
    assert kept["prompt"].tolist() == ["Late fee?"]
    row = report.removed.iloc[0]
    assert row["reason"] == reason and row[data.LINE] == 2 and detail in row["detail"], row["detail"]
    assert row["detail"].startswith("completion: ") and report.input_rows == 2


def test_text_from_a_file_with_a_nul_byte_is_counted(tmp_path):
    path = write(tmp_path, "a.jsonl", rec() + rec("Late fee?", "25\u0000 cents."))
    kept, report = data.clean(data.read_file(path))
    assert report.summary().loc["control characters", "rows"] == 1 and report.removed[data.LINE].tolist() == [2]


def test_good_text_is_not_flagged():
    for text in ["Café résumé naïve “quoted” – fine…", "São Paulo, Zürich, Ærø", "こんにちは、30日以内です。",
                 "👨‍👩‍👧 family emoji with joiners", "tab\tand\nnew lines\r\n", "שלום עולם (Hebrew, no controls)",
                 "Ａｎ ｉｄｅｏｇｒａｐｈｉｃ\u3000space", "½ × 3 ≤ 2 → ©®™"]:
        assert data.text_problem(text) is None, text


# --- lang: known spellings are normalised and counted, others removed; to_dataset names what it cannot use ----

def long_rows(langs):
    return pd.DataFrame({"lang": langs, "intent": "pricing", "question": [f"Question {i}?" for i in range(len(langs))],
                         "answer": [f"Answer {i}." for i in range(len(langs))], data.LINE: range(2, 2 + len(langs))})


LANG_SPELLINGS = [("upper_case_code", ["EN", " ja "], ["en", "ja"]),
                  ("language_names", ["english", "日本語", "Japanese", "ja-JP"], ["en", "ja", "ja", "ja"])]


@pytest.mark.parametrize("name, langs, codes", LANG_SPELLINGS, ids=[r[0] for r in LANG_SPELLINGS])
def test_lang_spellings_become_codes_and_are_counted(name, langs, codes):
    kept, report = data.clean(long_rows([*langs, "en"]))
    assert kept["lang"].tolist() == [*codes, "en"] and report.changed["lang spelling"] == len(langs)
    assert report.examples["lang spelling"] == (langs[0], codes[0])
    ds = data.to_dataset({"train": kept}, lang="ja")["train"]
    assert len(ds) == codes.count("ja")  # no row vanishes for its spelling


def test_an_unknown_lang_is_removed_and_to_dataset_refuses_unclean_rows():
    kept, report = data.clean(long_rows(["en", "fr", ""]))
    assert kept["lang"].tolist() == ["en"]
    assert report.removed["reason"].tolist() == ["lang not en or ja"] * 2 and report.removed[data.LINE].tolist() == [
        3, 4]
    assert len(data.clean(long_rows(["en", "fr"]), langs=None)[0]) == 2  # langs=None: no check
    with pytest.raises(ValueError, match=r"to_dataset: 2 of 3 rows \(source_line 2, 3\) have lang 'EN', 'english', "
                                         r"not en or ja; data.clean"):
        data.to_dataset({"train": long_rows(["EN", "english", "en"])})


# --- text that must stay as it is -------------------------------------------------------------------

UNCHANGED = [
    ("less_and_greater_than", "Orders < 5000 yen cost 550 yen; orders > 5000 yen ship free."),
    ("generic_types_in_code", "Use List<String> or Map<K, V>; if a < b > c, swap."),
    ("ampersands_that_are_not_entities", "AT&T, R&D and Tom&notes &copy without a semicolon."),
    ("emoji_only_questions", None),
]


@pytest.mark.parametrize("name, text", UNCHANGED, ids=[r[0] for r in UNCHANGED])
def test_text_that_only_looks_odd_is_kept_unchanged(name, text):
    if text is None:  # emoji-only questions differ from each other: none is a near duplicate of another
        df = pd.DataFrame({"prompt": ["😀😀", "🎉🎉", "👍", "How?"], "completion": ["Hi!", "Party!", "Thanks!", "So."]})
        kept, report = data.clean(df, rules=data.RULES)
        assert len(kept) == 4 and len(report.removed) == 0
        assert data.dedup_key("😀 😀") == data.dedup_key("😀😀") != data.dedup_key("🎉🎉")
        return
    assert data.strip_html(text) == text
    kept, report = data.clean(pd.DataFrame({"prompt": ["Q?"], "completion": [text]}), rules=("html",))
    assert kept["completion"][0] == text and not report.changed
    assert data.strip_html("<p>Orders < 5000 yen</p><!-- note -->ship <a href='x?a>b'>free</a>.<BR/>") == \
        "Orders < 5000 yen\nship free."


# --- crashes that are now plain errors ---------------------------------------------------------------

def test_prepare_on_a_three_row_file_says_how_many_rows_it_needs(tmp_path):
    intents = ["pricing", "warranty", "returns_refunds"]
    path = write(tmp_path, "raw.csv", "ticket_id,lang,intent,question,answer\n" + "".join(
        f"T{i},en,{intent},Question {i}?,Answer {i}.\n" for i, intent in enumerate(intents)))
    with pytest.raises(ValueError, match=r"^3 rows cannot fill train/validation/test .* need at least \d+"):
        data.prepare(raw=path)


CRASHES = [
    ("prepare_lang_fr", lambda: data.prepare("fr"), r"lang='fr': the course data is in 'en' and 'ja'"),
    ("course_dataset_lang_fr", lambda: data.course_dataset("fr"), r"lang='fr': the course data is in"),
    ("to_dataset_lang_fr", lambda: data.to_dataset({"train": long_rows(["en"])}, lang="fr"), r"lang='fr'"),
    ("to_dataset_lang_not_in_the_data", lambda: data.to_dataset({"train": long_rows(["en", "en"])}, lang="ja"),
     r"to_dataset: no row has lang 'ja'; the data has en"),
    ("split_shares_out_of_range", lambda: data.split(long_rows(["en"] * 20), val=0), "val and test are fractions"),
    ("stratify_column_with_blanks", lambda: data.split(long_rows(["en"] * 20).assign(
        intent=["pricing", ""] * 10), "intent"), r"split: 10 of 20 rows \(source_line 3, 5, .*\) have no 'intent'"),
]


@pytest.mark.parametrize("name, call, message", CRASHES, ids=[r[0] for r in CRASHES])
def test_crashes_are_plain_value_errors(name, call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_blank_pair_ids_are_their_own_groups_and_counted():
    df = long_rows(["en"] * 40).assign(pair_id=[f"p{i // 2}" for i in range(20)] + [""] * 10 + [None] * 10)
    with pytest.warns(UserWarning, match=r"split: 20 of 40 rows \(source_line 22, 23, .*\) have a blank 'pair_id': "
                                         r"each of them is its own group"):
        parts = data.split(df, val=0.2, test=0.2, group_by="pair_id")
    blank = {name: int(part["pair_id"].fillna("").eq("").sum()) for name, part in parts.items()}
    assert sum(blank.values()) == 20 and blank["test"] > 0 and blank["validation"] > 0  # not all in training
    paired = {name: set(part["pair_id"].dropna()) - {""} for name, part in parts.items()}
    assert not paired["train"] & paired["test"] and not paired["train"] & paired["validation"]


def test_course_dataset_of_another_seed_is_not_the_cached_one(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "runs_dir", lambda: tmp_path)
    monkeypatch.setattr(data, "prepare", lambda lang, seed: (DatasetDict(
        {"train": Dataset.from_list([{"seed": seed}])}), None))
    DatasetDict({"train": Dataset.from_list([{"seed": 7}])}).save_to_disk(str(data.course_path("en", 7)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert data.course_dataset("en", 7)["train"][0]["seed"] == 7  # notebook 01 saved seed 7 where it belongs
        assert data.course_dataset("en", 0)["train"][0]["seed"] == 0  # and seed 0 is not that copy
    assert data.course_path("en", 0) != data.course_path("en", 7) != data.course_path("ja", 7)
    notebook = json.loads((env.ROOT / "notebooks" / "01_data_preparation.ipynb").read_text(encoding="utf-8"))
    saving = next("".join(c["source"]) for c in notebook["cells"] if "save_to_disk" in "".join(c["source"]))
    assert "data.course_path(LANG, SEED)" in saving  # notebook 01 saves each seed to its own folder

"""Bad input gets a clear error (file, line or row, column, what was expected) or a counted report entry.

The kinds of bad input covered here:
 1 missing file                     2 unknown file type               3 empty CSV
 4 CSV with a header only           5 CSV missing a required column   6 CSV row with too many fields
 7 CSV row with too few fields      8 CSV with an unclosed quote      9 Shift-JIS bytes in a UTF-8 CSV
10 invalid bytes (not any encoding) 11 JSONL line that is not JSON    12 JSONL line that is a list
13 JSONL record missing a key       14 JSONL number where text is due 15 JSON top level not a list
16 JSON item that is not an object  17 JSON syntax error              18 corrupt parquet
19 parquet with a wrong-typed column 20 list column given as text     21 JSONL null text (-> counted empty)
22 label outside the label set      23 empty answer                   24 over-long row
25 exact duplicate                  26 near duplicate (case, width)   27 HTML in an answer
28 collect mode: bad lines counted  29 invalid errors= argument
Handled, not errors: 30 UTF-8 BOM, 31 Windows line endings, 32 blank lines.
"""

import json

import pandas as pd
import pytest

from ftlib import data
from ftlib.data import SUPPORT, DataError, load_records

HEADER = "ticket_id,lang,intent,question,answer\n"
GOOD = "T1,en,warranty,How long is the warranty?,18 months.\n"


def write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def error(path, schema=SUPPORT) -> DataError:
    with pytest.raises(DataError) as err:
        load_records(path, schema)
    assert str(path) in str(err.value)
    return err.value


def test_01_missing_file(tmp_path):
    assert "no such file" in str(error(tmp_path / "nope.csv"))


def test_02_unknown_type(tmp_path):
    assert ".csv, .jsonl" in str(error(write(tmp_path, "a.txt", "x")))


def test_03_empty_csv(tmp_path):
    err = error(write(tmp_path, "a.csv", ""))
    assert err.line == 1 and "empty" in str(err)


def test_04_header_only(tmp_path):
    assert "no records" in str(error(write(tmp_path, "a.csv", HEADER)))


def test_05_missing_column(tmp_path):
    err = error(write(tmp_path, "a.csv", "ticket_id,lang,question,answer\nT1,en,q,a\n"))
    assert err.line == 1 and "header lacks intent" in str(err)


def test_06_too_many_fields(tmp_path):
    err = error(write(tmp_path, "a.csv", HEADER + GOOD + "T2,en,warranty,q,a,extra\n"))
    assert err.line == 3 and "6 fields" in str(err) and "5 fields" in str(err)


def test_07_too_few_fields(tmp_path):
    err = error(write(tmp_path, "a.csv", HEADER + GOOD + GOOD + "T3,en,warranty\n"))
    assert err.line == 4 and "3 fields" in str(err)


def test_08_unclosed_quote(tmp_path):
    err = error(write(tmp_path, "a.csv", HEADER + GOOD + 'T2,en,warranty,"How long,18 months.\n' + GOOD * 3))
    assert err.line == 3 and "line 3" in str(err)


def test_09_shift_jis_bytes(tmp_path):
    raw = (HEADER + "T1,ja,warranty,保証期間は？,18か月です。\n").encode("cp932")
    err = error(write(tmp_path, "a.csv", raw))
    assert err.line == 2 and "cp932" in str(err)
    assert len(load_records(tmp_path / "a.csv", SUPPORT, encoding="cp932")) == 1


def test_10_invalid_bytes(tmp_path):
    err = error(write(tmp_path, "a.csv", HEADER.encode() + GOOD.encode() + b"T2,en,warranty,q\xff\xfe\x80,a\n"))
    assert err.line == 3 and "UTF-8" in str(err)


def test_11_jsonl_not_json(tmp_path):
    rec = json.dumps({"ticket_id": "T1", "lang": "en", "intent": "pricing", "question": "q", "answer": "a"})
    err = error(write(tmp_path, "a.jsonl", rec + "\n" + rec + "\n{broken\n"))
    assert err.line == 3 and "one JSON object per line" in str(err)


def test_12_jsonl_list(tmp_path):
    assert error(write(tmp_path, "a.jsonl", "[1, 2]\n")).line == 1


def test_13_jsonl_missing_key(tmp_path):
    rec = {"ticket_id": "T1", "lang": "en", "intent": "pricing", "question": "q"}
    err = error(write(tmp_path, "a.jsonl", json.dumps(rec) + "\n"))
    assert err.line == 1 and err.column == "answer"


def test_14_jsonl_wrong_type(tmp_path):
    rec = {"ticket_id": "T1", "lang": "en", "intent": "pricing", "question": 42, "answer": "a"}
    err = error(write(tmp_path, "a.jsonl", json.dumps(rec) + "\n"))
    assert err.column == "question" and "expected text" in str(err)


def test_15_json_top_level(tmp_path):
    assert "list of objects" in str(error(write(tmp_path, "a.json", '{"a": 1}')))


def test_16_json_item(tmp_path):
    rec = {"ticket_id": "T1", "lang": "en", "intent": "pricing", "question": "q", "answer": "a"}
    assert "item 2" in str(error(write(tmp_path, "a.json", json.dumps([rec, "oops"]))))


def test_17_json_syntax(tmp_path):
    assert error(write(tmp_path, "a.json", '[\n{"a": 1},\n{"a": \n')).line is not None


def test_18_corrupt_parquet(tmp_path):
    assert "parquet" in str(error(write(tmp_path, "a.parquet", b"PAR1 not really")))


def test_19_parquet_wrong_type(tmp_path):
    path = tmp_path / "a.parquet"
    pd.DataFrame({"ticket_id": ["T1"], "lang": ["en"], "intent": ["pricing"], "question": [3.5],
                  "answer": ["a"]}).to_parquet(path)
    err = error(path)
    assert "row 1" in str(err) and err.column == "question"


def test_20_list_column_as_text(tmp_path):
    rec = {"id": "q1", "intent": "pricing", "question_en": "q", "answer_en": "a", "question_ja": "q",
           "answer_ja": "a", "facts_en": "¥8,800"}
    err = error(write(tmp_path, "a.jsonl", json.dumps(rec) + "\n"), schema=data.QA)
    assert err.column == "facts_en" and "a list" in str(err)


def rows(*records):
    return pd.DataFrame([dict(zip(["ticket_id", "lang", "intent", "question", "answer"], r, strict=True))
                         for r in records])


def test_21_jsonl_null_text_is_counted_empty(tmp_path):
    rec = {"ticket_id": "T1", "lang": "en", "intent": "pricing", "question": "q", "answer": None}
    df = load_records(write(tmp_path, "a.jsonl", json.dumps(rec) + "\n"), SUPPORT)
    kept, report = data.clean(df)
    assert report.removed["reason"].tolist() == ["empty text"] and len(kept) == 0


@pytest.mark.parametrize("record, reason", [
    (("T9", "en", "refund", "Can I get a refund?", "Yes, within 30 days."), "label not in label set"),  # 22
    (("T9", "en", "pricing", "How much is the Cam?", "   "), "empty text"),  # 23
    (("T9", "en", "pricing", "How much is the Cam?", "log " * 400), "over 1000 characters"),  # 24
])
def test_22_to_24_removed_and_counted(record, reason):
    kept, report = data.clean(rows(("T1", "en", "warranty", "How long is the warranty?", "18 months."), record),
                              labels=data.INTENTS)
    assert len(kept) == 1 and report.removed["reason"].tolist() == [reason]
    assert report.input_rows == 2 == report.kept + len(report.removed)


def test_25_26_duplicates():
    df = rows(("T1", "ja", "pricing", "Ｔｓｕｂａｍｅ　Ｃａｍの値段は？", "8,800円です。"),
              ("T2", "ja", "pricing", "Tsubame Camの値段は?", "8,800円です。"),
              ("T3", "en", "pricing", "How much is the Cam?", "¥8,800."),
              ("T3", "en", "pricing", "How much is the Cam?", "¥8,800."),
              ("T4", "en", "pricing", "how much is the cam", "It is ¥8,800."))
    kept, report = data.clean(df, rules=data.RULES)
    assert report.removed["reason"].value_counts().to_dict() == {"near duplicate": 2, "exact duplicate": 1}
    assert kept["ticket_id"].tolist() == ["T1", "T3"]
    assert kept["question"][0] == "Tsubame Camの値段は？"  # full-width letters and space made half-width, ？ kept


def test_27_html_is_stripped_and_counted():
    answer = "<p>It is <b>¥8,800</b> &amp; free shipping.</p>"
    kept, report = data.clean(rows(("T1", "en", "pricing", "Price?", answer)), rules=("html",))
    assert kept["answer"][0] == "It is ¥8,800 & free shipping."
    assert report.changed["html"] == 1


def test_28_collect_mode_counts_bad_lines(tmp_path):
    path = write(tmp_path, "a.csv", HEADER + GOOD + "T2,en,warranty,q,a,extra\n" + GOOD.replace("T1", "T3"))
    df = load_records(path, SUPPORT, errors="collect")
    assert len(df) == 2 and df["source_line"].tolist() == [2, 4]
    assert [p.line for p in df.attrs["problems"]] == [3]
    kept, report = data.clean(df)
    assert report.input_rows == 3 and report.removed["reason"].tolist()[0] == "unreadable line"


def test_29_bad_errors_argument(tmp_path):
    with pytest.raises(ValueError, match="raise"):
        load_records(write(tmp_path, "a.csv", HEADER + GOOD), SUPPORT, errors="ignore")


def test_30_to_32_bom_crlf_blank_lines_are_fine(tmp_path):
    content = ("\ufeff" + HEADER + GOOD + "\n" + GOOD.replace("T1", "T2")).replace("\n", "\r\n")
    df = load_records(write(tmp_path, "a.csv", content), SUPPORT)
    assert list(df.columns[:2]) == ["ticket_id", "lang"] and df["ticket_id"].tolist() == ["T1", "T2"]
    assert df["answer"].tolist() == ["18 months.", "18 months."]

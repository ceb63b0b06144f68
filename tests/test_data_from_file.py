"""Your own data: read_file and from_file on every supported kind, located errors, no unasked text changes,
no unasked system prompt, leak-free splits, and the course's numbers unchanged (see test_dataset_files.py)."""

import csv
import json
import warnings

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict
from test_data_errors import write  # tests/ is on sys.path under pytest

from ftlib import data, env
from ftlib.data import DataError

ROWS = [{"question": f"Question number {i}: how does feature {chr(65 + i)} work?", "answer": f"Answer {i}.",
         "topic": "even" if i % 2 == 0 else "odd"} for i in range(10)]
MAP = {"prompt": "question", "completion": "answer"}


def write_csv(path, rows, delimiter=","):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def chat(row, system=None):
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]


def source(kind, tmp_path, rows=ROWS):
    """The rows as a file, DataFrame or Dataset of `kind`, and the source_line of the first row."""
    if kind in {"csv", "tsv"}:
        return write_csv(tmp_path / f"a.{kind}", rows, "\t" if kind == "tsv" else ","), 2
    if kind == "jsonl":
        return write(tmp_path, "a.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)), 1
    if kind == "json":
        return write(tmp_path, "a.json", json.dumps(rows, ensure_ascii=False, indent=1)), 1
    if kind == "parquet":
        pd.DataFrame(rows).to_parquet(tmp_path / "a.parquet")
        return tmp_path / "a.parquet", 1
    if kind == "dataset":
        return Dataset.from_list(rows), 1
    if kind == "datasetdict":
        return DatasetDict({"train": Dataset.from_list(rows[:6]), "test": Dataset.from_list(rows[6:])}), 1
    return pd.DataFrame(rows), 1


KINDS = ["csv", "tsv", "jsonl", "json", "parquet", "dataset", "datasetdict", "frame"]


@pytest.mark.parametrize("kind", KINDS)
def test_read_file_maps_columns_from_every_kind(kind, tmp_path):
    src, first = source(kind, tmp_path)
    df = data.read_file(src, prompt="question", completion="answer", keep=("topic",))
    assert list(df.columns) == ["prompt", "completion", "topic", data.LINE]
    assert df["prompt"].tolist() == [r["question"] for r in ROWS]
    assert df["completion"].tolist() == [r["answer"] for r in ROWS]
    assert df["topic"].tolist() == [r["topic"] for r in ROWS]
    assert df[data.LINE].tolist() == list(range(first, first + len(ROWS)))
    assert df.attrs["problems"] == []


@pytest.mark.parametrize("kind", KINDS)
def test_from_file_gives_the_course_format_from_every_kind(kind, tmp_path):
    src, _ = source(kind, tmp_path)
    ds = data.from_file(src, **MAP)
    assert list(ds) == ["train", "validation", "test"] and [len(ds[s]) for s in ds] == [8, 1, 1]
    rows = [row for part in ds.values() for row in part]
    assert {(r["prompt"][0]["content"], r["completion"][0]["content"]) for r in rows} == {
        (r["question"], r["answer"]) for r in ROWS}
    assert all([m["role"] for m in r["prompt"]] == ["user"] and r["completion"][0]["role"] == "assistant"
               for r in rows)


@pytest.mark.parametrize("kind", ["jsonl", "dataset", "parquet"])
def test_messages_become_prompt_completion_and_keep_their_system(kind, tmp_path):
    records = [{"messages": chat(r, system="You are the library's helper." if i < 5 else None)}
               for i, r in enumerate(ROWS)]
    if kind == "jsonl":
        src = write(tmp_path, "chat.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    elif kind == "parquet":
        Dataset.from_list(records).to_parquet(str(tmp_path / "chat.parquet"))
        src = tmp_path / "chat.parquet"
    else:
        src = Dataset.from_list(records)
    df = data.read_file(src, messages="messages")
    assert df["prompt"].tolist() == [r["question"] for r in ROWS]
    assert df["completion"].tolist() == [r["answer"] for r in ROWS]
    assert df["system"].tolist() == ["You are the library's helper."] * 5 + [""] * 5
    ds = data.from_file(src, messages="messages", system="Be brief.")
    for row in (row for part in ds.values() for row in part):
        number = int(row["prompt"][-1]["content"].split()[2].rstrip(":"))
        assert row["prompt"][0] == {"role": "system", "content": "You are the library's helper." if number < 5
                                    else "Be brief."}  # a row's own system message comes first


def test_facts_column_as_text_or_list_and_facts_of(tmp_path):
    rows = [{**r, "facts": f"{i} days;{i} renewals" if i % 2 else json.dumps([f"{i} days"])}
            for i, r in enumerate(ROWS)]
    df = data.read_file(write_csv(tmp_path / "f.csv", rows), **MAP, facts="facts")
    assert df["facts"][1] == ["1 days", "1 renewals"] and df["facts"][2] == ["2 days"]
    assert data.read_file(pd.DataFrame(rows).assign(facts=[["x", "y|z"]] * 10), **MAP, facts="facts")[
        "facts"][0] == ["x", "y|z"]
    ds = data.from_file(tmp_path / "f.csv", **MAP, facts="facts")
    facts = data.facts_of(ds["train"])
    assert facts == [list(f) for f in ds["train"]["facts"]] and all(facts)
    assert data.facts_of(data.from_file(tmp_path / "f.csv", **MAP)["test"]) is None  # no facts: compare texts
    assert data.facts_of(Dataset.from_list([{"facts": []}, {"facts": None}])) is None


def test_facts_of_course_rows_uses_the_fact_sheet():
    qa = data.load_records(data.QA_PAIRS, data.QA).head(5)
    course = data.to_dataset({"test": qa}, lang="en")["test"]
    assert data.facts_of(course) == data.facts_for(course) == qa["facts_en"].map(list).tolist()
    user = Dataset.from_list([{"prompt": [{"role": "user", "content": "Hi?"}],
                               "completion": [{"role": "assistant", "content": "Hello."}], "intent": "pricing"}])
    assert data.facts_of(user) is None  # an intent the course knows, but not a course question


def test_example_files_read_and_their_facts_are_in_their_answers():
    for lang in ("en", "ja"):
        df = data.read_file(env.ROOT / "data" / "example" / f"library_faq_{lang}.csv", **MAP, facts="facts",
                            keep=("topic",))
        assert len(df) == 60 and df["topic"].value_counts().eq(6).all() and df["topic"].nunique() == 10
        assert all(f in answer for facts, answer in zip(df["facts"], df["completion"], strict=True) for f in facts)
        kept, report = data.clean(df)
        assert report.kept == 60 and not report.changed


# --- located errors -------------------------------------------------------------------------------

def error(src, **kwargs) -> DataError:
    with pytest.raises(DataError) as err:
        data.read_file(src, **kwargs)
    name = str(src) if not isinstance(src, pd.DataFrame | Dataset) else type(src).__name__
    assert str(err.value).startswith(name), err.value
    return err.value


HEADER = "question,answer\n"
GOOD = "How long is the loan?,21 days.\n"


def test_01_missing_column_suggests_the_mapping(tmp_path):
    err = error(write(tmp_path, "a.csv", HEADER + GOOD))
    assert err.line == 1 and err.column == "prompt"
    assert "the header lacks 'prompt', 'completion'; columns are question, answer: " \
           "pass prompt='question', completion='answer'" in str(err)
    err = error(write(tmp_path, "b.jsonl", json.dumps({"input": "q", "output": "a"}) + "\n"))
    assert err.line == 1 and "pass prompt='input', completion='output'" in str(err)
    err = error(write(tmp_path, "c.jsonl", json.dumps({"messages": []}) + "\n"))
    assert err.line == 1 and str(err).endswith("columns are messages: pass messages='messages'")
    err = error(write(tmp_path, "d.csv", HEADER + GOOD), **MAP, keep=("label",))
    assert err.column == "label" and str(err).endswith("lacks 'label'; columns are question, answer: check keep=")
    err = error(pd.DataFrame(ROWS), prompt="text", completion="reply")
    assert "pass prompt='question', completion='answer'" in str(err)
    err = error(pd.DataFrame(ROWS), prompt="text", completion="answer")
    assert err.column == "text" and "columns are question, answer, topic: pass prompt='question'" in str(err)


def test_02_directory(tmp_path):
    err = error(tmp_path)
    assert "is a directory" in str(err) and "no such file" not in str(err)
    assert "no such file" in str(error(tmp_path / "nope.csv"))


def test_03_empty_file(tmp_path):
    for name in ("a.csv", "a.jsonl", "a.json"):
        err = error(write(tmp_path, name, "\n \n"), **MAP)
        assert err.line == 1 and "the file is empty" in str(err)


def test_04_header_only(tmp_path):
    err = error(write(tmp_path, "a.csv", HEADER), **MAP)
    assert err.line == 2 and "no records" in str(err)


def test_05_unknown_extension(tmp_path):
    err = error(write(tmp_path, "a.xlsx", "x"), **MAP)
    assert "unknown file type .xlsx" in str(err) and ".csv, .tsv, .json, .jsonl or .parquet" in str(err)


def test_06_broken_quote(tmp_path):
    err = error(write(tmp_path, "a.csv", HEADER + GOOD + '"Is there Wi-Fi?,Yes.\n' + GOOD), **MAP)
    assert err.line == 3 and "unreadable CSV" in str(err)
    err = error(write(tmp_path, "a.tsv", "question\tanswer\nq\t\"quoted\" then text\n"), **MAP)
    assert err.line == 2


def test_07_wrong_field_count(tmp_path):
    err = error(write(tmp_path, "a.csv", HEADER + GOOD + "Late fee?,25 cents,a day\n"), **MAP)
    assert err.line == 3 and "3 fields" in str(err) and "2 fields like the header" in str(err)


def test_08_invalid_json_line(tmp_path):
    err = error(write(tmp_path, "a.jsonl", json.dumps(ROWS[0]) + "\n{'question': 1}\n"), **MAP)
    assert err.line == 2 and "invalid JSON" in str(err)
    assert error(write(tmp_path, "a.json", '[{"question": "q",\n "answer": }]'), **MAP).line == 2


def test_09_json_list_line(tmp_path):
    err = error(write(tmp_path, "a.jsonl", json.dumps(ROWS[0]) + '\n["q", "a"]\n'), **MAP)
    assert err.line == 2 and "a JSON list" in str(err) and "a JSON object" in str(err)


def test_10_number_where_text_is_due(tmp_path):
    err = error(write(tmp_path, "a.jsonl", json.dumps({"question": "q", "answer": 42}) + "\n"), **MAP)
    assert err.line == 1 and err.column == "answer" and "int value 42" in str(err) and "expected text" in str(err)
    path = tmp_path / "a.parquet"
    pd.DataFrame({"question": ["q", "r"], "answer": [1.5, 2.5]}).to_parquet(path)
    err = error(path, **MAP)
    assert "row 1: float value 1.5" in str(err) and err.column == "answer"


def test_11_missing_value(tmp_path):
    err = error(write(tmp_path, "a.jsonl", json.dumps(ROWS[0]) + "\n" + json.dumps({"question": "q", "answer": None})
                      + "\n"), **MAP)
    assert err.line == 2 and err.column == "answer" and "missing value" in str(err)
    err = error(pd.DataFrame({"question": ["q", None], "answer": ["a", "b"]}), **MAP)
    assert "row 2: missing value" in str(err) and err.column == "question"


def test_12_bad_encoding(tmp_path):
    path = write(tmp_path, "a.csv", (HEADER + "貸出期間は？,21日間です。\n").encode("cp932"))
    err = error(path, **MAP)
    assert err.line == 2 and "cp932" in str(err)
    assert data.read_file(path, **MAP, encoding="cp932")["completion"][0] == "21日間です。"


def test_13_duplicate_header(tmp_path):
    err = error(write(tmp_path, "a.csv", "question,answer,answer\nq,a,b\n"), **MAP)
    assert err.line == 1 and err.column == "answer" and "'answer' twice" in str(err)
    frame = pd.DataFrame([["q", "a", "b"]], columns=["question", "answer", "answer"])
    assert error(frame, **MAP).column == "answer"


BAD_MESSAGES = [
    ("not a list", "str value"),
    ([], "no messages"),
    (["hello"], "message 1 is a str"),
    ([{"content": "hi"}, {"role": "assistant", "content": "a"}], "message 1 lacks 'role'"),
    ([{"from": "human", "value": "hi"}], "message 1 lacks 'role' (its keys: from, value)"),
    ([{"role": "user"}, {"role": "assistant", "content": "a"}], "message 1 lacks 'content'"),
    ([{"role": "human", "content": "hi"}, {"role": "assistant", "content": "a"}], "message 1 has role 'human'"),
    ([{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "a"}], "message 1 has list content"),
    ([{"role": "user", "content": "hi"}], "the last message is from the user"),
    ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], "roles system, assistant"),
    ([{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
      {"role": "assistant", "content": "a2"}], "multi-turn conversations are not supported"),
]


@pytest.mark.parametrize("messages, problem", BAD_MESSAGES)
def test_14_bad_messages_row(messages, problem, tmp_path):
    good = {"messages": chat(ROWS[0])}
    path = write(tmp_path, "chat.jsonl", json.dumps(good) + "\n" + json.dumps({"messages": messages}) + "\n")
    err = error(path, messages="messages")
    assert err.line == 2 and err.column == "messages" and problem in str(err), err
    assert "one user message, the assistant's answer" in str(err)


def test_15_too_few_rows_to_split(tmp_path):
    path = write_csv(tmp_path / "a.csv", ROWS[:3])
    with pytest.raises(ValueError, match=r"3 rows cannot fill train/validation/test at val=0.1, test=0.1; "
                                         r"need at least 5"):
        data.from_file(path, **MAP)
    with pytest.raises(ValueError, match=r"9 rows cannot fill .* need at least 10 \(stratified by 'topic'\)"):
        data.from_file(write_csv(tmp_path / "b.csv", ROWS[:9]), **MAP, stratify_by="topic")
    df = data.read_file(pd.DataFrame([*ROWS[:4], {**ROWS[0], "answer": "Another answer."}]), **MAP)
    with pytest.raises(ValueError, match=r"5 rows \(4 groups: rows with the same prompt stay together\) cannot "
                                         r"fill train/validation/test at val=0.1, test=0.1; need at least 5"):
        data.split(df)
    with pytest.raises(ValueError, match=r"cannot stratify by 'topic' .* the largest \(even\) has 5"):
        data.from_file(write_csv(tmp_path / "c.csv", ROWS), **MAP, stratify_by="topic")


def test_16_collect_keeps_good_rows_and_clean_counts_the_bad(tmp_path):
    path = write(tmp_path, "a.csv", HEADER + GOOD + "Late fee?,25 cents,a day\nIs there Wi-Fi?,Yes.\n")
    df = data.read_file(path, **MAP, errors="collect")
    assert df[data.LINE].tolist() == [2, 4] and [p.line for p in df.attrs["problems"]] == [3]
    kept, report = data.clean(df)
    assert report.input_rows == 3 and report.removed["reason"].tolist() == ["unreadable line"]
    with pytest.raises(DataError, match="line 2"):  # not one good row: the first problem is raised
        data.read_file(write(tmp_path, "b.csv", HEADER + "a,b,c\n"), **MAP, errors="collect")


def test_17_other_argument_mistakes(tmp_path):
    with pytest.raises(TypeError, match="read_file reads a path"):
        data.read_file(ROWS)
    with pytest.raises(ValueError, match="either messages="):
        data.read_file(tmp_path / "a.jsonl", prompt="question", messages="messages")
    with pytest.raises(ValueError, match="keep= cannot hold facts"):
        data.read_file(pd.DataFrame(ROWS), **MAP, keep=("facts",))
    err = error(pd.DataFrame(ROWS).assign(facts=[3] * 10), **MAP, facts="facts")
    assert err.column == "facts" and "row 1" in str(err)
    with pytest.raises(DataError, match=r"DatasetDict \(train \+ test\), column 'answer': row 8: missing value"):
        data.read_file(DatasetDict({"train": Dataset.from_list(ROWS[:6]),
                                    "test": Dataset.from_list([*ROWS[6:7], {**ROWS[7], "answer": None}])}), **MAP)


# --- no unasked changes ---------------------------------------------------------------------------

CODE = "Use a loop:\n\n```python\nfor book in shelf:\n    if book.late:\n        book.fine += 0.25\n```\n\n" \
       "Then  sum   the fines.\n"
HTMLISH = ["Wrap it in <b>bold</b> like <b>this</b> &amp; that.", "Orders < 5000 yen ship in 3 days.",
           "Write &lt;br&gt; for a line break."]


def tricky_rows():
    answers = [CODE, *HTMLISH, "  Spaces\u3000and ｆｕｌｌ-ｗｉｄｔｈ, mail me: taro@example.com  "]
    return [{"question": f"Tricky question {i}?", "answer": a} for i, a in enumerate(answers)] + [
        {"question": r["question"], "answer": r["answer"]} for r in ROWS[:5]]


def test_default_from_file_changes_no_text(tmp_path):
    rows = tricky_rows()
    for src in (write_csv(tmp_path / "t.csv", rows), pd.DataFrame(rows)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = data.from_file(src, **MAP)
        assert not [w for w in caught if "kept" in str(w.message)]  # nothing removed or changed: no warning
        answers = {row["completion"][0]["content"] for part in ds.values() for row in part}
        assert answers == {r["answer"] for r in rows}  # byte-identical: indentation, blank lines, HTML, spaces


def test_rules_are_opt_in_and_counted(tmp_path):
    path = write_csv(tmp_path / "t.csv", tricky_rows())
    with pytest.warns(UserWarning, match=r"10 rows, 10 kept; removed 0, changed 2 \(html 2\)"):
        ds = data.from_file(path, **MAP, rules=("html",))
    answers = {row["completion"][0]["content"] for part in ds.values() for row in part}
    assert "Wrap it in bold like this & that." in answers and "Write <br> for a line break." in answers
    assert HTMLISH[1] in answers  # no tag in it: stays
    kept, report = data.clean(data.read_file(path, **MAP), rules=("html",))
    assert report.changed == {"html": 2} and report.examples["html"][0] == HTMLISH[0]
    kept, report = data.clean(data.read_file(path, **MAP), rules=data.RULES)
    assert set(report.changed) == {"html", "width", "whitespace", "PII: email"}
    code = kept.loc[kept["prompt"] == "Tricky question 0?", "completion"].item()
    assert "\n\n```python\nfor book in shelf:\n    if book.late:\n        book.fine" in code  # indentation stays
    assert code.endswith("Then sum the fines.")
    with pytest.raises(ValueError, match="unknown rules"):
        data.clean(kept, rules=("htm",))


def test_removals_that_change_no_text_are_counted_in_one_warning(tmp_path):
    rows = ROWS + [{**ROWS[0], "answer": "Another answer."}, {**ROWS[1], "question": ROWS[1]["question"].upper()},
                   ROWS[2], {"question": "Empty?", "answer": " "}]
    with pytest.warns(UserWarning) as caught:
        data.from_file(pd.DataFrame(rows), **MAP)
    message = str(caught[0].message)
    assert len([w for w in caught if "kept" in str(w.message)]) == 1
    assert "14 rows, 10 kept; removed 4" in message and "near duplicate 2" in message
    assert "exact duplicate 1" in message and "empty text 1" in message and "data.read_file" in message


def test_a_users_intent_labels_are_kept(tmp_path):
    rows = [{"text": f"utterance {i}", "reply": f"reply {i}", "intent": ["greet", "book_room", "bye"][i % 3]}
            for i in range(30)]
    df = data.read_file(pd.DataFrame(rows), prompt="text", completion="reply", keep=("intent",))
    kept, report = data.clean(df)
    assert report.kept == 30 and len(report.removed) == 0
    with pytest.raises(ValueError, match=r"no 'intent' value is in labels=: the data has greet, book_room, bye; "
                                         r"expected product_info"):
        data.clean(df, labels=data.INTENTS)
    kept, report = data.clean(df, labels=("greet", "bye"))
    assert report.removed["reason"].value_counts().to_dict() == {"label not in label set": 10}
    with pytest.raises(ValueError, match="clean: no column 'question'"):
        data.clean(df, text_columns=("question", "answer"))


# --- system prompt and splits -----------------------------------------------------------------------

def test_no_system_prompt_unless_asked(tmp_path):
    plain = data.from_file(pd.DataFrame(ROWS), **MAP)["train"][0]
    assert [m["role"] for m in plain["prompt"]] == ["user"]
    every = data.from_file(pd.DataFrame(ROWS), **MAP)
    assert all(m["role"] != "system" for part in every.values() for row in part for m in row["prompt"])
    asked = data.from_file(pd.DataFrame(ROWS), **MAP, system="You answer for the library.")["train"][0]
    assert asked["prompt"][0] == {"role": "system", "content": "You answer for the library."}


def many(n=40):
    return pd.DataFrame([{"prompt": f"Question {i} about item {i * 7}?", "completion": f"Answer {i}.",
                          "label": "a" if i % 4 else "b", "group": f"g{i // 2}"} for i in range(n)])


def test_random_split_is_deterministic_and_leak_free():
    df = pd.concat([many(), many().head(6).assign(prompt=lambda d: d["prompt"].str.upper().str.rstrip("?"))],
                   ignore_index=True)  # six near-duplicate questions
    a, b, c = (data.split(df, seed=s) for s in (1, 1, 2))
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert sum(len(s) for s in a.values()) == len(df)
    keys = {name: set(s["prompt"].map(data.dedup_key)) for name, s in a.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    assert set(c["test"]["prompt"]) != set(a["test"]["prompt"])
    assert len(a["test"]) >= 3 and len(a["validation"]) >= 3


def test_group_by_and_stratify_by_on_user_columns(tmp_path):
    df = many()
    df.loc[5, "prompt"] = df.loc[30, "prompt"]  # one question shared by groups g2 and g15: the two groups merge
    for stratify_by in (None, "label"):
        parts = data.split(df, stratify_by, val=0.2, test=0.2, seed=3, group_by="group")
        where = {g: name for name, part in parts.items() for g in part["group"]}
        assert sum(len(p) for p in parts.values()) == len(df)
        assert all(len({n for n, p in parts.items() if g in set(p["group"])}) == 1 for g in df["group"])
        assert where["g2"] == where["g15"]
    ds = data.from_file(write_csv(tmp_path / "u.csv", many().to_dict("records")), stratify_by="label",
                        group_by="group", val=0.2, test=0.2)
    assert set(ds["train"].column_names) == {"prompt", "completion", "label", "group", "source_line"}
    assert set(ds["test"]["label"]) == {"a", "b"}
    with pytest.raises(ValueError, match="split: no column 'topic'"):
        data.split(many(), "topic")


def test_course_dataset_cache_depends_on_the_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "runs_dir", lambda: tmp_path)
    built = []

    def fake_prepare(lang, seed):
        built.append(seed)
        return DatasetDict({"train": Dataset.from_list([{"seed": seed}])}), None

    monkeypatch.setattr(data, "prepare", fake_prepare)
    assert data.course_dataset("en", 0)["train"][0]["seed"] == 0 and (tmp_path / "01_dataset_en").is_dir()
    assert data.course_dataset("en", 1)["train"][0]["seed"] == 1 and (tmp_path / "01_dataset_en_seed1").is_dir()
    assert data.course_dataset("en", 1)["train"][0]["seed"] == 1 and built == [0, 1]  # cached per seed

"""The shipped course data: sizes, labels, consistency, and that the cleaner finds exactly what was planted."""

import json

import pytest

from ftlib import data
from ftlib.env import ROOT

DATA = ROOT / "data"


@pytest.fixture(scope="module")
def qa():
    return data.load_records(DATA / "support_qa.jsonl", data.QA)


@pytest.fixture(scope="module")
def cleaned():
    raw = data.load_records(data.RAW_EXPORT, data.SUPPORT, errors="collect")
    return raw, *data.clean(raw, labels=data.INTENTS, rules=data.RULES, max_chars=1000)


@pytest.fixture(scope="module")
def planted():
    return json.loads((DATA / "raw" / "planted_defects.json").read_text(encoding="utf-8"))


def test_qa_pairs_cover_the_intents_in_both_languages(qa):
    assert len(qa) >= 400 and qa["id"].is_unique
    counts = qa["intent"].value_counts()
    assert set(counts.index) == set(data.INTENTS) and len(counts) >= 10
    assert counts.between(25, 50).all(), counts
    for lang in ("en", "ja"):
        assert (qa[f"question_{lang}"].str.len() > 0).all() and (qa[f"answer_{lang}"].str.len() > 0).all()
        assert not qa[f"question_{lang}"].map(data.dedup_key).duplicated().any()


def test_required_facts_are_in_their_answers(qa):
    for lang in ("en", "ja"):
        for facts, answer in zip(qa[f"facts_{lang}"], qa[f"answer_{lang}"], strict=True):
            assert all(f in answer for f in facts), (facts, answer)


def test_japanese_is_japanese(qa):
    kana = qa["answer_ja"].str.contains("[ぁ-んァ-ン]", regex=True)
    assert kana.mean() > 0.95


def test_general_knowledge_set():
    general = data.load_records(DATA / "general_knowledge.jsonl", data.GENERAL)
    assert len(general) >= 100 and general["id"].is_unique
    for lang in ("en", "ja"):
        assert general[f"accept_{lang}"].map(len).gt(0).all()


def test_raw_export_fails_at_the_planted_malformed_line(planted):
    with pytest.raises(data.DataError) as err:
        data.load_records(data.RAW_EXPORT, data.SUPPORT)
    assert err.value.line == planted["malformed_line"]
    assert f"line {planted['malformed_line']}" in str(err.value)


def test_clean_report_adds_up_to_the_input(cleaned):
    raw, kept, report = cleaned
    assert report.input_rows == len(raw) + len(raw.attrs["problems"]) == report.kept + len(report.removed)
    assert report.kept == len(kept)


def test_cleaner_finds_exactly_the_planted_defects(cleaned, planted):
    _, kept, report = cleaned
    removed = report.removed["reason"].value_counts()
    assert removed.get("unreadable line", 0) == 1
    assert removed.get("exact duplicate", 0) == planted["exact_duplicates"]
    assert removed.get("near duplicate", 0) == planted["near_duplicates"]
    assert removed.get("empty text", 0) == planted["empty_answers"]
    assert removed.get("over 1000 characters", 0) == planted["over_long"]
    assert removed.get("label not in label set", 0) == planted["bad_labels"]

    # changes are counted on the rows kept: a planted change in a row removed as a duplicate does not count
    lines = set(kept["source_line"])

    def planted_kept(*kinds):
        return sum(1 for row in planted["rows"] if row["line"] in lines and set(kinds) & set(row["defects"]))

    for reason, kinds in {"html": ["html"], "width": ["width_mixed"], "whitespace": ["stray_whitespace"],
                          "PII: email": ["emails"], "PII: card": ["cards"],
                          "PII: phone": ["phones_ja", "phones_intl"]}.items():
        assert report.changed[reason] == planted_kept(*kinds) > 0, reason


def test_no_pii_survives_and_prices_stay(cleaned):
    _, kept, _ = cleaned
    text = "\n".join([*kept["question"], *kept["answer"]])
    assert not data.mask_pii(text)[1]  # nothing left to mask
    assert data.mask_pii(text, keep=())[1]["email"]  # but the company's own contacts, which are kept
    assert "¥8,800" in text and "8,800円" in text


def test_report_examples_and_removed_rows_show_no_pii(cleaned):
    """Notebook 01 prints report.examples and report.removed: the personal data in them is redacted."""
    _, _, report = cleaned
    shown = [text for pair in report.examples.values() for text in pair]
    shown += [*report.removed["question"].dropna(), *report.removed["answer"].dropna()]
    assert not [text for text in shown if data.mask_pii(text)[1]]
    before, after = report.examples["PII: phone"]
    assert "•••" in before and "<PHONE>" in after


def test_course_split_is_leak_free_and_formats_end_with_eos(cleaned, smollm2):
    _, kept, _ = cleaned
    splits = data.split(kept, "intent", seed=0, group_by="pair_id" if "pair_id" in kept else None)
    keys = {name: set(part["question"].map(data.dedup_key)) for name, part in splits.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    model, tok = smollm2
    for lang in ("en", "ja"):
        example = data.to_dataset(splits, lang)["train"][0]
        preview = data.label_preview(example, model, tok)
        trained = "".join(t for t, keep in zip(preview.tokens, preview.trained, strict=True) if keep)
        assert trained.strip().startswith(example["completion"][0]["content"][:10])
        assert trained.rstrip("\n").endswith(tok.eos_token)
        assert example["prompt"][-1]["content"] not in trained

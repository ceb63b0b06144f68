"""data/eval_paraphrases.jsonl: held-out questions that rephrase facts the support QA pairs teach (issue 14)."""

import re

import pytest

from ftlib import data
from ftlib.env import ROOT

PARAPHRASES = ROOT / "data" / "eval_paraphrases.jsonl"
SCHEMA = data.Schema({"id": str, "intent": str, "source_ids": list, "question_en": str, "question_ja": str,
                      "facts_en": list, "facts_ja": list})
INTENTS = {"returns_refunds", "contact_hours"}
LANGS = ("en", "ja")


@pytest.fixture(scope="module")
def qa():
    return data.load_records(data.QA_PAIRS, data.QA)


@pytest.fixture(scope="module")
def para():
    return data.load_records(PARAPHRASES, SCHEMA)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b)


def _tokens(text: str, lang: str) -> set[str]:
    """English: words. Japanese: character bigrams of the normalised text."""
    if lang == "en":
        return set(re.findall(r"[a-z0-9']+", text.lower()))
    key = data.dedup_key(text)
    return {key[i:i + 2] for i in range(len(key) - 1)}


def test_rows_are_many_unique_and_labelled(para):
    assert len(para) >= 60 and para["id"].is_unique
    assert set(para["intent"]) <= INTENTS, set(para["intent"]) - INTENTS
    for lang in LANGS:
        assert para[f"question_{lang}"].str.strip().str.len().gt(0).all()
        assert para[f"facts_{lang}"].map(len).between(1, 2).all()
        assert not para[f"question_{lang}"].map(data.dedup_key).duplicated().any()


def test_facts_recur_in_the_answers_of_their_intent(para, qa):
    """Each fact is trained: it appears verbatim in >= 3 answers of the row's intent (answers, not facts_*)."""
    for row in para.itertuples():
        answers = qa.loc[qa["intent"] == row.intent]
        for lang in LANGS:
            for fact in getattr(row, f"facts_{lang}"):
                hits = answers[f"answer_{lang}"].str.contains(fact, regex=False).sum()
                assert hits >= 3, f"{PARAPHRASES.name} line {row.source_line}: {fact!r} in {hits} {row.intent} answers"


def test_source_rows_exist_share_the_intent_and_answer_with_the_fact(para, qa):
    by_id = qa.set_index("id")
    for row in para.itertuples():
        assert row.source_ids and set(row.source_ids) <= set(by_id.index), (row.id, row.source_ids)
        sources = by_id.loc[row.source_ids]
        assert (sources["intent"] == row.intent).all(), (row.id, row.intent, sources["intent"].tolist())
        for lang in LANGS:
            for fact in getattr(row, f"facts_{lang}"):
                assert sources[f"answer_{lang}"].str.contains(fact, regex=False).any(), (row.id, fact)


def test_questions_are_new_and_do_not_give_the_answer_away(para, qa):
    for lang in LANGS:
        seen = qa[f"question_{lang}"]
        assert not para[f"question_{lang}"].map(data.dedup_key).isin(set(seen.map(data.dedup_key))).any()
        known = [_tokens(q, lang) for q in seen]
        for row in para.itertuples():
            question = getattr(row, f"question_{lang}")
            overlap = max(_jaccard(_tokens(question, lang), k) for k in known)
            assert overlap < 0.6, (row.id, lang, question, overlap)
            assert not any(fact in question for fact in getattr(row, f"facts_{lang}")), (row.id, question)


def test_no_fact_dominates(para):
    for lang in LANGS:
        share = para[f"facts_{lang}"].explode().value_counts(normalize=True)
        assert share.max() <= 0.3, share

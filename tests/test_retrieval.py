"""ftlib.retrieval: a real TF-IDF retriever on the course data, its passages, recall@k and the prompt builders."""

from functools import cache

import pytest

from ftlib import data, retrieval
from ftlib.retrieval import Hit, Retriever


@cache
def course(lang: str):
    """The course splits, rebuilt in memory (nothing is written under runs/)."""
    return data.prepare(lang)[0]


def questions(rows) -> list[str]:
    return [row["prompt"][-1]["content"] for row in rows]


def recalls(lang: str, tfidf: dict | None = None) -> dict[int, float]:
    """Recall@1/3/5 of the course test questions, the training pairs as the index."""
    train, test = course(lang)["train"], course(lang)["test"]
    index = Retriever.fit(retrieval.qa_passages(train, lang), lang, tfidf=tfidf)
    relevant = retrieval.course_relevance(test, lang, passage_intents=train["intent"])
    return {k: retrieval.recall_at_k(index, questions(test), relevant, k) for k in (1, 3, 5)}


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_test_questions_are_not_in_the_index(lang):
    passages = retrieval.qa_passages(course(lang)["train"], lang)
    indexed = {data.dedup_key(p.split("\nA: ")[0].removeprefix("Q: ")) for p in passages}
    for question in questions(course(lang)["test"]):
        assert data.dedup_key(question) not in indexed
        assert not any(question in passage for passage in passages)


@pytest.mark.parametrize(("lang", "at_3", "at_5"), [("en", 0.8, 0.9), ("ja", 0.8, 0.9)])
def test_recall_on_the_course_test_questions(lang, at_3, at_5):
    # measured: en 0.57 / 0.89 / 0.93, ja 0.49 / 0.91 / 0.93 (recall@1 / @3 / @5)
    recall = recalls(lang)
    assert recall[1] <= recall[3] <= recall[5]
    assert recall[3] >= at_3
    assert recall[5] >= at_5


def test_relevance_is_not_a_lookup():
    test, train = course("en")["test"], course("en")["train"]
    relevant = retrieval.course_relevance(test, "en", passage_intents=train["intent"])
    assert not any(relevant(i, []) for i in range(len(test)))  # nothing retrieved: never relevant
    other = next(i for i, intent in enumerate(train["intent"]) if intent != test[0]["intent"])
    assert not relevant(0, [Hit("Q: something else\nA: unrelated", 0.5, other)])
    same = list(train["intent"]).index(test[0]["intent"])
    assert relevant(0, [Hit("Q: something else\nA: unrelated", 0.5, same)])  # same topic
    facts = " ".join(data.facts_for(test, "en")[0])
    assert retrieval.course_relevance(test, "en")(0, [Hit(facts, 0.5, other)])  # all required facts


def test_japanese_needs_a_dictionary_or_characters_not_spaces():
    dictionary, characters = recalls("ja"), recalls("ja", tfidf=retrieval.CHAR_NGRAMS)
    spaces = recalls("ja", tfidf={"analyzer": "word"})
    # measured at 3: Janome's words 0.91, characters 0.77, split on spaces 0.09 (Japanese has no spaces)
    assert dictionary[3] > characters[3] > spaces[3] + 0.4
    assert recalls("en", tfidf={"analyzer": "word"})[3] > 0.7  # spaces suit English


def test_japanese_words():
    assert retrieval.japanese_words("荷物が届きました。<EMAIL>") == ["荷物", "届く"]  # particles and masks dropped
    assert retrieval.japanese_words("Cam Miniの画角は？") == ["cam", "mini", "画", "角"]


def test_search():
    passages = ["The warranty lasts 18 months.", "Shipping is free from ¥5,000.", "Call 0120-000-000 on weekdays."]
    index = Retriever.fit(passages, "en", ids=["w", "s", "c"])
    assert index.index_seconds > 0
    hits = index.search("How many months is the warranty?", k=5)
    assert [hit.id for hit in hits] == ["w"]  # passages sharing no word are left out, k is a maximum
    assert hits[0].text == passages[0] and 0 < hits[0].score <= 1
    assert index.search(passages[1], k=1)[0].score == pytest.approx(1.0)
    assert index.search_batch(["free shipping", "weekdays call"], k=1) == [index.search("free shipping", 1),
                                                                          index.search("weekdays call", 1)]
    assert Retriever.fit(passages, "en").search("weekdays", 1)[0].id == 2  # default ids: positions
    assert index.search("nothing in common", k=3) == []


@pytest.mark.parametrize(("lang", "facts", "other_language"), [
    ("en", ["18 months from delivery", "0120-000-000", "¥480/month", "10 seconds"], "お届けから18か月"),
    ("ja", ["お届けから18か月", "0120-000-000", "月額480円", "10秒"], "18 months from delivery"),
])
def test_fact_passages_cover_the_fact_sheet(lang, facts, other_language):
    passages = retrieval.fact_passages(lang)
    text = "\n".join(passages)
    assert len(passages) > 100
    assert all(fact in text for fact in facts)
    assert other_language not in text
    assert all(p.startswith("[") and "**" not in p and "|" not in p for p in passages)  # heading, no markdown


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_fact_passages_of_some_intents(lang):
    everything = retrieval.fact_passages(lang)
    contact = retrieval.fact_passages(lang, intents=["contact_hours"])
    assert contact and set(contact) < set(everything) and any("0120-000-000" in p for p in contact)
    assert not any("480" in p for p in contact)  # the subscription's price is in another section
    assert retrieval.fact_passages(lang, intents=["out_of_scope"]) == []
    assert retrieval.fact_passages(lang, intents=list(retrieval.INTENT_SECTIONS)) == everything  # all sections named
    with pytest.raises(ValueError, match="unknown intents"):
        retrieval.fact_passages(lang, intents=["refunds"])


def test_rag_messages_include_the_passages():
    hits = [Hit("Q: a\nA: first", 0.9, 0), Hit("Q: b\nA: second", 0.5, 1)]
    messages = retrieval.rag_messages("How long is the warranty?", hits)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "How long is the warranty?"
    system = messages[0]["content"]
    assert system.startswith(data.SYSTEM_PROMPT["en"]) and "Reference passages" in system
    assert system.index("first") < system.index("second")
    japanese = retrieval.rag_messages("保証期間は？", hits, lang="ja")[0]["content"]
    assert japanese.startswith(data.SYSTEM_PROMPT["ja"]) and "参考情報" in japanese and "second" in japanese
    assert retrieval.rag_messages("q", [], system="Be brief.")[0]["content"] == "Be brief."


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_rag_messages_stay_within_max_tokens(tiny, lang):
    tokenizer = tiny[1]
    train, test = course(lang)["train"], course(lang)["test"]
    question = questions(test)[0]
    hits = Retriever.fit(retrieval.qa_passages(train, lang), lang).search(question, k=5)
    assert len(hits) == 5
    full = retrieval.prompt_tokens(retrieval.rag_messages(question, hits, lang=lang), tokenizer)
    top_two = retrieval.prompt_tokens(retrieval.rag_messages(question, hits[:2], lang=lang), tokenizer)
    messages = retrieval.rag_messages(question, hits[::-1], lang=lang, max_tokens=top_two, tokenizer=tokenizer)
    assert top_two < full
    assert retrieval.prompt_tokens(messages, tokenizer) <= top_two
    system = messages[0]["content"]
    assert [hit.text in system for hit in hits] == [True, True, False, False, False]  # lowest scores dropped
    assert retrieval.rag_messages(question, hits, lang=lang, max_tokens=full, tokenizer=tokenizer) == \
        retrieval.rag_messages(question, hits, lang=lang)
    with pytest.raises(ValueError, match="without any passage"):
        retrieval.rag_messages(question, hits, lang=lang, max_tokens=5, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="tokenizer"):
        retrieval.rag_messages(question, hits, lang=lang, max_tokens=500)


@pytest.mark.parametrize(("lang", "title"), [("en", "Company facts"), ("ja", "会社情報")])
def test_few_shot_messages(lang, title):
    examples = course(lang)["train"].select(range(2))
    messages = retrieval.few_shot_messages("Question?", examples, lang=lang)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert system.startswith(data.SYSTEM_PROMPT[lang]) and title in system and "0120-000-000" in system
    assert messages[1:3] == examples[0]["prompt"][-1:] + examples[0]["completion"]
    assert messages[-1] == {"role": "user", "content": "Question?"}
    short = retrieval.few_shot_messages("Question?", examples, fact_sheet="Phone: 0120-000-000", lang=lang)
    assert short[0]["content"].endswith("Phone: 0120-000-000")
    assert retrieval.few_shot_messages("Q?", [], fact_sheet="", lang=lang)[0]["content"] == data.SYSTEM_PROMPT[lang]


def test_bad_input():
    with pytest.raises(ValueError, match="no passages"):
        Retriever.fit([], "en")
    with pytest.raises(ValueError, match="2 ids for 1 passages"):
        Retriever.fit(["one passage"], "en", ids=["a", "b"])
    index = Retriever.fit(["one passage"], "en")
    for k in (0, -1):
        with pytest.raises(ValueError, match="k must be at least 1"):
            index.search("passage", k=k)
    with pytest.raises(ValueError, match="no queries"):
        retrieval.recall_at_k(index, [], lambda i, hits: True)
    for call in (lambda: Retriever.fit(["one passage"], "fr"), lambda: retrieval.qa_passages([], "fr"),
                 lambda: retrieval.fact_passages("fr"), lambda: retrieval.rag_messages("q", [], lang="fr"),
                 lambda: retrieval.few_shot_messages("q", [], lang="fr"),
                 lambda: retrieval.course_relevance([], "fr")):
        with pytest.raises(ValueError, match="lang must be one of"):
            call()


# --- your own data ----------------------------------------------------------------------------------

FAQ = [("When are you open?", "Tuesday to Saturday, 10:00 to 19:00.", "Tuesday to Saturday;10:00 to 19:00"),
       ("How long can I borrow a book?", "Three weeks; renew it twice online.", "three weeks"),
       ("Is the wifi free?", "Yes, the wifi is free for everyone.", "free"),
       ("Can I print documents?", "Printing costs 10 yen a page.", "10 yen a page")] * 3


def own_dataset(tmp_path, system=None):
    """A small file of your own, read as notebook 05 reads DATA: data.from_file with a facts column."""
    import csv

    path = tmp_path / "faq.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer", "facts"])
        writer.writerows((f"{q} ({i})", a, f) for i, (q, a, f) in enumerate(FAQ))
    return data.from_file(path, "question", "answer", facts="facts", system=system, val=0.25, test=0.25)


def test_qa_passages_of_your_own_file(tmp_path):
    dataset = own_dataset(tmp_path, system="You are the library's helper.")
    passages = retrieval.qa_passages(dataset["train"], "en")
    assert len(passages) == len(dataset["train"])
    first = dataset["train"][0]
    assert passages[0] == f"Q: {first['prompt'][-1]['content']}\nA: {first['completion'][0]['content']}"
    assert not any("library's helper" in p for p in passages)  # the system prompt is not a passage


def test_fact_relevance_on_your_own_file(tmp_path):
    dataset = own_dataset(tmp_path)
    held_out = dataset["test"]
    facts = data.facts_of(held_out)
    relevant = retrieval.fact_relevance(facts)
    assert not relevant(0, [])  # nothing retrieved: never relevant
    assert relevant(0, [Hit(" ".join(facts[0]), 0.5, 0)])  # all its facts, in one passage or several
    assert relevant(0, [Hit(fact, 0.5, n) for n, fact in enumerate(facts[0])])
    assert not relevant(0, [Hit("something else entirely", 0.9, 0)])
    assert not retrieval.fact_relevance([[]])(0, [Hit("anything", 1.0, 0)])  # no facts: never relevant
    index = Retriever.fit(retrieval.qa_passages(dataset["train"], "en"), "en")
    assert retrieval.recall_at_k(index, questions(held_out), relevant, k=3) == 1.0  # each topic is in training


def test_course_relevance_by_facts_is_fact_relevance():
    test, train = course("en")["test"], course("en")["train"]
    by_facts = retrieval.fact_relevance(data.facts_for(test, "en"))
    relevant = retrieval.course_relevance(test, "en")
    index = Retriever.fit(retrieval.qa_passages(train, "en"), "en")
    hits = index.search_batch(questions(test), 3)
    assert [relevant(i, h) for i, h in enumerate(hits)] == [by_facts(i, h) for i, h in enumerate(hits)]

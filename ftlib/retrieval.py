"""Retrieval for RAG: a TF-IDF retriever, its passages, recall@k, and the prompts of the baselines (notebook 05).

Notebook 05 compares three ways to give a model the company's facts: a prompt (instructions, the fact
sheet and a few examples), RAG (the passages closest to the question) and fine-tuning; on your own file
the knowledge is its answered training questions (qa_passages) and recall@k is judged by its facts
(fact_relevance). The retriever is
scikit-learn's TF-IDF with cosine nearest neighbours: no model, indexed in well under a second on a CPU.
English is cut into words. Japanese has no spaces between words: split on spaces, most questions share no
"word" with any passage (recall@3 0.09 on the course's Japanese test questions); character 1-2-grams give
0.77; Janome's morphological analysis (dictionary words, pure Python), keeping the base forms of content
words, gives 0.91 (0.81 on the validation questions, where the settings were chosen).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ftlib import data, env, metrics

LANGS = ("en", "ja")
FACT_SHEET = env.ROOT / "data" / "company_facts.md"
SECTIONS = {"en": "## English", "ja": "## 日本語"}
CONTENT_POS = ("名詞", "動詞", "形容詞", "副詞")  # nouns, verbs, adjectives, adverbs: particles carry grammar
MASKS = re.compile(r"<[A-Z_]+>")  # data.mask_pii's placeholders: no topic in them


@cache
def _janome():
    from janome.tokenizer import Tokenizer

    return Tokenizer()


def japanese_words(text: str) -> list[str]:
    """The base forms of the content words of Japanese `text` (Janome), lower-cased: 届きました -> 届く.

    The analyzer of the Japanese retriever (TFIDF["ja"]). Used by retrieval.Retriever (notebook 05).
    """
    return [(token.base_form if token.base_form != "*" else token.surface).lower()
            for token in _janome().tokenize(MASKS.sub(" ", text))
            if token.part_of_speech.split(",")[0] in CONTENT_POS]


TFIDF = {  # TfidfVectorizer settings per language, chosen on the validation questions
    "en": {"analyzer": "word", "ngram_range": (1, 2), "stop_words": "english", "sublinear_tf": True},
    "ja": {"analyzer": japanese_words, "sublinear_tf": True},  # no spaces between words: a dictionary finds them
}
CHAR_NGRAMS = {"analyzer": "char_wb", "ngram_range": (1, 2)}  # the dictionary-free alternative for Japanese
COLON = {"en": ": ", "ja": "："}
SECTION_JA = {
    "Company": "会社概要", "Products": "製品", "Setup and troubleshooting": "設定・トラブルシューティング",
    "Ordering and shipping": "注文・配送", "Order status": "注文状況", "Returns and refunds": "返品・返金",
    "Warranty": "保証", "Support and contact": "サポート・お問い合わせ", "Account and login": "アカウント・ログイン",
    "Billing and payment": "お支払い", "Subscription: Tsubame Cloud Plus": "サブスクリプション：Tsubame Cloud Plus",
}
INTENT_SECTIONS = {  # the fact sheet's sections that answer each intent (out-of-scope questions have none)
    "product_info": ("Company", "Products"), "pricing": ("Products", "Ordering and shipping"),
    "setup_troubleshooting": ("Setup and troubleshooting", "Products"), "shipping": ("Ordering and shipping",),
    "order_status": ("Order status",), "returns_refunds": ("Returns and refunds",), "warranty": ("Warranty",),
    "contact_hours": ("Support and contact",), "account_login": ("Account and login",),
    "billing_payment": ("Billing and payment",), "subscription": ("Subscription: Tsubame Cloud Plus",),
    "out_of_scope": (),
}
RAG_INSTRUCTIONS = {
    "en": ("Answer the question using the reference passages below. If they do not contain the answer, say "
           "that you are not sure and suggest contacting support.\n\nReference passages:"),
    "ja": ("以下の参考情報をもとに質問に答えてください。参考情報に答えがない場合は、分からないことを伝え、"
           "サポートへの問い合わせを案内してください。\n\n参考情報："),
}
PLAIN_SYSTEM = {  # the system prompt of notebook 05's prompts on your own data when you give none (SYSTEM = None)
    "en": "You are a helpful assistant. Answer briefly and accurately.",
    "ja": "親切なアシスタントとして、簡潔かつ正確に回答してください。",
}
FEW_SHOT_INSTRUCTIONS = {
    "en": ("Answer using only the company facts below, in the style of the example answers. If the facts do not "
           "cover the question, say that you are not sure and suggest contacting support.\n\nCompany facts:"),
    "ja": ("以下の会社情報だけをもとに、回答例と同じ文体で答えてください。会社情報にない質問には、分からないことを"
           "伝え、サポートへの問い合わせを案内してください。\n\n会社情報："),
}


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, not {lang!r}")


@dataclass(frozen=True)
class Hit:
    """One retrieved passage: its text, its cosine similarity to the query (0-1) and its id.

    Taught in notebook 05.
    """

    text: str
    score: float
    id: int | str


@dataclass(repr=False)
class Retriever:
    """TF-IDF vectors of passages and a cosine nearest-neighbour index over them (scikit-learn).

    Build it with Retriever.fit. `index_seconds` is the set-up cost. Taught in notebook 05.
    """

    vectorizer: object
    index: object
    passages: list[str]
    ids: list
    index_seconds: float

    @classmethod
    def fit(cls, passages: list[str], lang: str = "en", ids: Sequence | None = None,
            tfidf: dict | None = None) -> Retriever:
        """Index `passages` (ids default to their positions); `tfidf` overrides TFIDF[lang]. Taught in notebook 05."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.neighbors import NearestNeighbors

        _check_lang(lang)
        if not passages:
            raise ValueError("no passages to index")
        ids = list(range(len(passages))) if ids is None else list(ids)
        if len(ids) != len(passages):
            raise ValueError(f"{len(ids)} ids for {len(passages)} passages")
        start = time.perf_counter()
        vectorizer = TfidfVectorizer(**(TFIDF[lang] if tfidf is None else tfidf))
        index = NearestNeighbors(metric="cosine", algorithm="brute").fit(vectorizer.fit_transform(passages))
        return cls(vectorizer, index, list(passages), ids, time.perf_counter() - start)

    def __repr__(self) -> str:
        return f"Retriever({len(self.passages)} passages, indexed in {self.index_seconds * 1000:.1f} ms)"

    def search_batch(self, queries: list[str], k: int = 3) -> list[list[Hit]]:
        """The k most similar passages of each query, best first; passages sharing no term are left out.

        Taught in notebook 05.
        """
        if k <= 0:
            raise ValueError(f"k must be at least 1, not {k}")
        distances, positions = self.index.kneighbors(self.vectorizer.transform(queries),
                                                     n_neighbors=min(k, len(self.passages)))
        return [[Hit(self.passages[p], float(1 - d), self.ids[p]) for d, p in zip(row_d, row_p, strict=True)
                 if d < 1] for row_d, row_p in zip(distances, positions, strict=True)]

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The k passages most similar to `query`, best first. Taught in notebook 05."""
        return self.search_batch([query], k)[0]


def _question_answer(row: dict) -> tuple[str, str]:
    return row["prompt"][-1]["content"], row["completion"][0]["content"]


def qa_passages(rows, lang: str = "en") -> list[str]:
    """Question-answer pairs (prompt/completion rows, e.g. the training split) as passages "Q: ...\\nA: ...".

    Any prompt/completion dataset works: the course's, or your file's (data.from_file); the question is the
    last user message, so a system prompt is left out. The labels are the same in both languages: Japanese
    labels (質問：/回答：) lowered recall a little. Taught in notebook 05.
    """
    _check_lang(lang)
    return [f"Q: {question}\nA: {answer}" for question, answer in map(_question_answer, rows)]


def fact_passages(lang: str = "en", path: str | Path = FACT_SHEET, intents: Sequence[str] | None = None) -> list[str]:
    """The fact sheet's section in `lang`, one passage per bullet, paragraph or table row, led by its heading.

    A table row reads "first cell: second cell", or with more columns "first cell: header: cell; ...".
    `intents` keeps only the sections that answer them (INTENT_SECTIONS): a shorter prompt for a small
    context window. Taught in notebook 05.
    """
    _check_lang(lang)
    text = Path(path).read_text(encoding="utf-8")
    if SECTIONS[lang] not in text:
        raise ValueError(f"{path} has no {SECTIONS[lang]!r} section")
    if unknown := set(intents or ()) - set(INTENT_SECTIONS):
        raise ValueError(f"unknown intents {sorted(unknown)}; known: {sorted(INTENT_SECTIONS)}")
    wanted = None if intents is None else {
        name if lang == "en" else SECTION_JA[name] for intent in intents for name in INTENT_SECTIONS[intent]}
    colon, passages, heading, header, section = COLON[lang], [], "", None, ""
    for raw in text.split(SECTIONS[lang], 1)[1].split("\n## ", 1)[0].splitlines():
        line = raw.strip().replace("`", "")
        if not line.startswith("|"):
            header = None
        if wanted is not None and section not in wanted and not line.startswith("### "):
            continue
        if line.startswith("### "):
            heading = section = line[4:]
        elif re.fullmatch(r"\*\*[^*]+\*\*", line):  # a bold line alone names a sub-section
            heading = line.strip("*")
        elif line.startswith("|"):
            cells = [cell.strip().replace("**", "") for cell in line.strip("|").split("|")]
            if header is None:
                header = cells
            elif not re.fullmatch(r"[-:| ]+", line):
                fields = zip(header[1:], cells[1:], strict=True)
                rest = cells[1:] if len(cells) == 2 else [f"{h}{colon}{c}" for h, c in fields]
                passages.append(f"[{heading}] {cells[0]}{colon}{'; '.join(rest)}")
        elif line and line != "---":
            passages.append(f"[{heading}] {line.removeprefix('- ').replace('**', '')}")
    return passages


def recall_at_k(retriever: Retriever, queries: list[str], relevant: Callable[[int, list[Hit]], bool],
                k: int = 3) -> float:
    """The share of queries whose top k hits are relevant: `relevant(i, hits)` judges query i's hits.

    See course_relevance for the course's test questions. Taught in notebook 05.
    """
    if not queries:
        raise ValueError("no queries")
    results = retriever.search_batch(list(queries), k)
    return sum(bool(relevant(i, hits)) for i, hits in enumerate(results)) / len(results)


def fact_relevance(facts: Sequence[Sequence[str]]) -> Callable[[int, list[Hit]], bool]:
    """Relevance by facts, for recall_at_k on any data with facts: the hits of question i are relevant when
    together they contain all of `facts[i]` (as metrics.fact_hits finds them); a question without facts
    never is, so leave those out of the queries.

    facts: the facts of each question, e.g. data.facts_of(rows) for your file's facts column. This is how
    notebook 05 measures the retriever on your own data. Taught in notebook 05.
    """
    facts = [list(f or []) for f in facts]

    def relevant(i: int, hits: list[Hit]) -> bool:
        text = "\n".join(hit.text for hit in hits)
        return bool(facts[i]) and metrics.fact_hits(text, facts[i]) == len(facts[i])

    return relevant


def course_relevance(rows, lang: str = "en",
                     passage_intents: Sequence[str] | None = None) -> Callable[[int, list[Hit]], bool]:
    """Relevance for the course's questions (`rows`, e.g. the test split), for recall_at_k.

    The hits of question i are relevant when together they contain all its required facts (data.facts_for,
    through fact_relevance), or, given `passage_intents` (the intent of each indexed training pair, by hit
    id), when one of them is a pair of the same intent: an answer on the same topic. The questions
    themselves are never in the index, so this is not a lookup of the reference answer.
    Taught in notebook 05.
    """
    _check_lang(lang)
    by_facts = fact_relevance(data.facts_for(rows, lang))
    intents = [row["intent"] for row in rows]
    topics = None if passage_intents is None else list(passage_intents)

    def relevant(i: int, hits: list[Hit]) -> bool:
        same_topic = topics is not None and any(topics[hit.id] == intents[i] for hit in hits)
        return same_topic or by_facts(i, hits)

    return relevant


def prompt_tokens(messages: list[dict], tokenizer) -> int:
    """The length in tokens of a chat prompt, chat template and generation prompt included.

    Taught in notebook 05.
    """
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


def _system(system: str | None, lang: str, instructions: dict, context: str) -> str:
    system = data.SYSTEM_PROMPT[lang] if system is None else system
    return f"{system}\n\n{instructions[lang]}\n{context}" if context else system


def rag_messages(question: str, hits: list[Hit], system: str | None = None, lang: str = "en",
                 max_tokens: int | None = None, tokenizer=None) -> list[dict]:
    """Chat messages for RAG: the retrieved passages, best first, in the system prompt, then the question.

    `system` defaults to the training system prompt (data.SYSTEM_PROMPT). With `max_tokens` (and the
    `tokenizer` to count with) the lowest-scored passages are dropped until the prompt fits; a prompt that
    does not fit even without passages is a ValueError. Taught in notebook 05.
    """
    _check_lang(lang)
    if max_tokens is not None and tokenizer is None:
        raise ValueError("max_tokens needs the tokenizer to count with")
    hits = sorted(hits, key=lambda hit: hit.score, reverse=True)
    while True:
        context = "\n\n".join(hit.text for hit in hits)
        messages = [{"role": "system", "content": _system(system, lang, RAG_INSTRUCTIONS, context)},
                    {"role": "user", "content": question}]
        if max_tokens is None or (length := prompt_tokens(messages, tokenizer)) <= max_tokens:
            return messages
        if not hits:
            raise ValueError(f"the prompt takes {length} tokens without any passage; max_tokens is {max_tokens}")
        hits.pop()


def few_shot_messages(question: str, examples, fact_sheet: str | None = None, lang: str = "en",
                      system: str | None = None) -> list[dict]:
    """Chat messages for the prompting baseline: instructions and the fact sheet in the system prompt, the
    `examples` (prompt/completion rows) as user/assistant turns, then the question.

    `fact_sheet` defaults to every fact passage of `lang` (fact_passages), one a line. Taught in notebook 05.
    """
    _check_lang(lang)
    facts = "\n".join(fact_passages(lang)) if fact_sheet is None else fact_sheet
    messages = [{"role": "system", "content": _system(system, lang, FEW_SHOT_INSTRUCTIONS, facts)}]
    for example_question, answer in map(_question_answer, examples):
        messages += [{"role": "user", "content": example_question}, {"role": "assistant", "content": answer}]
    return [*messages, {"role": "user", "content": question}]

"""Metrics that judge a model's answers (notebooks 03 and 04)."""

from __future__ import annotations

import unicodedata


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def fact_hits(answer: str, facts: list[str]) -> int:
    """How many of the required facts an answer contains (after NFKC, case folding and space normalisation).

    Taught in notebook 03.
    """
    answer = _norm(answer)
    return sum(_norm(fact) in answer for fact in facts)


def fact_hit_rate(answers: list[str], facts: list[list[str]]) -> float:
    """The share of all required facts found in their answers: the course's headline task metric.

    Taught in notebook 03.
    """
    total = sum(len(f) for f in facts)
    if not total:
        raise ValueError("no facts to check")
    return sum(fact_hits(a, f) for a, f in zip(answers, facts, strict=True)) / total

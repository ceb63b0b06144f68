"""Intervals (metrics.wilson / interval / compare / ladder): equal to the textbook and scipy, and the words they
print are decided by the intervals, with ties and overlaps."""

import math

import numpy as np
import pytest
from scipy import stats

from ftlib import metrics


def textbook_wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 12), (3, 12), (12, 12), (41, 60), (1, 1), (500, 1000)])
def test_wilson_equals_the_formula(k, n):
    est = metrics.wilson(k, n)
    low, high = textbook_wilson(k, n)
    assert est.value == pytest.approx(k / n)
    assert (est.low, est.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert est.n == n and 0 <= est.low <= est.value <= est.high <= 1


def test_wilson_at_zero_is_not_empty():
    # 0 of 12 is not "exactly 0": Wilson says up to about a quarter
    est = metrics.wilson(0, 12)
    assert est.low == pytest.approx(0, abs=1e-12) and est.high == pytest.approx(0.2425, abs=1e-3)


def test_interval_of_rates_is_wilson_and_of_shares_a_bootstrap():
    assert metrics.interval([1, 0, 0, 1, None]) == metrics.wilson(2, 4)
    shares = [0.5, 1.0, 0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 1.0, 0.5]
    est = metrics.interval(shares, seed=3)
    ref = stats.bootstrap((np.array(shares),), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                          rng=np.random.default_rng(3)).confidence_interval
    assert (est.low, est.high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert est.value == pytest.approx(np.mean(shares)) and est.n == 10
    with pytest.raises(ValueError, match="no scored rows"):
        metrics.interval([None, None])


def test_estimate_as_dict_has_the_result_keys():
    assert metrics.wilson(3, 10).as_dict().keys() == {"value", "low", "high", "n"}


def test_compare_carries_each_arms_interval():
    before, after = [0] * 30, [1] * 20 + [0] * 10
    change = metrics.compare(before, after, "fact hit rate")
    assert change.before_interval == metrics.wilson(0, 30) and change.after_interval == metrics.wilson(20, 30)
    assert change.after_interval.low > change.before_interval.high
    assert change.verdict.startswith("better")
    assert "before 95%" in change.frame().columns and "change 95%" in change.frame().columns


def _ways(**rates):
    """Row scores of several ways on the same 40 questions, with the given number of right answers each."""
    return {name: [1.0] * k + [0.0] * (40 - k) for name, k in rates.items()}


ORDER = ["prompt engineering", "RAG", "adapter"]


def test_ladder_ties_are_not_an_order():
    # three equal rates (the overclaim the old cell printed for 0.13, 0.13, 0.13): nothing to claim
    out = metrics.ladder(_ways(**{"prompt engineering": 5, "RAG": 5, "adapter": 5}), ORDER, "fact hit rate")
    assert "not distinguishable at this n" in out.verdict and "holds" not in out.verdict
    assert "prompt engineering -> RAG" in out.verdict and "RAG -> adapter" in out.verdict


def test_ladder_overlap_is_not_an_order():
    # 5 -> 7 -> 9 of 40 rise, but every step's interval includes 0
    out = metrics.ladder(_ways(**{"prompt engineering": 5, "RAG": 7, "adapter": 9}), ORDER, "fact hit rate")
    assert "not distinguishable at this n" in out.verdict and "holds" not in out.verdict


def test_ladder_holds_only_when_every_step_is_clear():
    out = metrics.ladder(_ways(**{"prompt engineering": 2, "RAG": 18, "adapter": 36}), ORDER, "fact hit rate")
    assert out.verdict.startswith("prompt engineering < RAG < adapter holds")
    half = metrics.ladder(_ways(**{"prompt engineering": 2, "RAG": 30, "adapter": 31}), ORDER, "fact hit rate")
    assert "not distinguishable" in half.verdict and "RAG -> adapter" in half.verdict
    assert "prompt engineering -> RAG" not in half.verdict  # that step is clear: it is not listed as unclear


def test_ladder_says_when_the_order_is_reversed():
    out = metrics.ladder(_ways(**{"prompt engineering": 30, "RAG": 2, "adapter": 36}), ORDER, "fact hit rate")
    assert "does not hold" in out.verdict and "prompt engineering -> RAG" in out.verdict
    assert list(out.frame.index) == ORDER and (out.frame["n"] == 40).all()

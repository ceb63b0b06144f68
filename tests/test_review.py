"""Blind side-by-side rating: verdicts are on disk at once, sessions resume, order is hidden, summaries are right."""

import csv
import gc
import random

import ipywidgets as widgets
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

from ftlib.review import COLUMNS, Review, cohen_kappa, read_ratings, win_rate


def make(tmp_path, n=6, name="ratings.csv", rater="ann", seed=0):
    questions = [f"question {i}?" for i in range(n)]
    return Review(
        questions,
        [f"base answer {i}" for i in range(n)],
        [f"tuned answer {i}" for i in range(n)],
        path=tmp_path / name,
        rater=rater,
        seed=seed,
    )


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def rate_as(review, item, winner):
    """Rate `item` so that `winner` (a system, "tie" or "both bad") wins, clicking the side it was shown on."""
    left, right = review.sides(item)
    review.rate({left: "left", right: "right"}.get(winner, winner), item=item)


def buttons(box):
    """The widget's buttons by label."""
    return {b.description: b for b in box.children[3].children if isinstance(b, widgets.Button)}


def test_each_rating_is_on_disk_at_once(tmp_path):
    review = make(tmp_path)
    path = review.path
    review.rate("left", "clearer")
    on_disk = rows(path)
    assert [r["item"] for r in on_disk] == ["0"] and list(on_disk[0]) == COLUMNS
    assert on_disk[0]["comment"] == "clearer" and on_disk[0]["rater"] == "ann"
    review.rate("tie")
    assert [r["verdict"] for r in rows(path)] == ["left", "tie"]
    del review
    gc.collect()
    assert len(rows(path)) == 2


def test_resume_skips_rated_items_and_writes_one_header(tmp_path):
    first = make(tmp_path)
    first.rate("left")
    first.rate("right")
    again = make(tmp_path)
    assert again.current == "2" and again.remaining == 4
    again.rate("both bad")
    assert [r["item"] for r in rows(again.path)] == ["0", "1", "2"]
    assert make(tmp_path, rater="bob").remaining == 6  # another rater in the same file starts from the beginning


def test_rerating_appends_and_latest_wins(tmp_path):
    review = make(tmp_path)
    review.rate("left")
    review.rate("tie", item="0")
    assert len(rows(review.path)) == 2
    latest = review.ratings()
    assert list(latest["item"]) == ["0"] and list(latest["verdict"]) == ["tie"]
    assert review.current == "1"


@pytest.mark.parametrize("verdict", ["left", "right"])
def test_blind_mapping_records_the_system_shown_on_that_side(tmp_path, verdict):
    review = make(tmp_path, n=40)
    orders = {review.sides(item) for item in review.items}
    assert orders == {("base", "tuned"), ("tuned", "base")}
    for item in review.items:
        left, right = review.sides(item)
        row = review.rate(verdict)
        assert row["item"] == item and (row["left"], row["right"]) == (left, right)
        assert row["winner"] == (left if verdict == "left" else right)
    assert [r["winner"] for r in rows(review.path)] == list(review.ratings()["winner"])


def test_order_is_seeded_per_item_and_about_half_each_way(tmp_path):
    a, b, c = make(tmp_path, n=200, name="a.csv"), make(tmp_path, n=200, name="b.csv"), make(tmp_path, n=200, seed=1)
    assert [a.sides(i) for i in a.items] == [b.sides(i) for i in b.items]
    assert [a.sides(i) for i in a.items] != [c.sides(i) for i in c.items]
    tuned_left = sum(a.sides(i)[0] == "tuned" for i in a.items)
    assert 70 < tuned_left < 130


def test_from_frame_uses_the_id_column(tmp_path):
    df = pd.DataFrame({"id": ["q7", "q9"], "question": ["a?", "b?"], "base": ["x", "y"], "tuned": ["X", "Y"]})
    review = Review.from_frame(df, path=tmp_path / "r.csv", rater="ann")
    assert review.items == ["q7", "q9"]
    row = review.rate("left")
    assert row["item"] == "q7"
    assert review.answers["q7"] == {"base": "x", "tuned": "X"}


def test_widget_buttons_rate_and_finish(tmp_path):
    review = make(tmp_path, n=3)
    box = review.widget()
    progress, question, answers, _, comment, message = box.children
    assert progress.value == "0 / 3 rated" and "question 0?" in question.value and not message.value
    left, _ = review.sides("0")
    assert "Answer 1" in answers.children[0].value and f"{left} answer 0" in answers.children[0].value
    comment.value = "first is better"
    buttons(box)["Answer 1 is better"].click()
    assert rows(review.path)[0]["winner"] == left and rows(review.path)[0]["comment"] == "first is better"
    assert progress.value == "1 / 3 rated" and "question 1?" in question.value and comment.value == ""
    buttons(box)["Tie"].click()
    buttons(box)["Both bad"].click()
    assert [r["verdict"] for r in rows(review.path)] == ["left", "tie", "both bad"]
    assert progress.value == "3 / 3 rated" and "All 3 items are rated" in message.value
    assert all(b.disabled for b in buttons(box).values())


def test_widget_escapes_answers(tmp_path):
    review = Review(["<q>"], ["<script>x</script>"], ["a & b"], path=tmp_path / "r.csv", rater="ann")
    html = review.widget().children[2].children
    text = html[0].value + html[1].value
    assert "&lt;script&gt;" in text and "<script>" not in text and "a &amp; b" in text and "pre-wrap" in text


def ratings_file(path, wins, losses, ties=0, both_bad=0):
    n = wins + losses + ties + both_bad
    review = Review(["q"] * n, ["b"] * n, ["t"] * n, path=path, rater="ann")
    for winner in ["tuned"] * wins + ["base"] * losses + ["tie"] * ties + ["both bad"] * both_bad:
        rate_as(review, review.current, winner)
    return path


def test_win_rate_matches_scipy_wilson(tmp_path):
    path = ratings_file(tmp_path / "r.csv", wins=7, losses=3, ties=2, both_bad=1)
    result = win_rate(path)
    assert (result.wins, result.losses, result.ties, result.both_bad, result.n) == (7, 3, 2, 1, 13)
    assert result.rate == pytest.approx(0.7)
    ci = binomtest(7, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert (result.low, result.high) == pytest.approx((ci.low, ci.high))
    assert result.low < 0.7 < result.high
    base = win_rate(read_ratings(path), system="base")
    assert (base.wins, base.losses, base.rate) == (3, 7, pytest.approx(0.3))
    assert "70%" in str(result)


def test_win_rate_without_decisive_ratings_is_nan(tmp_path):
    result = win_rate(ratings_file(tmp_path / "r.csv", wins=0, losses=0, ties=2))
    assert (result.n, result.ties) == (2, 2)
    assert pd.isna(result.rate) and pd.isna(result.low) and pd.isna(result.high)
    empty = make(tmp_path, name="empty.csv")
    assert win_rate(empty.ratings()).n == 0


def test_win_rate_counts_the_latest_rating(tmp_path):
    review = make(tmp_path, n=2)
    rate_as(review, "0", "base")
    rate_as(review, "0", "tuned")
    rate_as(review, "1", "tuned")
    assert (win_rate(review.path).wins, win_rate(review.path).losses) == (2, 0)


def two_raters(tmp_path, pairs):
    """Two raters' files with different seeds (so different left/right orders) encoding (winner_a, winner_b) pairs."""
    n = len(pairs)
    a = make(tmp_path, n=n, name="a.csv", rater="ann", seed=1)
    b = make(tmp_path, n=n, name="b.csv", rater="bob", seed=2)
    assert any(a.sides(i) != b.sides(i) for i in a.items)
    for item, (wa, wb) in zip(a.items, pairs, strict=True):
        rate_as(a, item, wa)
        rate_as(b, item, wb)
    return a.path, b.path


def test_cohen_kappa_textbook_example(tmp_path):
    # yes = tuned better, no = base better: both yes 20, both no 15, A yes/B no 5, A no/B yes 10 -> kappa 0.4
    yes, no = "tuned", "base"
    pairs = [(yes, yes)] * 20 + [(no, no)] * 15 + [(yes, no)] * 5 + [(no, yes)] * 10
    random.Random(0).shuffle(pairs)
    assert cohen_kappa(*two_raters(tmp_path, pairs)) == pytest.approx(0.4)


def test_cohen_kappa_matches_sklearn_on_shared_items(tmp_path):
    rng = random.Random(3)
    labels = ["base", "tuned", "tie", "both bad"]
    pairs = [(rng.choice(labels), rng.choice(labels)) for _ in range(60)]
    path_a, path_b = two_raters(tmp_path, pairs)
    extra = make(tmp_path, n=70, name="a.csv", rater="ann", seed=1)  # ann rates 10 more items than bob
    while extra.current is not None:
        extra.rate("left")
    expected = cohen_kappa_score([a for a, _ in pairs], [b for _, b in pairs])
    assert cohen_kappa(path_a, path_b) == pytest.approx(expected)


def test_unknown_verdict(tmp_path):
    with pytest.raises(ValueError, match="unknown verdict 'A'.*left, right, tie, both bad"):
        make(tmp_path).rate("A")


def test_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="differ in length: 2, 1, 2"):
        Review(["a", "b"], ["x"], ["y", "z"], path=tmp_path / "r.csv", rater="ann")


def test_rating_when_all_done(tmp_path):
    review = make(tmp_path, n=1)
    review.rate("tie")
    assert review.remaining == 0 and review.current is None
    with pytest.raises(ValueError, match="all 1 items are rated"):
        review.rate("tie")


def test_not_a_ratings_file(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("item,question\n0,hi\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"answers\.csv is not a ratings file: missing columns rater, left, right"):
        Review(["a"], ["x"], ["y"], path=path, rater="ann")
    with pytest.raises(ValueError, match="missing columns"):
        win_rate(path)


def test_win_rate_of_unknown_system(tmp_path):
    with pytest.raises(ValueError, match="'lora' is not in the ratings"):
        win_rate(ratings_file(tmp_path / "r.csv", wins=1, losses=1), system="lora")


def test_cohen_kappa_without_shared_items(tmp_path):
    a = make(tmp_path, name="a.csv", rater="ann")
    a.rate("left")
    b = make(tmp_path, name="b.csv", rater="bob")
    b.rate("left", item="3")
    with pytest.raises(ValueError, match="share no rated items"):
        cohen_kappa(a.path, b.path)

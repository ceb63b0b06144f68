"""Blind side-by-side rating of two systems' answers (notebook 04).

A rater sees one question and two answers labelled only "Answer 1" and "Answer 2"; which system is on the left is
drawn per item from a seed and never shown. Every verdict is appended to a CSV the moment it is given, so a crashed
kernel loses nothing and a new `Review` on the same file resumes where the rater stopped. `win_rate` and
`cohen_kappa` summarise the files.
"""

from __future__ import annotations

import csv
import html
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

COLUMNS = ["item", "rater", "left", "right", "verdict", "winner", "comment", "timestamp"]
VERDICTS = ("left", "right", "tie", "both bad")
BUTTONS = {"left": "Answer 1 is better", "right": "Answer 2 is better", "tie": "Tie", "both bad": "Both bad"}


def read_ratings(path: str | Path) -> pd.DataFrame:
    """All rows of a ratings CSV as text (an empty file gives no rows); a file without the rating columns is an error.

    Used by review.win_rate (notebook 04).
    """
    if Path(path).stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS, dtype=str)
    return _checked(pd.read_csv(path, dtype=str, keep_default_na=False), path)


def _checked(df: pd.DataFrame, source: object) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source} is not a ratings file: missing columns {', '.join(missing)}")
    return df


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    """The last row per rater and item: a re-rating replaces the earlier one."""
    return df.drop_duplicates(["rater", "item"], keep="last").reset_index(drop=True)


class Review:
    """A blind side-by-side rating session of one rater over the same questions answered by two systems.

    `rate(verdict)` rates the current item; `widget()` shows the same session as buttons in Jupyter.
    Taught in notebook 04.
    """

    def __init__(
        self,
        questions: Sequence[str],
        answers_a: Sequence[str],
        answers_b: Sequence[str],
        *,
        path: str | Path,
        rater: str,
        systems: tuple[str, str] = ("base", "tuned"),
        seed: int = 0,
        ids: Sequence[object] | None = None,
    ):
        ids = range(len(questions)) if ids is None else ids
        lengths = {len(questions), len(answers_a), len(answers_b), len(ids)}
        if len(lengths) != 1:
            raise ValueError(
                f"questions, answers and ids differ in length: {len(questions)}, {len(answers_a)}, "
                f"{len(answers_b)}, {len(ids)}"
            )
        if len(set(systems)) != 2 or {"tie", "both bad"} & set(systems):
            raise ValueError(f"systems must be two different names other than 'tie' and 'both bad', got {systems}")
        self.items = [str(i) for i in ids]
        if not self.items:
            raise ValueError("no questions to review")
        if len(set(self.items)) != len(self.items):
            raise ValueError("item ids are not unique")
        self.questions = dict(zip(self.items, questions, strict=True))
        pairs = zip(self.items, answers_a, answers_b, strict=True)
        self.answers = {i: {systems[0]: a, systems[1]: b} for i, a, b in pairs}
        self.path, self.rater, self.systems, self.seed = Path(path), rater, systems, seed
        self.rated: set[str] = set()
        if self.path.exists():
            done = read_ratings(self.path)
            self.rated = set(done.loc[done["rater"] == rater, "item"])

    @classmethod
    def from_frame(cls, df: pd.DataFrame, **kwargs) -> Review:
        """A review of a DataFrame with a "question" column and one answer column per system (`systems=`).

        Items are named by the "id" column if there is one, else by the index. Other arguments as for `Review`.
        Taught in notebook 04.
        """
        a, b = kwargs.get("systems", ("base", "tuned"))
        ids = df["id"] if "id" in df.columns else df.index
        return cls(list(df["question"]), list(df[a]), list(df[b]), ids=list(ids), **kwargs)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def remaining(self) -> int:
        """How many items this rater has not rated yet.

        Taught in notebook 04.
        """
        return sum(i not in self.rated for i in self.items)

    @property
    def current(self) -> str | None:
        """The id of the next item to rate, or None when all are rated.

        Taught in notebook 04.
        """
        return next((i for i in self.items if i not in self.rated), None)

    def sides(self, item: str) -> tuple[str, str]:
        """(left system, right system) of an item: drawn from the seed and the item id, so always the same.

        Taught in notebook 04.
        """
        a, b = self.systems
        return (b, a) if random.Random(f"{self.seed}/{item}").random() < 0.5 else (a, b)

    def rate(self, verdict: str, comment: str = "", *, item: str | None = None) -> dict[str, str]:
        """Rate the current item (or `item`, to re-rate it): "left", "right", "tie" or "both bad"; returns the row.

        The row is appended to the CSV and synced to disk before this returns; a re-rating adds a row that wins.
        Taught in notebook 04.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}; expected one of {', '.join(VERDICTS)}")
        item = self.current if item is None else str(item)
        if item is None:
            raise ValueError(f"all {len(self)} items are rated; pass item= to re-rate one")
        if item not in self.questions:
            raise ValueError(f"unknown item {item!r}")
        left, right = self.sides(item)
        winner = {"left": left, "right": right}.get(verdict, verdict)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        row = dict(zip(COLUMNS, [item, self.rater, left, right, verdict, winner, comment, stamp], strict=True))
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())
        self.rated.add(item)
        return row

    def ratings(self) -> pd.DataFrame:
        """This rater's ratings as stored on disk, the latest per item.

        Taught in notebook 04.
        """
        if not self.path.exists():
            return pd.DataFrame(columns=COLUMNS, dtype=str)
        df = read_ratings(self.path)
        return _latest(df[df["rater"] == self.rater])

    def widget(self) -> widgets.VBox:
        """The session as a Jupyter widget: progress, question, the two answers side by side, four buttons, a comment.

        Taught in notebook 04.
        """
        progress, question, message = widgets.HTML(), widgets.HTML(), widgets.HTML()
        answer_boxes = [widgets.HTML(layout=widgets.Layout(width="50%")) for _ in range(2)]
        comment = widgets.Text(placeholder="optional comment")
        buttons = {verdict: widgets.Button(description=label) for verdict, label in BUTTONS.items()}

        def show() -> None:
            item = self.current
            progress.value = f"{len(self) - self.remaining} / {len(self)} rated"
            for button in buttons.values():
                button.disabled = item is None
            if item is None:
                question.value = ""
                for box in answer_boxes:
                    box.value = ""
                where = html.escape(str(self.path))
                message.value = f"<b>All {len(self)} items are rated.</b> The ratings are in {where}."
                return
            question.value = f"<b>Question:</b> {html.escape(self.questions[item])}"
            for n, (box, system) in enumerate(zip(answer_boxes, self.sides(item), strict=True), start=1):
                text = html.escape(self.answers[item][system])
                box.value = f"<b>Answer {n}</b><div style='white-space: pre-wrap'>{text}</div>"

        def on_click(verdict: str):
            def click(_: widgets.Button) -> None:
                self.rate(verdict, comment.value)
                comment.value = ""
                show()

            return click

        for verdict, button in buttons.items():
            button.on_click(on_click(verdict))
        show()
        answers, choices = widgets.HBox(answer_boxes), widgets.HBox(list(buttons.values()))
        return widgets.VBox([progress, question, answers, choices, comment, message])


@dataclass(frozen=True)
class WinRate:
    """How often `system` won the decisive ratings, with a 95% Wilson interval; ties and both-bad are not decisive.

    Taught in notebook 04.
    """

    system: str
    wins: int
    losses: int
    ties: int
    both_bad: int
    n: int
    rate: float
    low: float
    high: float

    def __str__(self) -> str:
        return (
            f"{self.system} wins {self.rate:.0%} of {self.wins + self.losses} decisive ratings "
            f"(95% CI {self.low:.0%} to {self.high:.0%}); {self.ties} ties, {self.both_bad} both bad, n = {self.n}"
        )


def win_rate(ratings: pd.DataFrame | str | Path, system: str = "tuned") -> WinRate:
    """Wins / (wins + losses) of `system` over the latest rating per rater and item, with a 95% Wilson interval.

    Ties and "both bad" are counted but left out of the rate; with no decisive rating the rate and interval are NaN.
    Taught in notebook 04.
    """
    df = _latest(_checked(ratings, "the DataFrame") if isinstance(ratings, pd.DataFrame) else read_ratings(ratings))
    shown = set(df["left"]) | set(df["right"])
    if shown and system not in shown:
        raise ValueError(f"system {system!r} is not in the ratings; they compare {', '.join(sorted(shown))}")
    ties, both_bad = int((df["winner"] == "tie").sum()), int((df["winner"] == "both bad").sum())
    wins = int((df["winner"] == system).sum())
    losses = len(df) - wins - ties - both_bad
    rate = low = high = math.nan
    if wins + losses:
        rate = wins / (wins + losses)
        low, high = binomtest(wins, wins + losses).proportion_ci(method="wilson")
    return WinRate(system, wins, losses, ties, both_bad, len(df), rate, float(low), float(high))


def cohen_kappa(csv_a: str | Path, csv_b: str | Path) -> float:
    """Cohen's kappa between two raters' files over the items both rated, comparing winners (not left/right).

    Each file holds one rater's ratings; the latest rating per item counts.
    Taught in notebook 04.
    """
    a, b = (_latest(read_ratings(p)) for p in (csv_a, csv_b))
    for df, path in ((a, csv_a), (b, csv_b)):
        if df["rater"].nunique() > 1:
            raise ValueError(f"{path} holds several raters ({', '.join(df['rater'].unique())}); expected one")
    both = a.merge(b, on="item", suffixes=("_a", "_b"))
    if both.empty:
        raise ValueError(f"{csv_a} and {csv_b} share no rated items")
    return float(cohen_kappa_score(both["winner_a"], both["winner_b"]))

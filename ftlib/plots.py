"""The charts the notebooks show, each one function returning its matplotlib Figure (all notebooks)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


def _figure(width: float = 7, height: float = 3.2):
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return fig, ax


def balance(df: pd.DataFrame, by: str = "intent", hue: str = "lang", title: str = "Rows per intent"):
    """Horizontal bars of rows per `by`, one colour per `hue` (language): is the data balanced?

    Taught in notebook 01.
    """
    table = pd.crosstab(df[by], df[hue])
    table = table.loc[table.sum(axis=1).sort_values().index]
    fig, ax = _figure(7, 0.28 * len(table) + 1.2)
    table.plot.barh(ax=ax, width=0.8)
    ax.axvline(table.to_numpy().mean(), color="grey", linestyle="--", linewidth=1, label="mean")
    ax.set(xlabel="rows", ylabel="", title=title)
    ax.legend(loc="lower right")
    return fig


def lengths(df: pd.DataFrame, columns: tuple[str, ...] = ("question", "answer"), hue: str = "lang",
            title: str = "Length in characters"):
    """Histograms of text length per column and language: spot the over-long and the empty rows.

    Taught in notebook 01.
    """
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3), layout="constrained", squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        for value, group in df.groupby(hue):
            ax.hist(group[column].str.len(), bins=30, alpha=0.6, label=str(value))
        ax.set(title=f"{column}", xlabel="characters", ylabel="rows")
        ax.legend()
    fig.suptitle(title)
    return fig


def counts(series: pd.Series, title: str, xlabel: str = "rows"):
    """Horizontal bars of a Series of counts (e.g. a cleaning report: rows per reason).

    Taught in notebook 01.
    """
    fig, ax = _figure(7, 0.3 * len(series) + 1.2)
    series.sort_values().plot.barh(ax=ax, color="#4c72b0")
    for i, value in enumerate(series.sort_values()):
        ax.text(value, i, f" {value}", va="center")
    ax.set(title=title, xlabel=xlabel, ylabel="")
    return fig


def report_card(values: pd.DataFrame, higher_is_better):
    """Each model's value of each metric relative to the first model's (log scale; 1 = unchanged), one bar
    per model, the metric's direction in its label. Taught in notebook 04.
    """
    relative = values.div(values.iloc[:, 0], axis=0).iloc[:, 1:]
    relative.index = [f"{m} ({'↑' if h else '↓'} better)" for m, h in zip(values.index, higher_is_better, strict=True)]
    relative = relative.iloc[::-1]
    fig, ax = _figure(7, 0.35 * len(relative) * max(1, relative.shape[1] / 2) + 1.2)
    relative.plot.barh(ax=ax, width=0.8, logx=True)
    ax.axvline(1, color="grey", linewidth=1)
    ax.set(title=f"Relative to {values.columns[0]}", xlabel=f"value ÷ {values.columns[0]}'s value (log scale)")
    return fig


def confusion(y_true, y_pred, labels, title: str = "Confusion matrix"):
    """The confusion matrix as scikit-learn's ConfusionMatrixDisplay draws it: true intent down, predicted across.

    Counts on the diagonal are right; every other cell is a kind of mistake. Taught in notebook 06.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    size = 0.45 * len(labels) + 2
    fig, ax = _figure(size + 1, size)
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(labels), ax=ax, colorbar=False,
                                            cmap="Blues", xticks_rotation=60)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    return fig


def per_class(table: pd.DataFrame, title: str, xlabel: str = "recall", highlight=()):
    """Grouped horizontal bars: one group per class (rows), one bar per run (columns); `highlight` marks classes.

    Taught in notebook 06.
    """
    fig, ax = _figure(7, 0.32 * len(table) * max(1, table.shape[1] / 2) + 1.2)
    table.iloc[::-1].plot.barh(ax=ax, width=0.8)
    for label in ax.get_yticklabels():
        if label.get_text() in highlight:
            label.set_fontweight("bold")
    ax.set(title=title, xlabel=xlabel, ylabel="")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    return fig

"""The charts the notebooks show, each one function returning its matplotlib Figure (all notebooks)."""

from __future__ import annotations

import base64
import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ftlib.estimator import COMPONENTS, GIB, T4_GIB, Estimate

# one colour per memory component (memory_breakdown)
_MEMORY_COLOURS = {"weights": "#4c72b0", "gradients": "#dd8452", "optimizer_state": "#55a868",
                  "activations": "#c44e52", "overhead": "#8c8c8c"}


def _figure(width: float = 7, height: float = 3.2):
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return fig, ax


def loss_curve(ax, train: list[tuple[int, float]], validation: list[tuple[int, float]], title: str = "loss",
               max_steps: int = 0):
    """Draw training and validation loss (step, loss) on `ax`, cleared first: the live plot redraws in place.

    Used by train.train (notebook 03).
    """
    ax.clear()
    for points, label, style in [(train, "train", "-"), (validation, "validation", "o-")]:
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label)
    ax.set(xlabel="step", ylabel="loss", title=title, xlim=(0, max(max_steps, 1)))
    ax.legend()


def png_html(fig, dpi: int = 80) -> str:
    """A figure as an inline <img> (for the HTML a result shows in Jupyter); the figure is closed.

    Used by data.quality_report (notebook 01).
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


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


def report_card(intervals: dict[str, dict]):
    """Each model's score on each 0-1 metric (chrF and BLEU divided by 100) as a bar with its 95% interval and
    its value written beside it, so a zero is as visible as the rest. `intervals`: model -> metric -> Estimate
    (metrics.Scores.intervals). Taught in notebook 04.
    """
    import numpy as np

    scale = {"chrF": 100, "BLEU": 100}
    names = list(intervals)
    shown = [m for m in dict.fromkeys(m for per in intervals.values() for m in per)]
    fig, ax = _figure(7, 0.3 * len(shown) * len(names) + 1.4)
    height = 0.8 / max(len(names), 1)
    y = np.arange(len(shown))
    for k, name in enumerate(names):
        est = [intervals[name].get(m) for m in shown]
        values = np.array([e.value / scale.get(m, 1) if e else np.nan for e, m in zip(est, shown, strict=True)])
        lows = np.array([e.low / scale.get(m, 1) if e else np.nan for e, m in zip(est, shown, strict=True)])
        highs = np.array([e.high / scale.get(m, 1) if e else np.nan for e, m in zip(est, shown, strict=True)])
        pos = y + (k - (len(names) - 1) / 2) * height
        ax.barh(pos, values, height, xerr=[values - lows, highs - values], capsize=3, label=name)
        for p, v, hi in zip(pos, values, highs, strict=True):
            if v == v:
                ax.text(hi + 0.01, p, f"{v:.2f}", va="center", fontsize=8)
    n = {m: next(per[m].n for per in intervals.values() if m in per) for m in shown}
    ax.set_yticks(y, [(f"{m} / {scale[m]}" if m in scale else m) + f" (n={n[m]})" for m in shown])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.12), xlabel="score; the line on each bar: its 95% interval")
    ax.legend(loc="lower right", fontsize=8)
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


def memory_bars(items, title: str | None = None, split: bool | None = None):
    """Estimates and measurements of training memory side by side, the measurements hatched.

    split=True: one group of bars per component (weights, gradients, optimizer state, activations, overhead).
    split=False: one pair of bars per set-up, the estimated total beside the measured peak, with the estimate's
    error. The default splits only when every item is an estimate: a measured peak is one number, and how it divides
    into components is not observable (on a CPU the resident memory holds the Python and torch runtime; activations
    are freed during backward and their pages reused for gradients; allocators keep freed memory).
    Taught in notebook 02.
    """
    items = [items] if isinstance(items, Estimate) else list(items)
    split = all(item.kind == "estimate" for item in items) if split is None else split
    small = max(item.total for item in items) < GIB
    unit, scale = ("MiB", 2**20) if small else ("GiB", GIB)
    fmt = "%.0f" if small else "%.2f"
    fig, ax = _figure(8, 3.4)
    if split:
        x = np.arange(len(COMPONENTS))
        width = 0.8 / len(items)
        for k, item in enumerate(items):
            values = [getattr(item, c) / scale for c in COMPONENTS]
            bars = ax.bar(x + (k - (len(items) - 1) / 2) * width, values, width, label=item.label,
                          hatch="//" if item.kind == "measured" else None, edgecolor="white")
            ax.bar_label(bars, fmt=fmt, fontsize=7)
        ax.set_xticks(x, [c.replace("_", " ") for c in COMPONENTS])
        ax.set(ylabel=unit, title=title or "Memory by component (estimates)")
        ax.legend(fontsize=8)
        return fig
    setups = list(dict.fromkeys(item.label.rsplit(" (", 1)[0] for item in items))
    one_model = len({(item.model, item.max_length, item.batch) for item in items}) == 1
    x = np.arange(len(setups))
    totals: dict[tuple[str, str], float] = {}
    for k, (kind, colour) in enumerate((("estimate", "#4c72b0"), ("measured", "#dd8452"))):
        mine = {item.label.rsplit(" (", 1)[0]: item.total / scale for item in items if item.kind == kind}
        totals |= {(setup, kind): value for setup, value in mine.items()}
        at = [i for i, setup in enumerate(setups) if setup in mine]
        bars = ax.bar(x[at] + (k - 0.5) * 0.38, [mine[setups[i]] for i in at], 0.36, color=colour, edgecolor="white",
                      label=kind if kind == "estimate" else "measured peak", hatch="//" if kind == "measured" else None)
        ax.bar_label(bars, fmt=fmt, fontsize=8)
    for i, setup in enumerate(setups):
        if (setup, "estimate") in totals and (setup, "measured") in totals:
            error = totals[setup, "estimate"] / totals[setup, "measured"] - 1
            top = max(totals[setup, "estimate"], totals[setup, "measured"])
            ax.text(i, top * 1.1, f"estimate {error:+.0%}", ha="center", fontsize=8)
    ax.set_xticks(x, [setup.split(" ")[1] if one_model else setup for setup in setups])
    ax.set_ylim(0, max(totals.values()) * 1.25)
    ax.set(ylabel=unit, title=title or "Training memory: estimated total vs measured peak")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def memory_breakdown(est: Estimate, gib: float = T4_GIB):
    """One stacked horizontal bar of an estimate's components, with the GPU's limit as a line.

    Gradients and activations do not peak together (Estimate.total): the smaller of the two is drawn pale, last.
    Used by memory.calculator (notebook 02).
    """
    fig, ax = _figure(8, 1.9)
    pair = ("activations", "gradients")
    order = ("weights", "optimizer_state", "overhead", *(pair if est.activations >= est.gradients else pair[::-1]))
    left = 0.0
    for c in order:
        value, pale = getattr(est, c) / GIB, c == order[-1]
        ax.barh([0], [value], left=left, color=_MEMORY_COLOURS[c], alpha=0.35 if pale else 1.0,
                label=f"{c.replace('_', ' ')} {value:.1f}" + (" (not at the peak)" if pale else ""))
        left += value
    ax.axvline(gib, color="black", linestyle="--", linewidth=1.2)
    ax.text(gib, 0.45, f" {gib:g} GiB T4", va="center", fontsize=8)
    ax.set(xlim=(0, max(left, gib) * 1.08), yticks=[], xlabel="GiB", title=est.title)
    ax.title.set_fontsize(9)
    ax.legend(ncols=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.55), frameon=False)
    return fig


def before_after(changes: dict, metric: str = "fact hit rate"):
    """Before and after bars with their 95% intervals, one pair per question set (metrics.Comparison's
    before_interval / after_interval), each value written beside its bar. Taught in notebook 03.
    """
    import numpy as np

    names = list(changes)
    fig, ax = _figure(7, 0.9 * len(names) + 1.2)
    y = np.arange(len(names))
    for k, (side, color) in enumerate((("before", "#999999"), ("after", "#4c72b0"))):
        est = [getattr(changes[name], f"{side}_interval") for name in names]
        values = np.array([e.value for e in est])
        pos = y + (k - 0.5) * 0.38
        ax.barh(pos, values, 0.36, color=color, label=side, capsize=3,
                xerr=[values - [e.low for e in est], [e.high for e in est] - values])
        for p, e in zip(pos, est, strict=True):
            ax.text(e.high + 0.01, p, f"{e.value:.2f}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{name} (n={changes[name].n})" for name in names])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.12), xlabel=f"{metric}; the line on each bar: its 95% interval")
    ax.legend(loc="lower right", fontsize=8)
    return fig

"""The interactive memory calculator: sliders for the settings, the estimate's breakdown and a T4 verdict (notebook 02).

A module of its own because it is the one piece with a user interface: it needs ipywidgets and a figure
(plots.memory_breakdown), and plots itself imports the estimate, so the estimate (ftlib.estimator) stays free of
both. Notebooks call it as memory.calculator().
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython import get_ipython
from IPython.display import display

from ftlib import models, plots
from ftlib.estimator import GIB, METHODS, T4_GIB, estimate


def _live_kernel() -> bool:
    """True inside a running Jupyter kernel, where a widget's output can draw (not headless: papermill, tests)."""
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def calculator(gib: float = T4_GIB, preset: str = "qwen2.5-1.5b"):
    """Interactive memory calculator: preset, method, max_length, batch, r and checkpointing -> breakdown and verdict.

    Returns an ipywidgets VBox (its `.estimate` is the current Estimate); it only draws inside a running kernel,
    so executing it headless (papermill, tests) is safe.
    Taught in notebook 02.
    """
    style = {"description_width": "110px"}
    choose = widgets.Dropdown(options=list(models.PRESETS), value=preset, description="model", style=style)
    method = widgets.ToggleButtons(options=list(METHODS), value="qlora", description="method", style=style)
    seq = widgets.SelectionSlider(options=[128, 256, 512, 1024, 2048, 4096], value=1024, description="max_length",
                            style=style)
    batch = widgets.IntSlider(value=1, min=1, max=16, description="batch", style=style)
    rank = widgets.SelectionSlider(options=[4, 8, 16, 32, 64, 128], value=16, description="LoRA r", style=style)
    checkpointing = widgets.Checkbox(value=True, description="gradient checkpointing", style=style)
    verdict = widgets.HTML()
    out = widgets.Output()
    box = widgets.VBox([choose, method, seq, batch, rank, checkpointing, verdict, out])

    def redraw(*_):
        est = estimate(choose.value, method.value, max_length=seq.value, batch=batch.value, r=rank.value,
                       gradient_checkpointing=checkpointing.value)
        box.estimate = est
        rank.disabled = method.value == "full"
        text = est.verdict(gib)
        colour = {"fits": "green", "tight": "darkorange"}.get(text, "crimson")
        answer = {"fits": "yes", "tight": "only just (over 90%: try it, or lower max_length / batch)"}.get(text, "no")
        verdict.value = (f"<b style='color:{colour}'>fits a {gib:g} GiB T4: {answer}</b> — "
                         f"{est.total / GIB:.1f} GiB estimated")
        if _live_kernel():
            fig = plots.memory_breakdown(est, gib)
            out.clear_output(wait=True)
            with out:
                display(fig)
            plt.close(fig)

    for widget in (choose, method, seq, batch, rank, checkpointing):
        widget.observe(redraw, names="value")
    redraw()
    return box

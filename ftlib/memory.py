"""How much memory does fine-tuning need? Estimate it, measure it, set it beside published figures (notebook 02).

    est = memory.estimate("llama-3.1-8b", "qlora", max_length=1024, batch=1)  # sized on the meta device: no download
    est.fits(15.0)                                                          # a free Colab / Kaggle T4
    got = memory.measure("smollm2-135m", "lora", steps=3)                   # a few real Trainer steps on this machine
    memory.frame([est, got]); memory.t4_table(); memory.compare_published(); memory.calculator()
    plots.memory_bars([est, got])                                           # the components side by side

Every figure is in bytes inside the dataclasses and in GiB (2**30 bytes) in tables and plots. The components
are the same for an estimate and a measurement: weights, gradients, optimizer_state, activations, overhead.

This module is the notebooks' one door; each concept lives in a module of its own:
- ftlib.architecture: what a model is made of, read off its config on the meta device;
- ftlib.estimator: the estimate (Estimate, estimate, frame, t4_table, quant_bytes, kv_cache_bytes);
- ftlib.measure: the measuring harness and measure() (Measurement);
- ftlib.published: published figures and compare_published();
- ftlib.training_time: training time on a T4 from FLOPs (epoch_time_t4, TrainingTime), time and not memory;
- ftlib.calculator: the ipywidgets calculator; ftlib.plots: memory_bars and memory_breakdown.
"""

from ftlib.calculator import calculator
from ftlib.estimator import (
    COMPONENTS,
    GIB,
    METHODS,
    OPTIMIZERS,
    T4_GIB,
    Estimate,
    estimate,
    frame,
    kv_cache_bytes,
    quant_bytes,
    t4_table,
)
from ftlib.measure import Measurement, measure
from ftlib.published import compare_published, published
from ftlib.training_time import TrainingTime, epoch_time_t4

__all__ = ["COMPONENTS", "GIB", "METHODS", "OPTIMIZERS", "T4_GIB", "Estimate", "Measurement", "TrainingTime",
           "calculator", "compare_published", "epoch_time_t4", "estimate", "frame", "kv_cache_bytes", "measure",
           "published", "quant_bytes", "t4_table"]

"""How long training would take on a T4, ESTIMATED from FLOPs, not measured (notebook 02).

    memory.epoch_time_t4("qwen2.5-1.5b", tokens=200_000, method="qlora")   # ≈ minutes on a free T4

Time, not memory: it sizes the model as the memory estimate does (ftlib.architecture) and counts matmul FLOPs.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ftlib import architecture
from ftlib.estimator import METHODS

T4_FP16_TFLOPS = 65.0  # NVIDIA T4 datasheet: peak fp16 tensor-core throughput (mixed precision)


@dataclass(repr=False)
class TrainingTime:
    """An estimate (not a measurement) of training time from FLOPs; see epoch_time_t4()."""

    model: str
    method: str
    tokens: int
    flops: float
    peak_tflops: float
    efficiency: float
    rule: str

    @property
    def seconds(self) -> float:
        """Estimated seconds."""
        return self.flops / (self.peak_tflops * 1e12 * self.efficiency)

    @property
    def hours(self) -> float:
        """Estimated hours."""
        return self.seconds / 3600

    def __repr__(self) -> str:
        return (f"≈ {self.hours:.2f} h ({self.seconds:,.0f} s) for {self.tokens:,} tokens, {self.model} {self.method} "
                f"on a T4 — an estimate: {self.rule}, {self.flops:.3g} FLOPs at {self.efficiency:.0%} of "
                f"{self.peak_tflops:g} TFLOP/s")

    def _repr_html_(self) -> str:
        return f"<span>{html.escape(repr(self))}</span>"


def epoch_time_t4(name="smollm2-135m", tokens: int = 1_000_000, method: str = "qlora", efficiency: float = 0.35,
                  max_length: int = 512, gradient_checkpointing: bool | None = None,
                  peak_tflops: float = T4_FP16_TFLOPS) -> TrainingTime:
    """ESTIMATED time to train on `tokens` tokens on a T4, from FLOPs (not a measurement).

    Forward ≈ 2·N FLOPs per token (N = parameters used in matmuls, lm_head included) + 2·layers·seq·d_attn for
    attention scores (Kaplan et al. 2020). Full fine-tuning: backward ≈ 2 forwards (input and weight gradients):
    6·N·tokens. LoRA/QLoRA: the frozen base still passes input gradients back, but computes no weight gradients:
    ≈ 4·N·tokens. Gradient checkpointing recomputes the forward: +2·N·tokens (default: on for QLoRA, as in
    estimate()). Divided by the T4's fp16 tensor peak (65 TFLOP/s) x efficiency (0.35 assumed; QLoRA's
    dequantization and a small batch lower it further).
    Taught in notebook 02.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    arch = architecture.of(name)
    gc_on = (method == "qlora") if gradient_checkpointing is None else gradient_checkpointing
    forward = 2 * arch.matmul_params + 2 * arch.layers * max_length * arch.heads * arch.head_dim
    passes = (3 if method == "full" else 2) + (1 if gc_on else 0)
    rule = f"{2 * passes}·N·tokens ({'full' if method == 'full' else 'frozen base'}" + (
        ", + checkpoint recompute)" if gc_on else ")")
    return TrainingTime(arch.label, method, tokens, float(forward * passes * tokens), peak_tflops, efficiency, rule)

"""The memory estimate: how much a fine-tuning run needs, component by component, before it starts (notebook 02).

    est = estimator.estimate("llama-3.1-8b", "qlora", max_length=1024, batch=1)  # no download: the meta device
    est.fits(15.0); est.verdict(); frame([est]); t4_table()

Every figure is in bytes inside Estimate and in GiB (2**30 bytes) in tables. The components are the ones a
measurement (ftlib.measure) reads too: weights, gradients, optimizer_state, activations, overhead.
Notebooks reach all of this through ftlib.memory.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ftlib import architecture, models, recipe

GIB = 2**30
T4_GIB = 15.0  # a "16 GB" T4 as Colab and Kaggle offer it: about 15 GiB usable (ECC and the driver take the rest)
METHODS = ("full", "lora", "qlora")
COMPONENTS = ("weights", "gradients", "optimizer_state", "activations", "overhead")
# TRL's fused LM head (trl.kernels.chunked_logprob, what SFTTrainer trains through): logits in tiles of at most
# 4096 tokens x 32768 vocabulary columns, never the whole batch x seq x vocab. On a GPU a Triton kernel folds each
# tile in place; TRL's torch fallback (CPU) keeps more tile-sized fp32 tensors alive in backward (_backward_tile):
# the tile, y, z, log_p, p, grad, is_target (1 byte: 0.25), is_target.float(), its difference with p and that times
# the incoming gradient = 9.25 tiles (9.5 measured on smollm2's shapes).
HEAD_TILE = (4096, 32768)
CPU_HEAD_TILES = 9.25
TIGHT = 0.9  # above this share of the card an estimate is "tight": real peaks run higher (notebook 02, published)

# bytes of optimizer state per trainable parameter; None: two moments in the parameter's own dtype, as
# torch.optim.AdamW keeps them (8 B for fp32 parameters, 4 B for pure bf16 ones).
OPTIMIZERS: dict[str, float | None] = {
    "adamw": None,
    "adamw_8bit": 2 + 2 * 4 / 256,  # bitsandbytes: two uint8 moments + one fp32 absmax per 256-value block each
    "paged_adamw_8bit": 2 + 2 * 4 / 256,  # same bytes; pages to CPU RAM when the GPU runs short
    "sgd": 0.0,  # plain SGD without momentum keeps no state
}


def _dtype(value) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    return getattr(torch, str(value).removeprefix("torch."))


def _size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def quant_bytes(quant: str = "nf4", double_quant: bool = True) -> float:
    """Bytes per quantized weight, quantization constants included.

    NF4/FP4 (QLoRA paper, section 3): 4 bits + one fp32 absmax per 64-weight block = 4.5 bits; double
    quantization stores that absmax in 8 bits with one fp32 constant per 256 blocks: 4 + 8/64 + 32/(64*256)
    = 4.127 bits = 0.516 bytes. "int8" (LLM.int8): 1 byte + one fp32 scale per output row (added per layer).
    Used by memory.estimate (notebook 02).
    """
    if quant in ("nf4", "fp4"):
        constants = 8 / 64 + 32 / (64 * 256) if double_quant else 32 / 64
        return (4 + constants) / 8
    if quant == "int8":
        return 1.0
    raise ValueError(f"quant must be 'nf4', 'fp4' or 'int8', not {quant!r}")


def kv_cache_bytes(config, tokens: int, batch: int = 1, dtype: str | torch.dtype = "float32") -> int:
    """Bytes of the key/value cache that generation keeps for `tokens` positions of `batch` sequences.

    2 (keys and values) x layers x key/value heads x head size x tokens x batch x bytes per value: it grows
    with the prompt, which is what a long prompt (few-shot, RAG) costs in memory. Taught in notebook 05.
    """
    config = architecture.text_config(config)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * tokens * batch * _size(_dtype(dtype))


def gib_text(n: float | None) -> str:
    """'1.23 GiB', or '45.6 MiB' under a tenth of a GiB, or '-' for None. Used by the tables of memory.estimate
    and memory.measure (notebook 02).

    Used by memory.estimate (notebook 02)."""
    return "-" if n is None else f"{n / GIB:,.2f} GiB" if n >= GIB / 10 else f"{n / 2**20:,.1f} MiB"


@dataclass(repr=False)
class Estimate:
    """Estimated peak memory of one training set-up, in bytes, component by component; see estimate()."""

    model: str
    method: str
    max_length: int
    batch: int
    r: int | None
    gradient_checkpointing: bool
    optimizer: str
    dtype: str
    params: int
    trainable_params: int
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    overhead: int
    adapter_weights: int = 0  # part of `weights`: the LoRA matrices
    notes: dict[str, str] = field(default_factory=dict)
    head_gradient: int = 0  # part of `gradients`: the output layer's, alive from the start of backward

    kind = "estimate"

    @property
    def total(self) -> int:
        """The peak, in bytes: weights + optimizer state + overhead + the larger of two moments.

        Start of backward: all activations and the output layer's gradient (the first one backward computes);
        no other gradient exists yet (the Trainer's zero_grad sets them to None after each step). Optimizer step:
        every gradient and no activation (backward freed them layer by layer as gradients filled in).
        """
        return (self.weights + self.optimizer_state + self.overhead
                + max(self.activations + self.head_gradient, self.gradients))

    @property
    def label(self) -> str:
        """Short name for plots and tables."""
        return f"{self.model} {self.method} s{self.max_length}×b{self.batch} ({self.kind})"

    @property
    def title(self) -> str:
        """The settings in one line, for the head of a table or a figure."""
        gc_text = "on" if self.gradient_checkpointing else "off"
        r = f", r={self.r}" if self.method != "full" else ""
        return (f"{self.model} · {self.method}{r} · seq {self.max_length} × batch {self.batch} · "
                f"gradient checkpointing {gc_text} · {self.optimizer} · {self.dtype} ({self.kind})")

    def fits(self, gib: float = T4_GIB) -> bool:
        """True when the total fits in `gib` GiB (15 GiB: what a 16 GB T4 gives PyTorch)."""
        return self.total <= gib * GIB

    def verdict(self, gib: float = T4_GIB) -> str:
        """'fits', 'tight' (over 90% of the card: real peaks run higher, so test it) or 'does not fit'."""
        return "does not fit" if not self.fits(gib) else "tight" if self.total > TIGHT * gib * GIB else "fits"

    def rows(self) -> list[tuple[str, str, str]]:
        """(component, size, what it assumes) rows, total last."""
        rows = [(c.replace("_", " "), gib_text(getattr(self, c)), self.notes.get(c, "")) for c in COMPONENTS]
        return rows + [("total", gib_text(self.total), f"peak: gradients and activations do not peak together; "
                                                       f"trainable parameters: {self.trainable_params:,} of "
                                                       f"{self.params:,}")]

    def _footer(self) -> str:
        return f"on a {T4_GIB:g} GiB T4: {self.verdict()}"

    def __repr__(self) -> str:
        width = max(len(a) for a, _, _ in self.rows())
        lines = [f"  {a:<{width}}  {b:>11}  {c}" for a, b, c in self.rows()]
        return "\n".join([self.title, *lines, "  " + self._footer()])

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(a)}</th><td style='text-align:right'>"
                       f"{html.escape(b)}</td><td style='text-align:left'>{html.escape(c)}</td></tr>"
                       for a, b, c in self.rows())
        return (f"<b>{html.escape(self.title)}</b><table>{body}</table>"
                f"<div style='margin-top:4px'>{html.escape(self._footer())}</div>")

    def record(self) -> dict:
        """One flat dict: settings, the components and the total in GiB."""
        row = {"model": self.model, "kind": self.kind, "method": self.method, "max_length": self.max_length,
               "batch": self.batch, "r": self.r, "gradient_checkpointing": self.gradient_checkpointing,
               "optimizer": self.optimizer, "dtype": self.dtype, "trainable_params": self.trainable_params}
        row.update({f"{c}_gib": getattr(self, c) / GIB for c in COMPONENTS})
        row["total_gib"] = self.total / GIB
        row[f"fits_{T4_GIB:g}_gib"] = self.fits()
        return row

    def to_frame(self):
        """This estimate as a one-row DataFrame (components in GiB)."""
        return frame([self])


def estimate(model="smollm2-135m", method: str = "lora", max_length: int = recipe.MAX_LENGTH, batch: int = recipe.BATCH,
             r: int = recipe.R, target_modules: str | Sequence[str] = recipe.TARGET_MODULES,
             gradient_checkpointing: bool | None = None,
             optimizer: str = "adamw", dtype: str | torch.dtype | None = None, quant: str = "nf4",
             double_quant: bool = True, kbit_upcast: bool = True, adapter_dtype: str | torch.dtype = torch.float32,
             attention: str = "sdpa", overhead_gib: float = 0.5, device: str | None = None) -> Estimate:
    """Estimate the peak training memory of full fine-tuning, LoRA or QLoRA, component by component.

    model: a preset name (sized from its config numbers on the meta device: nothing is downloaded), a
    transformers config, or a loaded model. method: "full", "lora" or "qlora".
    max_length, batch, r, target_modules: the run's, by peft's and TRL's names; the defaults are ftlib.recipe's, the
    ones train.train uses, so an estimate describes the run that trains (peft's matching rules for the targets).
    gradient_checkpointing: None = recipe.gradient_checkpointing(device), as train.train decides it: on a GPU only.
    optimizer: "adamw" (two moments in the trainable parameters' dtype: 8 B for fp32), "adamw_8bit" /
    "paged_adamw_8bit" (~2 B) or "sgd" (0 B).
    dtype: dtype of the weights that are not quantized. None: fp32 for full fine-tuning (mixed precision keeps
    fp32 master weights; fp16 training needs them) and fp16 for the frozen base of LoRA/QLoRA. Activations are
    16-bit unless you pass dtype=float32 (CPU training, no autocast).
    device: "cuda" or "cpu", which kernel folds the logits tiles (below). None: "cpu" for dtype=float32, else "cuda".

    What each component assumes:
    - weights: parameters x bytes. QLoRA: every Linear except lm_head in NF4 (quant_bytes(): 0.516 B with
      double quantization); embeddings, norms and lm_head in fp32 when kbit_upcast (prepare_model_for_kbit_training
      casts them), else in dtype. LoRA adapters in adapter_dtype (fp32: peft's default, and fp16 training needs
      it). Under 16-bit autocast, torch caches a 16-bit copy of every fp32 trainable matmul weight: +2 B each.
    - trainable parameters: full = all (tied embeddings once); LoRA = r x (in + out) per targeted Linear.
    - gradients: one per trainable parameter, in its dtype.
    - activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
      eq. 1): per layer s*b*h*(34 + 5*a*s/h) bytes in 16-bit without recomputation (s = max_length, b = batch,
      h = hidden size, a = attention heads). The 5*a*s/h term is the stored s x s attention scores:
      attention="eager" keeps it; "sdpa" (transformers' default, whose fused kernels on a T4 and on CPU store no
      scores) drops it; measured on SmolLM2 on CPU, 34*s*b*h per layer came within 5% of autograd's saved bytes.
      With gradient checkpointing only the layer inputs stay, 2*s*b*h bytes per layer, plus one layer's
      activations while it is recomputed. The loss: TRL's fused LM head (SFTTrainer, so train.train and measure)
      never holds the b x s x vocab logits, only one tile of min(b*s, 4096) x min(vocab, 32768) logits (9.25 fp32
      tiles in the torch fallback on CPU, see CPU_HEAD_TILES) plus its input and that input's fp32 gradient; under
      checkpointing it runs before any layer is recomputed, so it counts once with that layer, as the larger.
      QLoRA adds one dequantized weight matrix. LoRA and QLoRA keep all of this: gradients must flow back
      through the frozen base to reach the adapters. fp32 activations (CPU) double the layer terms.
    - total: the peak is either at the start of backward (activations + the output layer's gradient) or at the
      optimizer step (all gradients), never both: see Estimate.total. Fused AdamW (the Trainer's default) updates
      in place, with no temporaries.
    - overhead: overhead_gib for the CUDA context (~0.3-0.4 GiB) plus allocator slack and fragmentation; on CPU
      the interpreter and its libraries take about as much (measured: 0.5 GiB of RSS before any model).
    Not counted: lora_dropout's copies of each adapted layer's input and paging (paged optimizers move state to
    CPU RAM under pressure, so they can exceed the GPU).
    Taught in notebook 02.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, not {optimizer!r}")
    arch = architecture.of(model)
    base_dtype = _dtype(dtype) if dtype is not None else (torch.float32 if method == "full" else torch.float16)
    act_bytes = 2 if dtype is None or _size(base_dtype) == 2 else 4
    mixed = act_bytes == 2  # 16-bit autocast over fp32 weights
    notes: dict[str, str] = {}

    # weights and what is trained
    adapter_bytes = 0
    if method == "full":
        trainable = arch.params
        weight_bytes = arch.params * _size(base_dtype)
        train_dtype = base_dtype
        notes["weights"] = f"{arch.params / 1e9:.3g} B parameters x {_size(base_dtype)} B ({base_dtype})".replace(
            "torch.", "")
        amp_copy = 2 * arch.matmul_params if mixed and _size(base_dtype) == 4 else 0
    else:
        targeted = arch.targeted(target_modules)
        if not targeted:
            raise ValueError(f"no Linear layer of {arch.label} matches target_modules={target_modules!r}")
        trainable = sum(r * (i + o) for _, i, o in targeted)
        train_dtype = _dtype(adapter_dtype)
        adapter_bytes = trainable * _size(train_dtype)
        if method == "qlora":
            q = quant_bytes(quant, double_quant)
            scales = 4 * sum(o for _, _, o in arch.linears) if quant == "int8" else 0
            rest_dtype = torch.float32 if kbit_upcast else base_dtype
            rest = arch.params - arch.quantizable
            base_bytes = int(arch.quantizable * q) + scales + rest * _size(rest_dtype)
            notes["weights"] = (f"{arch.quantizable / 1e9:.3g} B in {quant}{'+DQ' if double_quant else ''} "
                                f"({q:.3f} B each) + {rest / 1e9:.3g} B in {rest_dtype} + adapters").replace(
                "torch.", "")
        else:
            base_bytes = arch.params * _size(base_dtype)
            notes["weights"] = f"{arch.params / 1e9:.3g} B frozen in {base_dtype} + adapters".replace("torch.", "")
        weight_bytes = base_bytes + adapter_bytes
        amp_copy = 2 * trainable if mixed and _size(train_dtype) == 4 else 0
    if amp_copy:
        notes["weights"] += " + autocast's 16-bit copy of fp32 trainable weights"
    weight_bytes += amp_copy
    gradients = trainable * _size(train_dtype)
    per_state = OPTIMIZERS[optimizer]
    optimizer_state = int(trainable * (2 * _size(train_dtype) if per_state is None else per_state))
    notes["gradients"] = f"{trainable:,} trainable x {_size(train_dtype)} B"
    notes["optimizer_state"] = (f"{optimizer}: {2 * _size(train_dtype) if per_state is None else per_state:.3g} B "
                                "per trainable parameter")

    # activations: Korthikanti et al. 2022, eq. 1 (16-bit, no recomputation), per transformer layer:
    #   s*b*h*(34 + 5*a*s/h) bytes; with checkpointing: 2*s*b*h per layer + one full layer being recomputed.
    if attention not in ("sdpa", "eager"):
        raise ValueError(f"attention must be 'sdpa' or 'eager', not {attention!r}")
    s, b, h, a = max_length, batch, arch.hidden, arch.heads
    per_layer = (s * b * h * 34 + (5 * a * s * s * b if attention == "eager" else 0)) * act_bytes // 2
    device = device or ("cpu" if act_bytes == 4 else "cuda")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', not {device!r}")
    gc_on = recipe.gradient_checkpointing(device) if gradient_checkpointing is None else bool(gradient_checkpointing)
    tile = min(b * s, HEAD_TILE[0]) * min(arch.vocab, HEAD_TILE[1])
    head = tile * (4 * CPU_HEAD_TILES if device == "cpu" else act_bytes) + b * s * h * (act_bytes + 4)
    if gc_on:  # the layers' inputs stay; the head and then each recomputed layer come and go one at a time
        layer_bytes = arch.layers * 2 * s * b * h * act_bytes // 2 + max(per_layer, head)
    else:
        layer_bytes = arch.layers * per_layer + head
    dequant = max((i * o for _, i, o in arch.linears), default=0) * act_bytes if method == "qlora" else 0
    activations = layer_bytes + dequant
    rule = "2sbh per layer + one layer" if gc_on else "s·b·h·(34+5as/h) per layer"
    notes["activations"] = (f"Korthikanti 2022: {rule}" + (", no s² scores (sdpa)" if attention == "sdpa" else "")
                            + f" + one logits tile of TRL's fused LM head ({device})")
    head_gradient = arch.head[1] * arch.head[2] * 4 if method == "full" and arch.head else 0  # fp32 accumulator
    overhead = int(overhead_gib * GIB)
    notes["overhead"] = f"{overhead_gib:g} GiB assumed: CUDA context + allocator slack"
    return Estimate(arch.label, method, max_length, batch, None if method == "full" else r, gc_on, optimizer,
                    str(base_dtype).removeprefix("torch."), arch.params, trainable, int(weight_bytes), int(gradients),
                    optimizer_state, int(activations), overhead, int(adapter_bytes), notes, head_gradient)


def frame(items: Sequence):
    """Estimates and/or measurements as a DataFrame, one row each, components in GiB. Taught in notebook 02."""
    import pandas as pd

    return pd.DataFrame([item.record() for item in items])


def t4_table(names: Sequence[str] | None = None, seqs: Sequence[int] = (512, 1024, 2048),
             batches: Sequence[int] = (1, 2, 4), methods: Sequence[str] = METHODS, gib: float = T4_GIB, **kwargs):
    """Which preset trains how on a T4: one row per (preset, method, seq, batch) with the estimated GiB and fits.

    names: presets (default: all but tiny-random); kwargs go to estimate() (e.g. gradient_checkpointing=True).
    Taught in notebook 02.
    """
    import pandas as pd

    names = list(names) if names is not None else [n for n in models.PRESETS if n != "tiny-random"]
    rows = []
    for name in names:
        for method in methods:
            for seq in seqs:
                for batch in batches:
                    e = estimate(name, method, max_length=seq, batch=batch, **kwargs)
                    rows.append({"preset": name, "method": method, "seq": seq, "batch": batch,
                                 "GiB": round(e.total / GIB, 2), "fits": e.fits(gib)})
    return pd.DataFrame(rows)

"""How much memory does fine-tuning need? Estimate it, measure it, set it beside published figures (notebook 02).

    est = memory.estimate("llama-3.1-8b", "qlora", max_length=1024, batch=1)  # sized on the meta device: no download
    est.fits(15.0)                                                          # a free Colab / Kaggle T4
    got = memory.measure("smollm2-135m", "lora", steps=3)                   # a few real Trainer steps on this machine
    memory.plot([memory.estimate("smollm2-135m", "lora", max_length=128, batch=4, dtype="float32"), got])
    memory.t4_table(); memory.published(); memory.compare_published(); memory.calculator()

Every figure is in bytes inside the dataclasses and in GiB (2**30 bytes) in tables and plots. The components
are the same for an estimate and a measurement: weights, gradients, optimizer_state, activations, overhead.
"""

from __future__ import annotations

import gc
import html
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import datasets
import torch
from torch import nn
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils import logging as hf_logging
from trl import SFTConfig

from ftlib import env, models, recipe
from ftlib.train import CourseSFTTrainer

GIB = 2**30
T4_GIB = 15.0  # a "16 GB" T4 as Colab and Kaggle offer it: about 15 GiB usable (ECC and the driver take the rest)
T4_FP16_TFLOPS = 65.0  # NVIDIA T4 datasheet: peak fp16 tensor-core throughput (mixed precision)
METHODS = ("full", "lora", "qlora")
COMPONENTS = ("weights", "gradients", "optimizer_state", "activations", "overhead")
# TRL's fused LM head (trl.kernels.chunked_logprob, what SFTTrainer trains through): logits in tiles of at most
# 4096 tokens x 32768 vocabulary columns, never the whole batch x seq x vocab. On a GPU a Triton kernel folds each
# tile in place; TRL's torch fallback (CPU) keeps more tile-sized fp32 tensors alive in backward (_backward_tile):
# the tile, y, z, log_p, p, grad, is_target (1 byte: 0.25), is_target.float(), its difference with p and that times
# the incoming gradient = 9.25 tiles (9.5 measured on smollm2's shapes).
HEAD_TILE = (4096, 32768)
CPU_HEAD_TILES = 9.25
TIGHT = 0.9  # above this share of the card an estimate is "tight": real peaks run higher (see compare_published)

# bytes of optimizer state per trainable parameter; None: two moments in the parameter's own dtype, as
# torch.optim.AdamW keeps them (8 B for fp32 parameters, 4 B for pure bf16 ones).
OPTIMIZERS: dict[str, float | None] = {
    "adamw": None,
    "adamw_8bit": 2 + 2 * 4 / 256,  # bitsandbytes: two uint8 moments + one fp32 absmax per 256-value block each
    "paged_adamw_8bit": 2 + 2 * 4 / 256,  # same bytes; pages to CPU RAM when the GPU runs short
    "sgd": 0.0,  # plain SGD without momentum keeps no state
}
_TRAINER_OPTIM = {"adamw": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
                  "sgd": "sgd"}

# Architecture numbers of the models in the published tables (LLaMA-1 and Llama-2 config.json), so that
# compare_published() sizes the very models the sources trained.
REFERENCE_ARCH = {
    "llama-7b": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                 "tie_word_embeddings": False},
    "llama-13b": {"model_type": "llama", "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
                  "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000,
                  "tie_word_embeddings": False},
    "llama-33b": {"model_type": "llama", "hidden_size": 6656, "intermediate_size": 17920, "num_hidden_layers": 60,
                  "num_attention_heads": 52, "num_key_value_heads": 52, "vocab_size": 32000,
                  "tie_word_embeddings": False},
    "llama-65b": {"model_type": "llama", "hidden_size": 8192, "intermediate_size": 22016, "num_hidden_layers": 80,
                  "num_attention_heads": 64, "num_key_value_heads": 64, "vocab_size": 32000,
                  "tie_word_embeddings": False},
    "llama-2-70b": {"model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                    "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 32000,
                    "tie_word_embeddings": False},
}


# --- what a model is made of --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Arch:
    label: str
    linears: tuple[tuple[str, int, int], ...]  # (module name, in, out) of every nn.Linear except the output head
    head: tuple[str, int, int] | None  # the output embedding (lm_head): never quantized, never "all-linear"
    params: int  # unique parameters: tied embeddings once, 4-bit weights as in x out
    hidden: int
    heads: int
    head_dim: int
    layers: int
    vocab: int
    lora_targets: tuple[str, ...] | None

    @property
    def quantizable(self) -> int:
        return sum(i * o for _, i, o in self.linears)

    @property
    def matmul_params(self) -> int:
        return self.quantizable + (self.head[1] * self.head[2] if self.head else 0)


def _text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _arch_of_module(model: nn.Module, label: str, lora_targets: tuple[str, ...] | None = None) -> _Arch:
    if hasattr(model, "peft_config"):
        raise TypeError("memory.estimate sizes a base model: pass it before get_peft_model() wraps it")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    seen: set[int] = set()
    params, linears, head_entry = 0, [], None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):  # bitsandbytes' Linear4bit / Linear8bitLt are nn.Linear too
            entry = (name, module.in_features, module.out_features)
            if module is head:
                head_entry = entry
            else:
                linears.append(entry)
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # a tied lm_head shares the embedding matrix: count it once
                continue
            seen.add(id(p))
            linear_weight = isinstance(module, nn.Linear) and pname == "weight"
            params += module.in_features * module.out_features if linear_weight else p.numel()
    cfg = _text_config(model.config)
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return _Arch(label, tuple(linears), head_entry, params, cfg.hidden_size, heads, head_dim,
                 cfg.num_hidden_layers, cfg.vocab_size, lora_targets)


def _meta_model(config):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes without memory: an 8B model sizes in a second on a laptop
        return AutoModelForCausalLM.from_config(config)


def _config_from_arch(arch: dict):
    from transformers import AutoConfig

    numbers = dict(arch)
    return AutoConfig.for_model(numbers.pop("model_type"), **numbers)


@lru_cache(maxsize=64)
def _arch_of_name(name: str) -> _Arch:

    if name in models.PRESETS:
        preset = models.PRESETS[name]
        return _arch_of_module(_meta_model(_config_from_arch(preset.arch)), name, preset.lora_targets)
    if name in REFERENCE_ARCH:
        return _arch_of_module(_meta_model(_config_from_arch(REFERENCE_ARCH[name])), name)
    raise ValueError(f"unknown model {name!r}: pass a preset name ({', '.join(models.PRESETS)}), "
                     "a transformers config or a model")


def _arch(model) -> _Arch:
    from transformers import PretrainedConfig

    if isinstance(model, str):
        return _arch_of_name(model)
    if isinstance(model, PretrainedConfig):
        return _arch_of_module(_meta_model(model), getattr(model, "_name_or_path", "") or model.model_type)
    if isinstance(model, nn.Module):
        label = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        return _arch_of_module(model, Path(label).name or label)
    raise TypeError(f"estimate() takes a preset name, a config or a model, not {type(model).__name__}")


def _targeted(arch: _Arch, target_modules) -> list[tuple[str, int, int]]:
    """The Linear layers LoRA adapts, by peft's own rules (peft.tuners.tuners_utils.check_target_module_exists)."""
    if isinstance(target_modules, str):
        if target_modules.lower() == "all-linear":  # every Linear except the output layer, as peft does
            return list(arch.linears)
        candidates = list(arch.linears) + ([arch.head] if arch.head else [])
        return [entry for entry in candidates if re.fullmatch(target_modules, entry[0])]
    names = set(target_modules)
    candidates = list(arch.linears) + ([arch.head] if arch.head else [])
    return [e for e in candidates if e[0] in names or any(e[0].endswith(f".{t}") for t in names)]


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
    Taught in notebook 02.
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
    config = _text_config(config)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * tokens * batch * _size(_dtype(dtype))


# --- the estimate ---------------------------------------------------------------------------------------------

def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:,.2f} GiB" if n >= GIB / 10 else f"{n / 2**20:,.1f} MiB"


def _table_html(title: str, rows: list[tuple[str, str, str]], footer: str) -> str:
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(a)}</th><td style='text-align:right'>"
                   f"{html.escape(b)}</td><td style='text-align:left'>{html.escape(c)}</td></tr>" for a, b, c in rows)
    return (f"<b>{html.escape(title)}</b><table>{body}</table>"
            f"<div style='margin-top:4px'>{html.escape(footer)}</div>")


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

    def fits(self, gib: float = T4_GIB) -> bool:
        """True when the total fits in `gib` GiB (15 GiB: what a 16 GB T4 gives PyTorch)."""
        return self.total <= gib * GIB

    def verdict(self, gib: float = T4_GIB) -> str:
        """'fits', 'tight' (over 90% of the card: real peaks run higher, so test it) or 'does not fit'."""
        return "does not fit" if not self.fits(gib) else "tight" if self.total > TIGHT * gib * GIB else "fits"

    def rows(self) -> list[tuple[str, str, str]]:
        """(component, size, what it assumes) rows, total last."""
        rows = [(c.replace("_", " "), _gib(getattr(self, c)), self.notes.get(c, "")) for c in COMPONENTS]
        return rows + [("total", _gib(self.total), f"peak: gradients and activations do not peak together; "
                                                   f"trainable parameters: {self.trainable_params:,} of "
                                                   f"{self.params:,}")]

    def _title(self) -> str:
        gc_text = "on" if self.gradient_checkpointing else "off"
        r = f", r={self.r}" if self.method != "full" else ""
        return (f"{self.model} · {self.method}{r} · seq {self.max_length} × batch {self.batch} · "
                f"gradient checkpointing {gc_text} · {self.optimizer} · {self.dtype} ({self.kind})")

    def _footer(self) -> str:
        return f"on a {T4_GIB:g} GiB T4: {self.verdict()}"

    def __repr__(self) -> str:
        width = max(len(a) for a, _, _ in self.rows())
        lines = [f"  {a:<{width}}  {b:>11}  {c}" for a, b, c in self.rows()]
        return "\n".join([self._title(), *lines, "  " + self._footer()])

    def _repr_html_(self) -> str:
        return _table_html(self._title(), self.rows(), self._footer())

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
    arch = _arch(model)
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
        targeted = _targeted(arch, target_modules)
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


# --- the measurement ---------------------------------------------------------------------------------------

def _tensor_bytes(tensors) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            continue
        key = (t.data_ptr(), t.nbytes)
        if key not in seen:
            seen.add(key)
            total += t.nbytes
    return total


def _quant_state_tensors(p) -> list[torch.Tensor]:
    state = getattr(p, "quant_state", None)
    out = []
    while state is not None:  # double quantization nests a second QuantState in state2
        out += [getattr(state, k, None) for k in ("absmax", "code", "offset")]
        state = getattr(state, "state2", None)
    return [t for t in out if isinstance(t, torch.Tensor)]


def _weight_bytes(model) -> int:
    params = list({id(p): p for p in model.parameters()}.values())
    return _tensor_bytes(params + [t for p in params for t in _quant_state_tensors(p)] + list(model.buffers()))


def _grad_bytes(model) -> int:
    return _tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)


def _optimizer_bytes(optimizer) -> int:
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    return _tensor_bytes(t for state in inner.state.values() for t in state.values())


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise), so RSS means now."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    try:  # Linux: writing 5 resets the process's peak RSS (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _SavedForBackward:
    """Bytes autograd keeps for the backward pass during one forward: the activations, measured exactly.

    A saved_tensors_hooks context around the model's forward sees every tensor an op saves (each storage counted
    once, parameters excluded). Under gradient checkpointing the checkpoint's own hooks take over inside each
    layer, so what remains is what stays: the inputs of each checkpointed layer, counted by a pre-hook.
    """

    def __init__(self, model: nn.Module):
        self.params = {_storage(p)[0] for p in model.parameters()}
        self.current: dict[int, int] = {}
        self.peak = 0
        self._context = None
        self._handles = [model.register_forward_pre_hook(self._begin), model.register_forward_hook(self._end)]
        try:
            from transformers.modeling_layers import GradientCheckpointingLayer
        except ImportError:  # older transformers
            GradientCheckpointingLayer = ()  # noqa: N806
        for module in model.modules():
            if GradientCheckpointingLayer and isinstance(module, GradientCheckpointingLayer):
                self._handles.append(module.register_forward_pre_hook(self._layer_input))

    def _record(self, t) -> None:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            ptr, nbytes = _storage(t)
            if ptr not in self.params:
                self.current[ptr] = nbytes

    def _pack(self, t):
        self._record(t)
        return t

    def _begin(self, module, args) -> None:
        if torch.is_grad_enabled() and module.training and self._context is None:
            self.current = {}
            self._context = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
            self._context.__enter__()

    def _end(self, module, args, output) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None
            self.peak = max(self.peak, sum(self.current.values()))

    def _layer_input(self, module, args) -> None:
        if self._context is not None and getattr(module, "gradient_checkpointing", False) and module.training:
            for t in args:  # the checkpoint keeps the layer's inputs to recompute it
                self._record(t)

    def remove(self) -> None:
        self._end(None, None, None)
        for handle in self._handles:
            handle.remove()


def _storage(t: torch.Tensor) -> tuple[int, int]:
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):
        return t.data_ptr(), t.nbytes


def _sampler_callback(cuda: bool, interval: float = 0.005):
    from transformers import TrainerCallback

    class MemorySampler(TrainerCallback):
        """Samples memory at every step (and RSS every few ms in a thread) while the Trainer trains."""

        def __init__(self):
            self.weights = self.gradients = self.optimizer_state = self.activations = 0
            self.rss_begin = self.peak_rss = 0
            self.cuda_begin = 0
            self.step_times: list[float] = []
            self._t0 = 0.0
            self._stop = threading.Event()
            self._thread: threading.Thread | None = None
            self._saved: _SavedForBackward | None = None

        def _watch(self):
            while not self._stop.wait(interval):
                self.peak_rss = max(self.peak_rss, _rss())

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            gc.collect()
            self.weights = _weight_bytes(model)
            self._saved = _SavedForBackward(model)
            self.rss_begin = self.peak_rss = _rss()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.cuda_begin = torch.cuda.memory_allocated()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
            # after optimizer.step() and before zero_grad(): gradients and optimizer state both exist
            self.gradients = max(self.gradients, _grad_bytes(model))
            if optimizer is not None:
                self.optimizer_state = max(self.optimizer_state, _optimizer_bytes(optimizer))
            self.peak_rss = max(self.peak_rss, _rss())

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.step_times.append(time.perf_counter() - self._t0)
            self.peak_rss = max(self.peak_rss, _rss())

        def on_train_end(self, args, state, control, **kwargs):
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            if self._saved is not None:
                self.activations = self._saved.peak
                self._saved.remove()

    return MemorySampler()


def _token_rows(tokenizer, n: int, max_length: int, lang: str):
    """n rows of the course's train split: chat template over prompt + completion, truncated to max_length."""
    from datasets import Dataset

    from ftlib import data

    train = data.course_dataset(lang)["train"]
    rows = [train[i % len(train)] for i in range(n)]
    texts = [tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
    enc = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=False)
    return Dataset.from_dict({"input_ids": enc["input_ids"]})


@dataclass(repr=False)
class Measurement(Estimate):
    """Memory measured over a few real Trainer steps; same components as Estimate, plus the raw readings.

    weights / gradients / optimizer_state: sums of tensor bytes (parameters with their 4-bit constants, p.grad,
    optimizer.state). activations: the bytes autograd saved for backward in one forward (saved_tensors_hooks).
    overhead: the peak (CUDA max_memory_allocated on a GPU, peak RSS on CPU) minus all of those: interpreter and
    libraries (CPU), temporaries such as the loss's logits tiles, allocator slack (glibc keeps freed heap: with
    MALLOC_MMAP_THRESHOLD_=131072 in the environment RSS follows live memory, at a cost in s/step).
    The components need not peak together (backward frees activations while gradients fill), so for full
    fine-tuning that remainder is smaller than the interpreter alone would suggest.
    """

    device: str = "cpu"
    steps: int = 0
    peak_rss: int | None = None
    cuda_peak: int | None = None
    seconds_per_step: float = 0.0
    first_loss: float = float("nan")
    loss: float = float("nan")
    checkpoint_bytes: int | None = None

    kind = "measured"

    @property
    def total(self) -> int:
        """The measured peak: CUDA max_memory_allocated on a GPU, peak RSS on CPU."""
        peak = self.cuda_peak if self.cuda_peak is not None else self.peak_rss
        return peak if peak is not None else sum(getattr(self, c) for c in COMPONENTS)

    def rows(self) -> list[tuple[str, str, str]]:
        """(component, size, how it was read) rows, then total, peak readings, speed and loss."""
        rows = super().rows()
        rows.append(("peak RSS", _gib(self.peak_rss), "resident memory of this process (psutil, /proc VmHWM)"))
        if self.cuda_peak is not None:
            rows.append(("CUDA peak", _gib(self.cuda_peak), "torch.cuda.max_memory_allocated()"))
        rows.append(("speed", f"{self.seconds_per_step:.2f} s/step", f"median of {self.steps} steps on {self.device}"))
        rows.append(("loss", f"{self.first_loss:.3f} → {self.loss:.3f}", f"after {self.steps} steps"))
        if self.checkpoint_bytes is not None:
            what = (f"adapter folder on disk; the base weights it rides on: {_gib(self.weights - self.adapter_weights)}"
                    if self.method != "full" else "the full model's state dict (not written)")
            rows.append(("checkpoint", _gib(self.checkpoint_bytes), what))
        return rows

    def _footer(self) -> str:
        return f"measured on {self.device}; total = {'CUDA peak' if self.cuda_peak is not None else 'peak RSS'}"

    def record(self) -> dict:
        """One flat dict, as Estimate.record() plus peak readings, s/step and loss."""
        row = super().record()
        row.update({"peak_rss_gib": None if self.peak_rss is None else self.peak_rss / GIB,
                    "cuda_peak_gib": None if self.cuda_peak is None else self.cuda_peak / GIB,
                    "seconds_per_step": self.seconds_per_step, "loss": self.loss, "device": self.device})
        return row


def measure(model="smollm2-135m", method: str = "lora", steps: int = 3, max_length: int = recipe.MAX_LENGTH,
            batch: int = recipe.BATCH, r: int = recipe.R, target_modules: str | Sequence[str] = recipe.TARGET_MODULES,
            gradient_checkpointing: bool | None = None, optimizer: str = "adamw",
            learning_rate: float = recipe.LEARNING_RATE, lora_dropout: float = 0.0, lang: str = "en",
            seed: int = 0) -> Measurement:
    """Train `steps` real steps with TRL's SFTTrainer, built as train.train builds it, and report the memory they took.

    model: a preset name (loaded fresh by recipe.prepare: fp32 for full fine-tuning, 4-bit NF4 for QLoRA) or a
    (model, tokenizer) pair, which is changed in place (LoRA layers, training), so pass a fresh one; for "qlora" it
    must be loaded in 4 bits. The defaults are ftlib.recipe's, as in estimate() and train.train;
    gradient_checkpointing None = recipe.gradient_checkpointing() for this machine. Data: the course's train rows,
    chat template over prompt + completion, padded to max_length; labels = input_ids with padding masked
    (SFTTrainer's collator), loss through TRL's fused LM head (no full logits), optimizer "adamw" = the Trainer's
    default fused AdamW, a constant learning rate. lora_dropout stays 0 by default because dropout keeps a copy of
    every adapted layer's input, which estimate() does not count.
    Taught in notebook 02.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, not {optimizer!r}")
    cuda = env.device() == "cuda"
    gc_on = recipe.gradient_checkpointing() if gradient_checkpointing is None else bool(gradient_checkpointing)
    env.seed_everything(seed)
    _release_freed_memory()
    name = model if isinstance(model, str) else Path(getattr(model[0].config, "_name_or_path", "")
                                                      or type(model[0]).__name__).name
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    lora = recipe.lora_config(r, lora_dropout=lora_dropout, target_modules=targets)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        net, tokenizer = recipe.prepare(model, method, lora, lang=lang)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    params = sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1) for p in net.parameters())  # 2 per byte
    dtype = str(next(p.dtype for p in net.parameters() if p.is_floating_point())).removeprefix("torch.")
    dataset = _token_rows(tokenizer, steps * batch, max_length, lang)
    sampler = _sampler_callback(cuda)
    with tempfile.TemporaryDirectory(prefix="ftlib-measure-") as tmp:
        args = SFTConfig(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch, learning_rate=learning_rate,
            lr_scheduler_type="constant", save_strategy="no", logging_steps=1, activation_checkpointing=gc_on,
            activation_checkpointing_kwargs={"use_reentrant": False}, optim=_TRAINER_OPTIM[optimizer],
            disable_tqdm=True, max_length=max_length, pad_to_multiple_of=max_length, **recipe.trainer_basics(seed))
        quiet_data = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # SFTTrainer's dataset preparation would print three progress bars
        try:
            trainer = CourseSFTTrainer(model=net, args=args, train_dataset=dataset, processing_class=tokenizer,
                                       callbacks=[sampler])
        finally:
            if not quiet_data:
                datasets.enable_progress_bars()
        for quiet in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(quiet)
        _release_freed_memory()  # what loading and quantizing left behind is not training memory
        hwm_reset = _reset_hwm()
        trainer.train()
        hwm = _hwm() if hwm_reset else None
        if method != "full":
            net.save_pretrained(Path(tmp) / "adapter")
            checkpoint = sum(f.stat().st_size for f in (Path(tmp) / "adapter").rglob("*") if f.is_file())
        else:
            checkpoint = _tensor_bytes({id(p): p for p in net.parameters()}.values())
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    peak_rss = max(sampler.peak_rss, hwm or 0)
    cuda_peak = torch.cuda.max_memory_allocated() if cuda else None
    peak = cuda_peak if cuda else peak_rss
    known = sampler.weights + sampler.gradients + sampler.optimizer_state + sampler.activations
    overhead = max(0, peak - known)
    notes = {"weights": "parameters + 4-bit quantization constants + buffers (tensor bytes)",
             "gradients": "p.grad bytes after the optimizer step", "optimizer_state": "optimizer.state tensor bytes",
             "activations": "bytes autograd saved for backward (saved_tensors_hooks), peak over the steps",
             "overhead": ("CUDA peak minus the above: temporaries, logits tiles, allocator" if cuda else
                          "peak RSS minus the above: Python, libraries, mapped model files, temporaries")}
    result = Measurement(
        name, method, max_length, batch, None if method == "full" else r, gc_on, optimizer, dtype, params,
        trainable, sampler.weights, sampler.gradients, sampler.optimizer_state, sampler.activations, overhead,
        sum(p.nbytes for p in net.parameters() if p.requires_grad) if method != "full" else 0, notes,
        device="cuda" if cuda else "cpu", steps=steps, peak_rss=peak_rss, cuda_peak=cuda_peak,
        seconds_per_step=statistics.median(sampler.step_times) if sampler.step_times else float("nan"),
        first_loss=losses[0] if losses else float("nan"), loss=losses[-1] if losses else float("nan"),
        checkpoint_bytes=checkpoint)
    del trainer, net
    _release_freed_memory()
    return result


# --- T4 table, published figures, and how they compare ------------------------------------------------------

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


HF_BLOG = ("https://huggingface.co/blog/4bit-transformers-bitsandbytes "
           "(github.com/huggingface/blog, 4bit-transformers-bitsandbytes.md, T4 table)")
LLAMA_FACTORY = ("https://github.com/hiyouga/LLaMA-Factory/blob/main/README.md#hardware-requirement "
                 "(read at commit 00409ff; marked '* estimated' there)")
QLORA_PAPER = "https://arxiv.org/abs/2305.14314 (Dettmers et al. 2023, QLoRA)"

# HF blog T4 table: (model, hardware / VRAM GB, method as written, quant, double quant, GC, seq, result). All rows:
# batch size 1, gradient accumulation 4, AdamW, TRL SFTTrainer.
_BLOG_ROWS = [
    ("llama-7b", "1x T4", 16, "LLM.int8 (8-bit) + GC", "int8", False, True, 512, True),
    ("llama-7b", "1x T4", 16, "LLM.int8 (8-bit) + GC", "int8", False, True, 1024, False),
    ("llama-7b", "1x T4", 16, "4bit + NF4 + bf16 CD + no GC", "nf4", False, False, 512, True),
    ("llama-7b", "1x T4", 16, "4bit + FP4 + bf16 CD + no GC", "fp4", False, False, 512, True),
    ("llama-7b", "1x T4", 16, "4bit + NF4 + bf16 CD + no GC", "nf4", False, False, 1024, False),
    ("llama-7b", "1x T4", 16, "4bit + FP4 + bf16 CD + no GC", "fp4", False, False, 1024, False),
    ("llama-7b", "1x T4", 16, "4bit + NF4 + bf16 CD + GC", "nf4", False, True, 1024, True),
    ("llama-13b", "2x T4", 32, "LLM.int8 (8-bit) + GC", "int8", False, True, 512, True),
    ("llama-13b", "1x T4", 16, "LLM.int8 (8-bit) + GC", "int8", False, True, 512, False),
    ("llama-13b", "1x T4", 16, "4bit + FP4 + bf16 CD + no GC", "fp4", False, False, 512, False),
    ("llama-13b", "1x T4", 16, "4bit + FP4 + fp16 CD + no GC", "fp4", False, False, 512, False),
    ("llama-13b", "1x T4", 16, "4bit + NF4 + fp16 CD + GC", "nf4", False, True, 512, True),
    ("llama-13b", "1x T4", 16, "4bit + NF4 + fp16 CD + GC", "nf4", False, True, 1024, False),
    ("llama-13b", "1x T4", 16, "4bit + NF4 + fp16 CD + GC + NQ", "nf4", True, True, 1024, True),
]
# LLaMA-Factory README "Hardware Requirement": method, bits, GB for 7B / 14B / 30B / 70B, rule for x B.
_FACTORY_ROWS = [
    ("Full (bf16 or fp16)", "full", 32, (120, 240, 600, 1200), "18x"),
    ("Full (pure_bf16)", "full", 16, (60, 120, 300, 600), "8x"),
    ("Freeze/LoRA/GaLore/APOLLO/BAdam", "lora", 16, (16, 32, 64, 160), "2x"),
    ("QLoRA", "qlora", 8, (10, 20, 40, 80), "x"),
    ("QLoRA", "qlora", 4, (6, 12, 24, 48), "x/2"),
    ("QLoRA", "qlora", 2, (4, 8, 16, 24), "x/4"),
]


def published():
    """Published memory figures to set beside the estimates, each row with its source.

    HF blog "Making LLMs even more accessible with bitsandbytes, 4-bit quantization and QLoRA" (2023): its T4
    table of LLaMA 7B/13B runs (OOM or not). LLaMA-Factory's README hardware table (GB per method and size,
    itself marked estimated). The QLoRA paper: 65B in <48 GB vs >780 GB for 16-bit full fine-tuning, 33B on
    24 GB, and its LLaMA-7B breakdown. Checked against the sources; numbers not found there are left out.
    Taught in notebook 02.
    """
    import pandas as pd

    rows = []
    for model, hardware, vram, setting, _, _, gc_on, seq, ok in _BLOG_ROWS:
        rows.append({"source_name": "HF blog (2023)", "model": model, "method": f"{setting}", "max_length": seq,
                     "batch": 1, "gradient_checkpointing": gc_on, "hardware": f"{hardware} / {vram} GB",
                     "figure": "No OOM" if ok else "OOM", "gb": None, "fits": ok,
                     "note": "batch 1, gradient accumulation 4, AdamW, TRL SFTTrainer", "source": HF_BLOG})
    for label, _, bits, gbs, rule in _FACTORY_ROWS:
        for size, gb in zip(("7B", "14B", "30B", "70B"), gbs, strict=True):
            rows.append({"source_name": "LLaMA-Factory README", "model": size, "method": f"{label}, {bits}-bit",
                         "max_length": None, "batch": None, "gradient_checkpointing": None, "hardware": "-",
                         "figure": f"{gb} GB (rule: {rule} GB for x B)", "gb": gb, "fits": None,
                         "note": "sequence length and batch not stated", "source": LLAMA_FACTORY})
    paper = [
        ("LLaMA 65B", "regular 16-bit full fine-tuning", "more than 780 GB", 780, None, "section 1"),
        ("LLaMA 65B", "QLoRA (NF4 + DQ, paged optimizers)", "< 48 GB: one 48 GB GPU", 48, True, "abstract, section 1"),
        ("LLaMA 33B", "QLoRA (NF4 + DQ, paged optimizers)", "one 24 GB GPU", 24, True, "section 4"),
        ("LLaMA 7B", "4-bit base model", "5,048 MB", 5.048, None, "section 2"),
        ("LLaMA 7B", "LoRA input gradients, batch 1, FLAN v2", "567 MB", 0.567, None, "section 2"),
        ("LLaMA 7B", "same, with gradient checkpointing", "18 MB per sequence", 0.018, None, "section 2"),
        ("LLaMA 7B", "LoRA parameters (0.2% of the weights)", "26 MB", 0.026, None, "section 2"),
        ("any", "double quantization constants", "0.127 bits/param (was 0.5)", None, None, "section 3"),
    ]
    for model, method, figure, gb, fits, where in paper:
        rows.append({"source_name": "QLoRA paper (2023)", "model": model, "method": method, "max_length": None,
                     "batch": 1 if "batch 1" in method else None, "gradient_checkpointing": None,
                     "hardware": "-", "figure": figure, "gb": gb, "fits": fits, "note": where,
                     "source": QLORA_PAPER})
    return pd.DataFrame(rows)


def compare_published():
    """Each published figure that names a setting, beside ftlib's estimate for that setting, and whether they agree.

    Where they agree: the static part. LLaMA-Factory's rules are bytes per parameter (18x = fp32 weights,
    gradients and AdamW moments plus autocast's 16-bit copy; 8x pure bf16; 2x LoRA; x/2 QLoRA) and ftlib's
    totals land within 35% of every 7B and 70B cell (mostly within 15%). The QLoRA paper's >780 GB for 65B is
    12 B/param (16-bit weights and gradients, fp32 Adam): ftlib's mixed precision default says more (18 B), so
    both say "far beyond one GPU". Its 65B in <48 GB holds with 16-bit adapters; with peft's fp32 adapters
    (16 B for each of the 800 M LoRA parameters at r=64) the estimate lands just above 48 GB. Its 7B 4-bit base
    (5,048 MB, a GPU reading) is within 15% of ftlib's tensor count.
    Where they do not: the HF blog's 2023 T4 runs (eager attention, bitsandbytes 0.39, LoRA rank unstated).
    Five of its OOM rows sit within 10% of the card in the estimate ("tight": either outcome is plausible), but
    two went out of memory where the estimate sees room: LLaMA-7B int8 + checkpointing at 1024 tokens and
    LLaMA-13B NF4 + checkpointing at 1024 (about 9.7 GiB estimated; adding double quantization, 0.6 GB less,
    made it fit, so that run peaked near 15 GiB). The blog gives no memory readings, so the missing 5 GiB
    cannot be attributed; candidates are allocator fragmentation, fp32 copies in the 2023 int8/4-bit backward,
    and temporaries the estimate leaves out (lora_dropout's input copies, the optimizer step, the logits'
    softmax). Lesson: treat the estimate as a lower bound, keep 10% headroom, and measure (memory.measure).
    Taught in notebook 02.
    """
    import pandas as pd

    rows = []
    for model, _hardware, vram, setting, quant, dq, gc_on, seq, ok in _BLOG_ROWS:
        limit = T4_GIB * vram / 16
        est = estimate(model, "qlora", max_length=seq, batch=1, quant=quant, double_quant=dq,
                       gradient_checkpointing=gc_on, target_modules=("q_proj", "v_proj"),
                       attention="eager")  # 2023: no SDPA for LLaMA in transformers yet
        verdict = est.verdict(limit)
        agrees = verdict == "tight" or est.fits(limit) == ok
        why = ("within 10% of the card: either outcome is plausible" if verdict == "tight" else "" if agrees else
               "the 2023 run peaked well above the estimate; the blog gives no memory reading or LoRA rank to "
               "tell why (see docstring)")
        rows.append({"source_name": "HF blog (2023)", "model": model, "setting": f"{setting}, seq {seq}",
                     "published": "No OOM" if ok else "OOM", "ftlib_gib": round(est.total / GIB, 1),
                     "ftlib": f"{verdict} ({limit:g} GiB)", "agrees": agrees, "why": why, "source": HF_BLOG})
    reference = {"7B": "llama-7b", "70B": "llama-2-70b"}
    for label, method, bits, gbs, rule in _FACTORY_ROWS:
        if bits == 2:
            continue  # 2-bit (AQLM/HQQ) is not modelled
        for size, gb in zip(("7B", "14B", "30B", "70B"), gbs, strict=True):
            if size not in reference:
                continue
            kwargs = {"gradient_checkpointing": True}
            if method == "full" and bits == 16:
                kwargs["dtype"] = torch.bfloat16
            if method == "lora":
                kwargs["dtype"] = torch.bfloat16
            if method == "qlora":
                kwargs["quant"] = "int8" if bits == 8 else "nf4"
            e = estimate(reference[size], method, max_length=512, batch=1, target_modules="all-linear", **kwargs)
            static = (e.weights + e.gradients + e.optimizer_state) / 1e9
            rows.append({"source_name": "LLaMA-Factory README", "model": f"{size} ({reference[size]})",
                         "setting": f"{label}, {bits}-bit (rule {rule})", "published": f"{gb} GB",
                         "ftlib_gib": round(e.total / GIB, 1),
                         "ftlib": f"{static:.0f} GB weights+grads+optimizer; {e.total / 1e9:.0f} GB total at "
                                  "seq 512, batch 1, GC",
                         "agrees": abs(e.total / 1e9 - gb) <= 0.35 * gb,
                         "why": "within 35%" if abs(e.total / 1e9 - gb) <= 0.35 * gb else
                                "different precision of optimizer state / activations assumed",
                         "source": LLAMA_FACTORY})
    e780 = estimate("llama-65b", "full", max_length=512, batch=1, gradient_checkpointing=True, attention="eager")
    rows.append({"source_name": "QLoRA paper (2023)", "model": "LLaMA 65B", "setting": "16-bit full fine-tuning",
                 "published": "more than 780 GB", "ftlib_gib": round(e780.total / GIB, 1),
                 "ftlib": f"{e780.total / 1e9:.0f} GB (fp32 master weights, mixed precision)",
                 "agrees": e780.total / 1e9 > 780, "why": "both far beyond any single GPU", "source": QLORA_PAPER})
    for adapter, why in ((torch.float32, "peft's fp32 adapters: 16 B per LoRA parameter, 800 M of them at r=64"),
                         (torch.bfloat16, "16-bit adapters, as in the paper (its paged optimizer can also spill "
                                          "state to CPU RAM)")):
        e48 = estimate("llama-65b", "qlora", max_length=512, batch=1, r=64, target_modules="all-linear",
                       adapter_dtype=adapter, attention="eager")
        rows.append({"source_name": "QLoRA paper (2023)", "model": "LLaMA 65B",
                     "setting": f"QLoRA r=64 all-linear, {str(adapter).removeprefix('torch.')} adapters, seq 512",
                     "published": "< 48 GB", "ftlib_gib": round(e48.total / GIB, 1),
                     "ftlib": f"{e48.total / 1e9:.1f} GB", "agrees": e48.total / 1e9 < 48, "why": why,
                     "source": QLORA_PAPER})
    e7 = estimate("llama-7b", "qlora")
    base = (e7.weights - e7.adapter_weights) / 1e6
    close = abs(base - 5048) <= 0.15 * 5048
    rows.append({"source_name": "QLoRA paper (2023)", "model": "LLaMA 7B", "setting": "4-bit base model",
                 "published": "5,048 MB", "ftlib_gib": round(base * 1e6 / GIB, 2),
                 "ftlib": f"{base:,.0f} MB (NF4+DQ linears, fp32 embeddings and lm_head)", "agrees": close,
                 "why": "within 15%: the paper's figure is a GPU reading, ours counts tensors only",
                 "source": QLORA_PAPER})
    return pd.DataFrame(rows)


# --- time -------------------------------------------------------------------------------------------------------

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
    arch = _arch(name)
    gc_on = (method == "qlora") if gradient_checkpointing is None else gradient_checkpointing
    forward = 2 * arch.matmul_params + 2 * arch.layers * max_length * arch.heads * arch.head_dim
    passes = (3 if method == "full" else 2) + (1 if gc_on else 0)
    rule = f"{2 * passes}·N·tokens ({'full' if method == 'full' else 'frozen base'}" + (
        ", + checkpoint recompute)" if gc_on else ")")
    return TrainingTime(arch.label, method, tokens, float(forward * passes * tokens), peak_tflops, efficiency, rule)


# --- plots and the calculator ------------------------------------------------------------------------------

_COLOURS = {"weights": "#4c72b0", "gradients": "#dd8452", "optimizer_state": "#55a868", "activations": "#c44e52",
            "overhead": "#8c8c8c"}


def plot(items, title: str | None = None):
    """Components of estimates and measurements side by side: grouped bars, one colour per item.

    Taught in notebook 02.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    items = [items] if isinstance(items, Estimate) else list(items)
    small = max(item.total for item in items) < GIB
    unit, scale = ("MiB", 2**20) if small else ("GiB", GIB)
    fig, ax = plt.subplots(figsize=(8, 3.4), layout="constrained")
    x = np.arange(len(COMPONENTS))
    width = 0.8 / len(items)
    for k, item in enumerate(items):
        values = [getattr(item, c) / scale for c in COMPONENTS]
        bars = ax.bar(x + (k - (len(items) - 1) / 2) * width, values, width, label=item.label,
                      hatch="//" if item.kind == "measured" else None, edgecolor="white")
        ax.bar_label(bars, fmt="%.0f" if small else "%.1f", fontsize=7)
    ax.set_xticks(x, [c.replace("_", " ") for c in COMPONENTS])
    ax.set(ylabel=unit, title=title or "Memory by component: estimate vs measurement")
    ax.legend(fontsize=8)
    return fig


def breakdown_figure(est: Estimate, gib: float = T4_GIB):
    """One stacked horizontal bar of an estimate's components, with the GPU's limit as a line.

    Gradients and activations do not peak together (Estimate.total): the smaller of the two is drawn pale, last.
    Taught in notebook 02.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.9), layout="constrained")
    pair = ("activations", "gradients")
    order = ("weights", "optimizer_state", "overhead", *(pair if est.activations >= est.gradients else pair[::-1]))
    left = 0.0
    for c in order:
        value, pale = getattr(est, c) / GIB, c == order[-1]
        ax.barh([0], [value], left=left, color=_COLOURS[c], alpha=0.35 if pale else 1.0,
                label=f"{c.replace('_', ' ')} {value:.1f}" + (" (not at the peak)" if pale else ""))
        left += value
    ax.axvline(gib, color="black", linestyle="--", linewidth=1.2)
    ax.text(gib, 0.45, f" {gib:g} GiB T4", va="center", fontsize=8)
    ax.set(xlim=(0, max(left, gib) * 1.08), yticks=[], xlabel="GiB", title=est._title())
    ax.title.set_fontsize(9)
    ax.legend(ncols=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.55), frameon=False)
    return fig


def calculator(gib: float = T4_GIB, preset: str = "qwen2.5-1.5b"):
    """Interactive memory calculator: preset, method, max_length, batch, r and checkpointing -> breakdown and verdict.

    Returns an ipywidgets VBox (its `.estimate` is the current Estimate); it only draws inside a running kernel,
    so executing it headless (papermill, tests) is safe.
    Taught in notebook 02.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt


    style = {"description_width": "110px"}
    choose = w.Dropdown(options=list(models.PRESETS), value=preset, description="model", style=style)
    method = w.ToggleButtons(options=list(METHODS), value="qlora", description="method", style=style)
    seq = w.SelectionSlider(options=[128, 256, 512, 1024, 2048, 4096], value=1024, description="max_length",
                            style=style)
    batch = w.IntSlider(value=1, min=1, max=16, description="batch", style=style)
    rank = w.SelectionSlider(options=[4, 8, 16, 32, 64, 128], value=16, description="LoRA r", style=style)
    checkpointing = w.Checkbox(value=True, description="gradient checkpointing", style=style)
    verdict = w.HTML()
    out = w.Output()
    box = w.VBox([choose, method, seq, batch, rank, checkpointing, verdict, out])

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
        try:
            from IPython import get_ipython

            live = get_ipython() is not None and getattr(get_ipython(), "kernel", None) is not None
        except ImportError:
            live = False
        if live:
            from IPython.display import display

            fig = breakdown_figure(est, gib)
            out.clear_output(wait=True)
            with out:
                display(fig)
            plt.close(fig)

    for widget in (choose, method, seq, batch, rank, checkpointing):
        widget.observe(redraw, names="value")
    redraw()
    return box

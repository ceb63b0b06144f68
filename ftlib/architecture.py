"""What a model is made of, read off its config on PyTorch's meta device: no download, no memory (notebook 02).

    arch = architecture.of("llama-3.1-8b")   # a preset name, a transformers config or a loaded model
    arch.params, arch.layers, arch.targeted("all-linear")

The estimate (ftlib.estimator) and the FLOP-based training time (ftlib.training_time) size a model from this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ftlib import models

# transformers is imported where a config or a meta model is built, not here: it adds about 3 s to importing this
# module (measured: 3.5 s -> 6.8 s with ftlib.models), and ftlib.plots imports the estimate for its memory charts.


def _llama(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int | None = None) -> dict:
    """config.json numbers of a LLaMA model with the 32,000-token vocabulary and an untied output layer."""
    return {"model_type": "llama", "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads or heads,
            "vocab_size": 32000, "tie_word_embeddings": False}


# Architecture numbers of the models in the published tables (LLaMA-1 and Llama-2 config.json), so that
# published.compare_published() sizes the very models the sources trained.
REFERENCE_ARCH = {
    "llama-7b": _llama(4096, 11008, 32, 32),
    "llama-13b": _llama(5120, 13824, 40, 40),
    "llama-33b": _llama(6656, 17920, 60, 52),
    "llama-65b": _llama(8192, 22016, 80, 64),
    "llama-2-70b": _llama(8192, 28672, 80, 64, kv_heads=8),
}


@dataclass(frozen=True)
class Arch:
    """The shapes that memory and FLOPs depend on: every Linear layer, the parameter count, the layer sizes."""

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
        """Weights of the Linear layers QLoRA stores in 4 bits: all but the output head."""
        return sum(i * o for _, i, o in self.linears)

    @property
    def matmul_params(self) -> int:
        """Weights that take part in a matmul per token: every Linear layer, the output head included."""
        return self.quantizable + (self.head[1] * self.head[2] if self.head else 0)

    def targeted(self, target_modules) -> list[tuple[str, int, int]]:
        """The Linear layers LoRA adapts, by peft's own rules (peft.tuners.tuners_utils.check_target_module_exists)."""
        candidates = list(self.linears) + ([self.head] if self.head else [])
        if isinstance(target_modules, str):
            if target_modules.lower() == "all-linear":  # every Linear except the output layer, as peft does
                return list(self.linears)
            return [entry for entry in candidates if re.fullmatch(target_modules, entry[0])]
        names = set(target_modules)
        return [e for e in candidates if e[0] in names or any(e[0].endswith(f".{t}") for t in names)]


def text_config(config):
    """The language model's part of a config (a multimodal config nests it). Used by of() and
    memory.kv_cache_bytes (notebooks 02 and 05).

    Used by memory.kv_cache_bytes (notebook 05)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def of(model) -> Arch:
    """The Arch of a preset name (sized on the meta device: nothing is downloaded), a transformers config or a model.

    Used by memory.estimate (notebook 02).
    """
    from transformers import PretrainedConfig

    if isinstance(model, str):
        return _of_name(model)
    if isinstance(model, PretrainedConfig):
        return _of_module(_meta_model(model), getattr(model, "_name_or_path", "") or model.model_type)
    if isinstance(model, nn.Module):
        label = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        return _of_module(model, Path(label).name or label)
    raise TypeError(f"estimate() takes a preset name, a config or a model, not {type(model).__name__}")


@lru_cache(maxsize=64)
def _of_name(name: str) -> Arch:
    if name in models.PRESETS:
        preset = models.PRESETS[name]
        return _of_module(_meta_model(_config(preset.arch)), name, preset.lora_targets)
    if name in REFERENCE_ARCH:
        return _of_module(_meta_model(_config(REFERENCE_ARCH[name])), name)
    raise ValueError(f"unknown model {name!r}: pass a preset name ({', '.join(models.PRESETS)}), "
                     "a transformers config or a model")


def _config(numbers: dict):
    """A transformers config from config.json numbers (model_type among them)."""
    from transformers import AutoConfig

    numbers = dict(numbers)
    return AutoConfig.for_model(numbers.pop("model_type"), **numbers)


def _meta_model(config):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes without memory: an 8B model sizes in a second on a laptop
        return AutoModelForCausalLM.from_config(config)


def _of_module(model: nn.Module, label: str, lora_targets: tuple[str, ...] | None = None) -> Arch:
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
    cfg = text_config(model.config)
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return Arch(label, tuple(linears), head_entry, params, cfg.hidden_size, heads, head_dim,
                cfg.num_hidden_layers, cfg.vocab_size, lora_targets)

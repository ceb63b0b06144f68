"""Fine-tuning with LoRA or QLoRA on TRL's SFTTrainer: the course's one training entry point (notebook 03).

    result = train("auto", data.course_dataset("en"), method="qlora", max_steps=40)
    result.history        # step, train loss, validation loss
    result.adapter_path   # the saved LoRA adapter

Completion-only loss (prompt masked, EOS trained), 4-bit base through bitsandbytes for QLoRA, the dtype
from ftlib.env, evaluation and checkpoints every N steps, early stopping with the best checkpoint kept,
resume after a disconnect, batches of rows of near-equal length to keep padding small, a live loss plot in Jupyter.
The same code runs under `accelerate launch` on several processes: `python -m ftlib.train --help`.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from ftlib import env, models

HEAD_NAMES = ("lm_head", "embed_out", "output", "score", "classifier")


def linear_names(model) -> list[str]:
    """The names of the Linear layers LoRA can adapt (4-bit and 8-bit ones too), output head excluded.

    Taught in notebook 03.
    """
    found = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and "lora_" not in name}
    return sorted(found - set(HEAD_NAMES))


def lora_config(model, r: int = 16, alpha: int | None = None, dropout: float = 0.05,
                target: str | list[str] = "all-linear"):
    """A peft LoraConfig for a causal LM: rank r, scale alpha (default 2r), on every Linear layer or on `target`.

    Taught in notebook 03.
    """
    from peft import LoraConfig

    names = linear_names(model) if target == "all-linear" else list(target)
    missing = set(names) - set(linear_names(model))
    if missing:
        raise ValueError(f"no Linear layers named {sorted(missing)}; this model has {linear_names(model)}")
    return LoraConfig(r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout, target_modules=names,
                      bias="none", task_type="CAUSAL_LM")


def fp32_trainables(model) -> None:
    """Store the trainable parameters (LoRA matrices, a new head) in fp32, whatever dtype the frozen base has.

    TRL stores QLoRA adapters in bf16 (the paper's choice); a T4 or a CPU has no fast bf16, and fp16 weights
    would lose small updates, so the course keeps them fp32. Taught in notebook 03.
    """
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()


def mix_general(dataset, general, ratio: float = 0.2, seed: int = 0):
    """Blend general rows into a task dataset against forgetting: ratio x len(dataset) general rows, shuffled.

    Both are prompt/completion datasets; general rows are sampled with replacement when too few.
    Taught in notebook 03.
    """
    import numpy as np
    from datasets import concatenate_datasets

    columns = ["prompt", "completion"]
    n = round(ratio * len(dataset))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(general), size=n, replace=n > len(general))
    extra = general.select(picked.tolist()).select_columns(columns)
    return concatenate_datasets([dataset.select_columns(columns), extra]).shuffle(seed=seed)


class LengthBuckets(torch.utils.data.Sampler):
    """A training order whose batches hold rows of near-equal length, so little of each batch is padding.

    The rows are sorted by length (ties in random order) and cut into batches; the full batches come in random
    order, the partial one last. New order each epoch, the same for the same seed and epoch (a resumed run gets
    the same batches). About 1% padding on the course data, where transformers' group_by_length sampler leaves
    5-9%: it sorts only within megabatches of 80 rows and puts the longest row into the first batch
    (bench/training.py). Taught in notebook 03.
    """

    def __init__(self, lengths: list[int], batch: int, seed: int = 0):
        self.lengths, self.batch, self.seed, self.epoch = lengths, batch, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = torch.Generator().manual_seed(self.seed + self.epoch)
        ties = torch.rand(len(self.lengths), generator=rng).tolist()
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], ties[i]))
        full = len(order) - len(order) % self.batch
        batches = [order[i:i + self.batch] for i in range(0, full, self.batch)]
        for k in torch.randperm(len(batches), generator=rng).tolist():
            yield from batches[k]
        yield from order[full:]


class CourseSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with two additions: batches of near-equal length (LengthBuckets) where the config asks for
    group_by_length, and a count of the tokens it trains on, all of them and the non-padding ones.

    Tokens are counted in `training_step`, which runs once per trained batch: evaluation batches and the batch the
    data loader builds ahead are never counted. Taught in notebook 03.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tokens = self.real = 0

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        dataset = self.train_dataset if train_dataset is None else train_dataset
        return LengthBuckets([len(ids) for ids in dataset["input_ids"]], self.args.per_device_train_batch_size,
                             self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    def training_step(self, model, inputs, num_items_in_batch=None):
        ids = inputs["input_ids"]
        self.tokens += ids.numel()
        self.real += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else ids.numel()
        return super().training_step(model, inputs, num_items_in_batch)


class StepClock(TrainerCallback):
    """Seconds spent in training steps (batches, forward, backward, optimizer, logging), with the evaluations and
    checkpoint saves between them left out. Taught in notebook 03.
    """

    def __init__(self):
        self.seconds, self.mark = 0.0, time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.seconds, self.mark = self.seconds + now - self.mark, now

    def restart(self, *args, **kwargs):
        """After an evaluation or a save, the clock starts again from now."""
        self.mark = time.perf_counter()

    on_train_begin = on_evaluate = on_save = restart


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


class LiveLoss(TrainerCallback):
    """Draws training and validation loss while training runs (in Jupyter; silent elsewhere).

    Redraws after each evaluation and at most every `every` seconds in between (a redraw costs time that
    training should get), and once at the end. Taught in notebook 03.
    """

    def __init__(self, title: str = "loss", every: float = 5.0):
        self.title, self.train, self.val, self.handle, self.fig = title, [], [], None, None
        self.every, self.drawn = every, float("-inf")

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.train.append((state.global_step, logs["loss"]))
        if "eval_loss" in logs:
            self.val.append((state.global_step, logs["eval_loss"]))
        due = "eval_loss" in logs or time.monotonic() - self.drawn >= self.every
        if due and state.is_world_process_zero and _in_notebook():
            self._draw(state.max_steps)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and _in_notebook():
            self._draw(state.max_steps)

    def _draw(self, max_steps: int) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
            plt.close(self.fig)  # shown through the display handle only
        ax = self.ax
        ax.clear()
        for points, label, style in [(self.train, "train", "-"), (self.val, "validation", "o-")]:
            if points:
                ax.plot(*zip(*points, strict=True), style, label=label)
        ax.set(xlabel="step", ylabel="loss", title=self.title, xlim=(0, max(max_steps, 1)))
        ax.legend()
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)
        self.drawn = time.monotonic()


@dataclass(repr=False)
class TrainResult:
    """What train() returns: where the adapter is, the loss history, the best step and the speed.

    `tokens` counts the non-padding tokens of the trained batches, `seconds` the time of the training steps;
    `wall_seconds` adds the evaluations, checkpoint saves and set-up, the time the whole train() call took.
    """

    adapter_path: Path
    history: pd.DataFrame
    best_step: int | None
    best_eval_loss: float | None
    tokens: int
    tokens_per_second: float
    real_token_share: float
    seconds: float
    wall_seconds: float
    trainable_params: int

    def summary(self) -> pd.Series:
        """The headline numbers as one Series."""
        return pd.Series({
            "adapter": str(self.adapter_path), "steps": int(self.history["step"].max()),
            "first train loss": self.history["train_loss"].dropna().iloc[0],
            "last train loss": self.history["train_loss"].dropna().iloc[-1],
            "best validation loss": self.best_eval_loss, "best step": self.best_step,
            "trainable parameters": self.trainable_params, "tokens trained (non-pad)": self.tokens,
            "tokens/s (non-pad)": round(self.tokens_per_second, 1),
            "non-pad share of batches": round(self.real_token_share, 3), "training seconds": round(self.seconds, 1),
            "wall seconds": round(self.wall_seconds, 1)})

    def __repr__(self) -> str:
        return self.summary().to_string()

    def _repr_html_(self) -> str:
        return self.summary().to_frame("").to_html()


def history_frame(log_history: list[dict]) -> pd.DataFrame:
    """Trainer's log history as one row per step: train_loss, eval_loss (NaN where not logged).

    Taught in notebook 03.
    """
    rows: dict[int, dict] = {}
    for entry in log_history:
        row = rows.setdefault(entry["step"], {"step": entry["step"]})
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        if "eval_loss" in entry:
            row["eval_loss"] = entry["eval_loss"]
    frame = pd.DataFrame(sorted(rows.values(), key=lambda r: r["step"]), columns=["step", "train_loss", "eval_loss"])
    return frame.astype({"step": int})


def sft_config(output_dir: str | Path, *, lr: float = 2e-4, max_steps: int = -1, epochs: float = 1.0,
               batch: int = 8, grad_accum: int = 1, max_length: int = 256, eval_steps: int = 10,
               save_steps: int | None = None, best: bool = False, gradient_checkpointing: bool | None = None,
               seed: int = 0, logging_steps: int = 1, warmup: float = 0.1, weight_decay: float = 0.0):
    """The SFTConfig the course trains with; every argument that matters is a parameter.

    Completion-only loss; length-grouped batches (little padding); evaluation and a checkpoint every
    `eval_steps`; the best checkpoint (lowest validation loss) kept and reloaded when `best`; precision
    flags from env.trainer_precision(); gradient checkpointing on a GPU by default. Taught in notebook 03.
    """
    from trl import SFTConfig

    on_gpu = env.device() == "cuda"
    checkpointing = on_gpu if gradient_checkpointing is None else gradient_checkpointing
    return SFTConfig(
        output_dir=str(output_dir), learning_rate=lr, max_steps=max_steps, num_train_epochs=epochs,
        per_device_train_batch_size=batch, per_device_eval_batch_size=max(batch, 8),  # evaluation needs no grads
        gradient_accumulation_steps=grad_accum,
        lr_scheduler_type="cosine", warmup_steps=warmup, weight_decay=weight_decay,
        max_length=max_length, completion_only_loss=True, train_sampling_strategy="group_by_length",
        eval_strategy="steps", eval_steps=eval_steps, eval_on_start=True,
        save_strategy="steps", save_steps=save_steps or eval_steps, save_total_limit=2,
        load_best_model_at_end=best, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=logging_steps, report_to=[], seed=seed, data_seed=seed,
        use_cpu=not on_gpu and env.device() != "mps", activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        dataloader_num_workers=0, **env.trainer_precision(),
    )


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete checkpoint in `output_dir`, or None.

    The Trainer writes trainer_state.json last, so a folder without it was cut off mid-save (a Colab
    disconnect during a checkpoint); it is skipped with a warning instead of crashing the resume.
    Taught in notebook 03.
    """
    from transformers.trainer_utils import sort_checkpoints

    for folder in reversed(sort_checkpoints(str(output_dir))):  # the Trainer's own order: by step
        if (Path(folder) / "trainer_state.json").is_file():
            return folder
        warnings.warn(f"{folder} is incomplete (the run was cut off while saving it); resuming from an earlier one",
                      stacklevel=2)
    return None


SUMMARY = "train_summary.json"  # TrainResult.summary() saved next to the adapter: steps, seconds, losses
CPU_FOCUS = ("returns_refunds", "contact_hours")  # facts that recur most (30 days, hours, phone, e-mail)


def course_settings(on_gpu: bool | None = None) -> dict:
    """Notebook 03's defaults: on a GPU a full epoch over all intents at lr 2e-4 with LoRA dropout 0.05; on a CPU
    30 steps of 8 rows at lr 3e-3 over two intents whose facts recur most (CPU_FOCUS), without dropout (its masks
    cost 15% of a CPU step and 30 steps are too few to overfit): about a minute and a half. Taught in notebook 03.
    """
    from ftlib import data

    on_gpu = env.device() == "cuda" if on_gpu is None else on_gpu
    common = {"batch": 8, "max_length": 384, "eval_steps": 10}
    if on_gpu:
        return {"focus": data.INTENTS, "max_steps": -1, "lr": 2e-4, "dropout": 0.05, **common}
    return {"focus": CPU_FOCUS, "max_steps": 30, "lr": 3e-3, "dropout": 0.0, **common}


def course_adapter(model: str = "auto", method: str = "qlora", lang: str = "en", seed: int = 0) -> Path:
    """Notebook 03's adapter for this model, method and language (under run_dir); trained again with
    course_settings() when it is missing, so later notebooks run on their own. Taught in notebook 04.
    """
    from ftlib import data

    adapter = run_dir(model, method, lang) / "adapter"
    if (adapter / "adapter_config.json").exists():
        return adapter
    print(f"{adapter} is missing: training it as notebook 03 does")
    settings = course_settings()
    focus = settings.pop("focus")
    dataset = data.course_dataset(lang).filter(lambda row: row["intent"] in focus)
    return train(model, dataset, method=method, lang=lang, seed=seed, **settings).adapter_path


def run_dir(model: str = "auto", method: str = "qlora", lang: str = "en") -> Path:
    """Where train.train keeps a run of a preset or hub id unless told otherwise: runs/03_<method>_<model>_<lang>.

    Taught in notebook 03; notebook 04 finds notebook 03's adapter there.
    """
    name = model if "/" in model else models.resolve(model, lang).name
    return env.runs_dir() / f"03_{method}_{name.replace('/', '_')}_{lang}"


def train(model="auto", dataset=None, output_dir: str | Path | None = None, method: str = "qlora", r: int = 16,
          alpha: int | None = None, dropout: float = 0.05, target: str | list[str] = "all-linear",
          early_stopping: int | None = None, resume: bool = False, live: bool = True, lang: str = "en",
          **config) -> TrainResult:
    """Fine-tune `model` (a preset name, a hub id, or a (model, tokenizer) pair) with LoRA or QLoRA.

    dataset: a DatasetDict with "train" and "validation" prompt/completion rows (data.course_dataset).
    method: "qlora" (4-bit NF4 base + LoRA) or "lora" (base in the compute dtype + LoRA).
    early_stopping: stop after this many evaluations without improvement and keep the best checkpoint.
    live: draw the loss while training (in Jupyter); False trains quietly (a progress bar at most).
    resume: continue from the last checkpoint in output_dir (after a Colab disconnect, say).
    config: passed to sft_config (lr, max_steps, epochs, batch, grad_accum, max_length, eval_steps, ...).
    Taught in notebook 03.
    """
    from peft import prepare_model_for_kbit_training
    from transformers import EarlyStoppingCallback, PrinterCallback

    if method not in {"qlora", "lora"}:
        raise ValueError("method must be 'qlora' or 'lora'")
    if dataset is None or "train" not in dataset or "validation" not in dataset:
        raise ValueError("dataset must be a DatasetDict with 'train' and 'validation' splits (data.course_dataset)")
    start = time.perf_counter()
    seed = config.get("seed", 0)
    env.seed_everything(seed)  # LoRA's initial weights are random too
    if isinstance(model, tuple):
        model, tokenizer = model
        name = Path(model.config.name_or_path).name or "model"
        output_dir = Path(output_dir or env.runs_dir() / f"03_{method}_{name}_{lang}")
    else:
        name = model if "/" in model else models.resolve(model, lang).name
        output_dir = Path(output_dir or run_dir(model, method, lang))
        model, tokenizer = models.load(model, quantization="4bit" if method == "qlora" else None, lang=lang)
    args = sft_config(output_dir, best=early_stopping is not None, **config)
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    clock = StepClock()
    callbacks = [clock, LiveLoss(f"{method} on {name}")] if live else [clock]
    if early_stopping is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=early_stopping))
    trainer = CourseSFTTrainer(model=model, args=args, train_dataset=dataset["train"],
                               eval_dataset=dataset["validation"], processing_class=tokenizer,
                               peft_config=lora_config(model, r, alpha, dropout, target), callbacks=callbacks)
    if not live:
        trainer.remove_callback(PrinterCallback)  # it prints every log line when the progress bar is off
    if quantized and not args.bf16:
        fp32_trainables(trainer.model)
    checkpoint = last_checkpoint(output_dir) if resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    adapter = output_dir / "adapter"
    trainer.save_model(str(adapter))
    best = trainer.state.best_model_checkpoint
    result = TrainResult(
        adapter_path=adapter, history=history_frame(trainer.state.log_history),
        best_step=int(best.rsplit("-", 1)[-1]) if best else None, best_eval_loss=trainer.state.best_metric,
        tokens=trainer.real, tokens_per_second=trainer.real / clock.seconds if clock.seconds else float("nan"),
        real_token_share=trainer.real / trainer.tokens if trainer.tokens else float("nan"), seconds=clock.seconds,
        wall_seconds=time.perf_counter() - start,
        trainable_params=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    )
    (adapter / SUMMARY).write_text(result.summary().to_json(indent=1), encoding="utf-8")  # the cost, for notebook 05
    del trainer, model
    gc.collect()  # the next run in the same notebook gets the memory back
    return result


def main(argv: list[str] | None = None) -> TrainResult:
    """Command line: `python -m ftlib.train --model tiny-random --max-steps 6 --out runs/x` (also under
    `accelerate launch --num_processes 2 -m ftlib.train ...`). Taught in notebook 03.
    """
    from ftlib import data

    parser = argparse.ArgumentParser(prog="python -m ftlib.train", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="auto")
    parser.add_argument("--method", default="qlora", choices=["qlora", "lora"])
    parser.add_argument("--lang", default="en")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--save-steps", type=int, default=None)
    parser.add_argument("--train-rows", type=int, default=None, help="use only the first N training rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    dataset, _ = data.prepare(args.lang, args.seed)
    if args.train_rows:
        dataset["train"] = dataset["train"].select(range(args.train_rows))
        dataset["validation"] = dataset["validation"].select(range(min(args.train_rows, len(dataset["validation"]))))
    result = train(args.model, dataset, args.out, method=args.method, r=args.r, resume=args.resume, live=False,
                   lang=args.lang, max_steps=args.max_steps, batch=args.batch, lr=args.lr, max_length=args.max_length,
                   eval_steps=args.eval_steps, save_steps=args.save_steps, seed=args.seed)
    if int(os.environ.get("RANK", "0")) == 0:  # one report, also under accelerate launch
        print(result.history.to_string(index=False))
        print(result)
    return result


if __name__ == "__main__":
    main()

"""Fine-tuning with LoRA or QLoRA on TRL's SFTTrainer: the course's one training entry point (notebook 03).

    args = recipe.sft_config("runs/x", learning_rate=3e-3, max_steps=30)   # or a trl.SFTConfig of your own
    result = train("auto", data.course_dataset("en"), args, method="qlora", lora=recipe.lora_config(r=16))
    result.history        # step, train loss, validation loss
    result.adapter_path   # the saved LoRA adapter

The recipe (the three configs and their defaults) lives in ftlib.recipe; this module runs it: the model built by
recipe.prepare, batches of rows of near-equal length to keep padding small, the tokens trained counted, evaluation
and checkpoints, early stopping with the best checkpoint kept, resume after a disconnect, a live loss plot in Jupyter.
The same code runs under `accelerate launch` on several processes, on the course data or your own file:
`python -m ftlib.train --help`.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from transformers import EarlyStoppingCallback, PrinterCallback, TrainerCallback
from trl import SFTTrainer

from ftlib import data, env, generate, models, plots, recipe


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


def score_labelled_positions_only() -> None:
    """Make TRL's fused LM head score only the positions that have a label on a CPU, as it does on a GPU.

    TRL computes SFT's loss with a chunked LM head (the full logits are never built). Where Triton runs (CUDA) it
    projects only the positions with a label; elsewhere it projects every position, prompt and padding included, so
    that shapes stay fixed for compilers that recompile per shape (Neuron). On a CPU nothing recompiles, and with
    completion-only loss most positions have no label: 6 steps of notebook 03's run took half the time, with the
    same losses to the fourth decimal (bench/README; `bench/training.py --alternatives --only "ftlib, every position
    scored"` measures it; tests/test_train.py checks the losses and gradients). TRL reads `_use_triton` there only to
    make this choice; every other device keeps TRL's own (CourseSFTTrainer calls this).
    Used by train.train (notebook 03).
    """
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton as trl_choice

    trl_utils._use_triton = lambda device: device.type == "cpu" or trl_choice(device)


class CourseSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with four additions: batches of near-equal length (LengthBuckets) where the config asks for
    group_by_length, a count of the tokens it trains on (all of them and the non-padding ones), trainable weights
    kept in fp32 where TRL would cast a 4-bit model's adapters to bf16 (no fast bf16 on a T4 or a CPU), and the loss
    scored on labelled positions only on a CPU too (score_labelled_positions_only).

    Tokens are counted in `training_step`, which runs once per trained batch: evaluation batches and the batch the
    data loader builds ahead are never counted. Taught in notebook 03.
    """

    def __init__(self, *args, **kwargs):
        score_labelled_positions_only()
        super().__init__(*args, **kwargs)
        self.tokens = self.real = 0
        if models.is_quantized(self.model) and not self.args.bf16:  # TRL casts a 4-bit model's adapters to bf16
            recipe.fp32_trainables(self.model)  # keep them fp32, as recipe.prepare made them

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


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says the likely cause and what to change. Taught in notebook 03.
    """


class StopOnNonFinite(TrainerCallback):
    """Stops training with TrainingDiverged at the first logged loss that is NaN or infinite, instead of training on
    and saving a broken model. On a T4 (fp16, no bf16) the usual cause is an activation above fp16's 65,504.

    Every Trainer of the course gets it (train.train, classify.train_classifier). Taught in notebook 03.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "eval_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                lr = f"{args.learning_rate:g}"
                untrained = "before any training step the model as loaded gives it, so the cause is not training: "
                hint = (f"In fp16 (a T4 has no bf16) the usual cause is an overflow: an activation above 65,504 "
                        f"becomes inf. Remedies: a model the presets table marks fp16-safe (models.presets(), column "
                        f"fp16), a GPU with bf16 (L4, A100), or a lower learning rate (now {lr})." if args.fp16 else
                        f"The usual cause is a learning rate too high for this model (now {lr}): lower it.")
                if state.global_step == 0:
                    hint = untrained + ("check that the model loads and answers in this precision (fp16 on a T4: "
                                        "take a model the presets table marks fp16-safe)." if args.fp16 else
                                        "check that the model loads and answers (generate.generate) before training.")
                raise TrainingDiverged(f"training stopped at step {state.global_step}: the {key.replace('_', ' ')} "
                                       f"is {value}. {hint} Checkpoints saved before this step are kept in "
                                       f"{args.output_dir}.")


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
        from IPython.display import display  # IPython is there when _in_notebook() is true

        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
            plt.close(self.fig)  # shown through the display handle only
        plots.loss_curve(self.ax, self.train, self.val, self.title, max_steps)
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

    Used by train.train (notebook 03).
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


def _unusable(folder: Path) -> str | None:
    """Why the Trainer cannot resume from checkpoint `folder`, or None when it can."""
    state = folder / "trainer_state.json"
    if not state.is_file():  # the Trainer writes it last
        return "no trainer_state.json: the run was cut off while saving it"
    try:
        json.loads(state.read_text(encoding="utf-8"))["global_step"]
    except (ValueError, KeyError, TypeError) as error:
        return f"trainer_state.json is cut off or damaged ({type(error).__name__}: {error})"
    weights = next((folder / name for name in ("adapter_model.safetensors", "model.safetensors")
                    if (folder / name).exists()), folder / "adapter_model.safetensors")  # LoRA, or full fine-tuning
    try:
        with safe_open(str(weights), "pt"):
            pass
    except (OSError, SafetensorError) as error:
        return f"{weights.name} is missing, empty or cut off ({error})"
    return None


def _has_optimizer_state(folder: Path) -> bool:
    """Whether checkpoint `folder` holds the optimizer's and the scheduler's state (the Trainer loads both or neither).
    """
    return all(zipfile.is_zipfile(folder / name) for name in ("optimizer.pt", "scheduler.pt"))  # torch.save's format


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest checkpoint in `output_dir` that training can resume from, or None.

    A checkpoint without a readable trainer_state.json (the Trainer writes it last) or adapter file, cut off by a Colab
    disconnect or a full disk, is skipped with a warning that names it and says why. So is one without the optimizer's
    state (optimizer.pt, scheduler.pt) while an older one has it; when none has it, the newest complete one is used
    and a warning says that the optimizer and the learning-rate schedule start afresh.
    Used by train.train (notebook 03).
    """
    from transformers.trainer_utils import sort_checkpoints

    newest = None  # the newest complete checkpoint, with or without optimizer state
    for folder in reversed(sort_checkpoints(str(output_dir))):  # the Trainer's own order: by step
        problem = _unusable(Path(folder))
        if problem is None and _has_optimizer_state(Path(folder)):
            return folder
        if problem is None and newest is None:
            newest = folder
        why = problem or "no optimizer state (optimizer.pt or scheduler.pt missing or cut off)"
        warnings.warn(f"{folder} is incomplete ({why}); looking for an earlier checkpoint", stacklevel=2)
    if newest is not None:
        warnings.warn(f"no checkpoint in {output_dir} has the optimizer state: resuming from {newest} with a fresh "
                      "optimizer and learning-rate schedule", stacklevel=2)
    return newest


SUMMARY = "train_summary.json"  # TrainResult.summary() saved next to the adapter: steps, seconds, losses
HISTORY = "train_history.csv"  # TrainResult.history saved next to the adapter: the loss at every step


def saved_history(adapter: str | Path) -> pd.DataFrame:
    """The training and validation losses of the run that saved `adapter` (train.train writes them beside it).

    Taught in notebook 04, which reads notebook 03's run."""
    path = Path(adapter) / HISTORY
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the adapter was saved by an older ftlib or by another tool; "
                                "train it again with train.train (notebook 03)")
    return pd.read_csv(path)


def course_adapter(model: str = "auto", method: str = "qlora", lang: str = "en", seed: int = 0,
                   data_file: str | Path | None = None, **columns) -> Path:
    """Notebook 03's adapter for this model, method, language and data file (under run_dir); trained again with
    recipe.course_settings() when it is missing, so later notebooks run on their own. data_file: your file, as
    notebook 03's DATA (None: the course data); columns: data.from_file's prompt=, completion=, system=.
    Taught in notebook 04.
    """
    adapter = run_dir(model, method, lang, data_file) / "adapter"
    if (adapter / "adapter_config.json").exists():
        return adapter
    settings = recipe.course_settings(lang=lang)
    focus, dropout = settings.pop("focus"), settings.pop("lora_dropout")
    dataset = dataset_for(data_file, lang, seed, focus, **columns)
    print(f"{adapter} is missing: training it as notebook 03 does, {_how_long(model, method, lang, dataset, settings)}")
    return train(model, dataset, method=method, lang=lang, seed=seed, lora=recipe.lora_config(lora_dropout=dropout),
                 output_dir=adapter.parent, **settings).adapter_path


COURSE_RUN = "course.json"  # under runs/: what notebook 03 last trained, per language and data file


def _run_key(lang: str, data_file: str | Path | None) -> str:
    return f"{lang}:{Path(data_file).stem if data_file is not None else 'course data'}"


def remember(model: str, method: str, lang: str = "en", data_file: str | Path | None = None) -> Path:
    """Write down, in runs/course.json, the model (as "auto" resolved on this machine) and method notebook 03 trained
    for this language and data file, so notebooks 04, 05 and 07 load the same ones (as_in_03), also in another
    session on another GPU. Taught in notebook 03.
    """
    path = env.runs_dir() / COURSE_RUN
    runs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    runs[_run_key(lang, data_file)] = {"model": model_name(model, lang), "method": method}
    path.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    return path


def as_in_03(model: str | None, method: str | None, lang: str = "en", data_file: str | Path | None = None,
             log=print) -> tuple[str, str]:
    """(model, method) for a notebook after 03: each one given is kept; each None is what notebook 03 last trained
    for this language and data file (runs/course.json), or the course's default ("auto", recipe.course_method())
    when it has not run here. Says which. Taught in notebook 04.
    """
    path = env.runs_dir() / COURSE_RUN
    ran = json.loads(path.read_text(encoding="utf-8")).get(_run_key(lang, data_file)) if path.exists() else None
    ran = ran or {}
    chosen = (model or ran.get("model") or "auto", method or ran.get("method") or recipe.course_method())
    if (model is None or method is None) and ran:
        log(f"as notebook 03 trained ({path}): model {chosen[0]}, method {chosen[1]}")
    elif model is None or method is None:
        log(f"notebook 03 has not trained for {_run_key(lang, data_file)} in {path.parent}: model {chosen[0]}, "
            f"method {chosen[1]} (the course's defaults)")
    return chosen


def _how_long(model: str, method: str, lang: str, dataset, settings: dict) -> str:
    """How long course_adapter's training will take: measured on a CPU, estimated from FLOPs on a GPU."""
    if env.device() != "cuda":
        return f"{settings['max_steps']} steps: about 1-2 min on a 2-core CPU (measured, bench/README)"
    from ftlib import training_time

    name = model_name(model, lang)
    if name not in models.PRESETS:
        return "on this GPU (a hub id: no estimate)"
    tokens = 100 * len(dataset["train"]) * settings["num_train_epochs"]  # ~100 tokens a row (notebook 01)
    estimate = training_time.epoch_time_t4(name, tokens, method)
    return f"{settings['num_train_epochs']} passes: about {max(1, round(estimate.seconds / 60))} min on a T4 " \
           "(an estimate from FLOPs, not a measurement)"


def dataset_for(data_file: str | Path | None = None, lang: str = "en", seed: int = 0, focus=None, **columns):
    """The prompt/completion splits a notebook trains on: your file through data.from_file (columns: prompt=,
    completion=, system=), or the course data (only the `focus` intents when given). Taught in notebook 03.
    """
    if data_file is not None:
        return data.from_file(data_file, seed=seed, **columns)
    dataset = data.course_dataset(lang, seed)
    return dataset.filter(lambda row: row["intent"] in focus) if focus else dataset


def model_name(model: str = "auto", lang: str = "en") -> str:
    """The model a run uses: a hub id as given, a preset by name, "auto" decided for this machine and language.

    Taught in notebook 08.
    """
    return model if "/" in model else models.resolve(model, lang).name


def run_dir(model: str = "auto", method: str = "qlora", lang: str = "en", data_file: str | Path | None = None) -> Path:
    """Where train.train keeps a run of a preset or hub id unless told otherwise: runs/03_<method>_<model>_<lang>,
    with _<file name> added for a run on your own data file (notebook 04 finds notebook 03's adapter there).

    Taught in notebook 03.
    """
    name = f"03_{method}_{model_name(model, lang).replace('/', '_')}_{lang}"
    return env.runs_dir() / (name + (f"_{Path(data_file).stem}" if data_file is not None else ""))


def train(model="auto", dataset=None, args=None, *, method: str = "qlora", lora=None, quantization=None,
          early_stopping: int | None = None, resume: bool = False, live: bool = True, lang: str = "en",
          output_dir: str | Path | None = None, seed: int = 0, **overrides) -> TrainResult:
    """Fine-tune `model` (a preset name, a hub id, or a (model, tokenizer) pair) with LoRA or QLoRA.

    dataset: a DatasetDict with "train" and "validation" prompt/completion rows (data.course_dataset, data.from_file).
    args: a trl SFTConfig (notebook 03 builds one in plain sight); None builds recipe.sft_config(output_dir, seed,
    **overrides) with any SFTConfig field by its own name (learning_rate=3e-3, max_steps=30, max_length=256, ...).
    method: "qlora" (4-bit base + LoRA) or "lora" (base in the compute dtype + LoRA); lora: a peft LoraConfig
    (default recipe.lora_config()); quantization: a BitsAndBytesConfig for QLoRA (default recipe.bnb_config()).
    early_stopping: stop after this many evaluations without improvement and keep the best checkpoint.
    live: draw the loss while training (in Jupyter); False trains quietly (a progress bar at most).
    resume: continue from the last checkpoint in the output folder (after a Colab disconnect, say).
    Taught in notebook 03.
    """
    if method not in {"qlora", "lora"}:
        raise ValueError("method must be 'qlora' or 'lora'")
    if dataset is None or "train" not in dataset or "validation" not in dataset:
        raise ValueError("dataset must be a DatasetDict with 'train' and 'validation' splits (data.course_dataset)")
    start = time.perf_counter()
    if isinstance(model, tuple):
        name = Path(model[0].config.name_or_path).name or "model"
        default_dir = env.runs_dir() / f"03_{method}_{name}_{lang}"
    else:
        model = name = model_name(model, lang)  # "auto" decided once, for the folder and the load alike
        default_dir = run_dir(name, method, lang)
    if args is None:
        args = recipe.sft_config(output_dir or default_dir, seed,
                                 **{"load_best_model_at_end": early_stopping is not None, **overrides})
    elif overrides or output_dir is not None:
        raise ValueError(f"pass {sorted(overrides) or ['output_dir']} inside the SFTConfig `args`, not beside it")
    if early_stopping is not None and not args.load_best_model_at_end:
        raise ValueError("early stopping keeps the best checkpoint: set load_best_model_at_end=True in the SFTConfig")
    env.seed_everything(args.seed)  # LoRA's initial weights are random too
    model, tokenizer = recipe.prepare(model, method, lora, quantization=quantization, lang=lang)
    clock = StepClock()
    callbacks = [clock, StopOnNonFinite(), *([LiveLoss(f"{method} on {name}")] if live else [])]
    if early_stopping is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=early_stopping))
    if "qwen3" in str(getattr(model.config, "model_type", "")):  # its template thinks aloud unless told not to
        dataset = {split: rows.map(lambda _: {"chat_template_kwargs": generate.TEMPLATE_KWARGS})
                   for split, rows in dataset.items()}  # TRL passes a row's chat_template_kwargs to the template
    trainer = CourseSFTTrainer(model=model, args=args, train_dataset=dataset["train"],
                               eval_dataset=dataset["validation"], processing_class=tokenizer, callbacks=callbacks)
    if not live:
        trainer.remove_callback(PrinterCallback)  # it prints every log line when the progress bar is off
    output = Path(args.output_dir)
    checkpoint = last_checkpoint(output) if resume else None
    if resume:
        print(f"resuming from {checkpoint}" if checkpoint else f"no checkpoint in {output}: training starts at step 0")
    trainer.train(resume_from_checkpoint=checkpoint)
    adapter = output / "adapter"
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
    result.history.to_csv(adapter / HISTORY, index=False)  # the losses, for notebook 04
    del trainer, model
    gc.collect()  # the next run in the same notebook gets the memory back
    return result


def main(argv: list[str] | None = None) -> TrainResult:
    """Command line: `python -m ftlib.train --model tiny-random --max-steps 6 --out runs/x`; on your own file:
    `python -m ftlib.train --data faq.csv --prompt-column question --completion-column answer` (also under
    `accelerate launch --num_processes 2 -m ftlib.train ...`). Defaults: recipe.course_settings() for this machine.
    Taught in notebook 03.
    """
    settings = recipe.course_settings()
    parser = argparse.ArgumentParser(prog="python -m ftlib.train", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="auto")
    parser.add_argument("--method", default=recipe.course_method(), choices=["qlora", "lora"])
    parser.add_argument("--lang", default="en", choices=sorted(data.SYSTEM_PROMPT))
    parser.add_argument("--data", type=Path, default=None,
                        help="your CSV/TSV/JSON/JSONL/Parquet file (default: the course data)")
    parser.add_argument("--prompt-column", default="prompt", help="the column with the question or instruction")
    parser.add_argument("--completion-column", default="completion", help="the column with the answer to learn")
    parser.add_argument("--messages-column", default=None, help="a chat `messages` column instead of the two above")
    parser.add_argument("--system", default=None, help="a system prompt put before every question (default: none)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--max-steps", type=int, default=None,
                        help=f"default: recipe.course_settings() (here {settings['max_steps']} in English)")
    parser.add_argument("--epochs", type=float, default=settings["num_train_epochs"], help="passes over the rows")
    parser.add_argument("--per-device-train-batch-size", "--batch", type=int, default=recipe.BATCH)
    parser.add_argument("--learning-rate", "--lr", type=float, default=settings["learning_rate"])
    parser.add_argument("--r", type=int, default=recipe.R)
    parser.add_argument("--lora-dropout", type=float, default=settings["lora_dropout"])
    parser.add_argument("--max-length", type=int, default=recipe.MAX_LENGTH)
    parser.add_argument("--eval-steps", type=int, default=recipe.EVAL_STEPS)
    parser.add_argument("--save-steps", type=int, default=None)
    parser.add_argument("--train-rows", type=int, default=None, help="use only the first N training rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    if args.max_steps is None:  # the course's steps for this machine and language
        args.max_steps = recipe.course_settings(lang=args.lang)["max_steps"]
    if args.train_rows is not None and args.train_rows < 1:
        parser.error(f"--train-rows {args.train_rows}: give at least 1")
    if args.data is None:
        dataset, _ = data.prepare(args.lang, args.seed)
    else:
        dataset = data.from_file(args.data, args.prompt_column, args.completion_column, messages=args.messages_column,
                                 system=args.system, seed=args.seed)
    if args.train_rows:
        if args.train_rows > len(dataset["train"]):
            parser.error(f"--train-rows {args.train_rows}: the training split has {len(dataset['train'])} rows")
        dataset["train"] = dataset["train"].select(range(args.train_rows))
        dataset["validation"] = dataset["validation"].select(range(min(args.train_rows, len(dataset["validation"]))))
    overrides = {"max_steps": args.max_steps, "num_train_epochs": args.epochs,
                 "per_device_train_batch_size": args.per_device_train_batch_size,
                 "learning_rate": args.learning_rate, "max_length": args.max_length, "eval_steps": args.eval_steps}
    if args.save_steps:
        overrides["save_steps"] = args.save_steps
    lora = recipe.lora_config(args.r, lora_dropout=args.lora_dropout)
    result = train(args.model, dataset, method=args.method, lora=lora, resume=args.resume, live=False, lang=args.lang,
                   output_dir=args.out, seed=args.seed, **overrides)
    if int(os.environ.get("RANK", "0")) == 0:  # one report, also under accelerate launch
        print(result.history.to_string(index=False))
        print(result)
    return result


if __name__ == "__main__":
    main()

"""Measure the memory of a few real training steps, component by component, beside the estimate (notebook 02).

    got = measure.measure("smollm2-135m", "lora", steps=3)   # notebooks call it as memory.measure

The run is built as train.train builds it (recipe.prepare, train.CourseSFTTrainer); a Trainer callback reads
the tensors (weights, p.grad, optimizer state), saved-tensor hooks count the activations, and a thread samples
the process's memory. The components are the estimate's (ftlib.estimator), so the two set side by side.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import psutil
import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils import logging as hf_logging
from trl import SFTConfig

from ftlib import data, env, recipe
from ftlib.estimator import COMPONENTS, GIB, METHODS, OPTIMIZERS, Estimate, gib_text
from ftlib.train import CourseSFTTrainer

# estimate()'s optimizer names -> the Trainer's `optim`
_TRAINER_OPTIM = {"adamw": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
                  "sgd": "sgd"}


# --- reading memory -----------------------------------------------------------------------------------------

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


def _storage(t: torch.Tensor) -> tuple[int, int]:
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):
        return t.data_ptr(), t.nbytes


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise), so RSS means now."""
    gc.collect()
    try:
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


class _MemorySampler(TrainerCallback):
    """Samples memory at every step (and RSS every few ms in a thread) while the Trainer trains."""

    def __init__(self, cuda: bool, interval: float = 0.005):
        self.cuda, self.interval = cuda, interval
        self.weights = self.gradients = self.optimizer_state = self.activations = 0
        self.peak_rss = 0
        self.step_times: list[float] = []
        self._t0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: _SavedForBackward | None = None

    @property
    def known(self) -> int:
        """Bytes of the components read off tensors: what the peak holds besides the overhead."""
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def _watch(self):
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, _rss())

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        gc.collect()
        self.weights = _weight_bytes(model)
        self._saved = _SavedForBackward(model)
        self.peak_rss = _rss()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
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
        if self.cuda:
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


# --- the measurement -----------------------------------------------------------------------------------------

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
        rows.append(("peak RSS", gib_text(self.peak_rss), "resident memory of this process (psutil, /proc VmHWM)"))
        if self.cuda_peak is not None:
            rows.append(("CUDA peak", gib_text(self.cuda_peak), "torch.cuda.max_memory_allocated()"))
        rows.append(("speed", f"{self.seconds_per_step:.2f} s/step", f"median of {self.steps} steps on {self.device}"))
        rows.append(("loss", f"{self.first_loss:.3f} → {self.loss:.3f}", f"after {self.steps} steps"))
        if self.checkpoint_bytes is not None:
            base = gib_text(self.weights - self.adapter_weights)
            what = (f"adapter folder on disk; the base weights it rides on: {base}" if self.method != "full" else
                    "the full model's state dict (not written)")
            rows.append(("checkpoint", gib_text(self.checkpoint_bytes), what))
        return rows

    def _footer(self) -> str:
        return f"measured on {self.device}; total = {'CUDA peak' if self.cuda_peak is not None else 'peak RSS'}"

    def record(self) -> dict:
        """One flat dict, as Estimate.record() plus peak readings, s/step, loss and the checkpoint's size."""
        row = super().record()
        row.update({"peak_rss_gib": None if self.peak_rss is None else self.peak_rss / GIB,
                    "cuda_peak_gib": None if self.cuda_peak is None else self.cuda_peak / GIB,
                    "seconds_per_step": self.seconds_per_step, "loss": self.loss, "device": self.device,
                    "checkpoint_gib": None if self.checkpoint_bytes is None else self.checkpoint_bytes / GIB})
        return row


def _token_rows(tokenizer, n: int, max_length: int, lang: str) -> datasets.Dataset:
    """n rows of the course's train split: chat template over prompt + completion, truncated to max_length."""
    train = data.course_dataset(lang)["train"]
    rows = [train[i % len(train)] for i in range(n)]
    texts = [tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
    enc = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=False)
    return datasets.Dataset.from_dict({"input_ids": enc["input_ids"]})


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """No transformers or datasets progress bars inside (loading, SFTTrainer's dataset preparation), as before after."""
    bars, data_bars = hf_logging.is_progress_bar_enabled(), not datasets.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        if data_bars:
            datasets.enable_progress_bars()


def _trainer(net, tokenizer, dataset, sampler: _MemorySampler, output_dir: str, steps: int, batch: int,
             max_length: int, learning_rate: float, gradient_checkpointing: bool, optimizer: str,
             seed: int) -> CourseSFTTrainer:
    """The course's SFTTrainer for `steps` steps at a constant learning rate, saving nothing, printing nothing."""
    args = SFTConfig(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch, learning_rate=learning_rate,
        lr_scheduler_type="constant", save_strategy="no", logging_steps=1,
        activation_checkpointing=gradient_checkpointing, activation_checkpointing_kwargs={"use_reentrant": False},
        optim=_TRAINER_OPTIM[optimizer], disable_tqdm=True, max_length=max_length, pad_to_multiple_of=max_length,
        **recipe.trainer_basics(seed))
    trainer = CourseSFTTrainer(model=net, args=args, train_dataset=dataset, processing_class=tokenizer,
                               callbacks=[sampler])
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    return trainer


def _checkpoint_bytes(net, method: str, folder: Path) -> int:
    """Bytes of what a checkpoint would hold: the adapter folder as saved, or the full model's parameters."""
    if method == "full":
        return _tensor_bytes({id(p): p for p in net.parameters()}.values())
    net.save_pretrained(folder / "adapter")
    return sum(f.stat().st_size for f in (folder / "adapter").rglob("*") if f.is_file())


def _notes(cuda: bool) -> dict[str, str]:
    return {"weights": "parameters + 4-bit quantization constants + buffers (tensor bytes)",
            "gradients": "p.grad bytes after the optimizer step", "optimizer_state": "optimizer.state tensor bytes",
            "activations": "bytes autograd saved for backward (saved_tensors_hooks), peak over the steps",
            "overhead": ("CUDA peak minus the above: temporaries, logits tiles, allocator" if cuda else
                         "peak RSS minus the above: Python, libraries, mapped model files, temporaries")}


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
    sampler = _MemorySampler(cuda)
    with tempfile.TemporaryDirectory(prefix="ftlib-measure-") as tmp:
        with _quiet_progress_bars():
            net, tokenizer = recipe.prepare(model, method, recipe.lora_config(r, lora_dropout=lora_dropout,
                                                                              target_modules=targets), lang=lang)
            trainer = _trainer(net, tokenizer, _token_rows(tokenizer, steps * batch, max_length, lang), sampler, tmp,
                               steps, batch, max_length, learning_rate, gc_on, optimizer, seed)
        _release_freed_memory()  # what loading and quantizing left behind is not training memory
        hwm_reset = _reset_hwm()
        trainer.train()
        peak_rss = max(sampler.peak_rss, (_hwm() if hwm_reset else None) or 0)
        checkpoint = _checkpoint_bytes(net, method, Path(tmp))
    cuda_peak = torch.cuda.max_memory_allocated() if cuda else None
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row] or [float("nan")]
    result = Measurement(
        name, method, max_length, batch, None if method == "full" else r, gc_on, optimizer,
        dtype=str(next(p.dtype for p in net.parameters() if p.is_floating_point())).removeprefix("torch."),
        params=sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1) for p in net.parameters()),  # 2 a byte
        trainable_params=sum(p.numel() for p in net.parameters() if p.requires_grad),
        weights=sampler.weights, gradients=sampler.gradients, optimizer_state=sampler.optimizer_state,
        activations=sampler.activations, overhead=max(0, (cuda_peak if cuda else peak_rss) - sampler.known),
        adapter_weights=sum(p.nbytes for p in net.parameters() if p.requires_grad) if method != "full" else 0,
        notes=_notes(cuda), device="cuda" if cuda else "cpu", steps=steps, peak_rss=peak_rss, cuda_peak=cuda_peak,
        seconds_per_step=statistics.median(sampler.step_times) if sampler.step_times else float("nan"),
        first_loss=losses[0], loss=losses[-1], checkpoint_bytes=checkpoint)
    del trainer, net
    _release_freed_memory()
    return result

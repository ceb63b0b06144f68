"""The course's memory plan: every notebook at its defaults on one machine (a T4, an L4, an A100 or a CPU), each step
that loads, trains, measures or generates, its estimated peak with the dtype and settings it really uses, and
whether that fits.

    python -m ftlib.course plan --gpu t4 [-p LANG=ja]    # exits 1 when a step does not fit

A notebook's parameters are read from its parameters cell as that machine would run it ("auto" resolved for the
machine, `GPU = torch.cuda.is_available()` answered for it), so the plan follows the notebooks. Memory comes from
ftlib.estimator, sized from each model's config numbers (nothing is downloaded): training by estimate(); loading
and generation by the weights, the key/value cache and the logits. Models a notebook keeps loaded count in every
later step of that notebook. Prompt lengths are assumptions, printed in each step. Used by course.main (notebook 02).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import torch

from ftlib import architecture, env, estimator, models, recipe

GIB = estimator.GIB


@dataclass(frozen=True)
class Machine:
    """What a step must fit in: usable GiB (what PyTorch gets of the card, or of the RAM), and the CUDA compute
    capability that decides the dtype (None: a CPU)."""

    name: str
    gib: float
    capability: tuple[int, int] | None

    @property
    def device(self) -> str:
        return "cpu" if self.capability is None else "cuda"

    @property
    def dtype(self) -> torch.dtype:
        return env.choose_dtype(self.device, self.capability)[0]


MACHINES = {
    "t4": Machine("T4 (Colab, Kaggle)", estimator.T4_GIB, (7, 5)),
    "l4": Machine("L4", 22.0, (8, 9)),
    "a100": Machine("A100 40 GB", 39.0, (8, 0)),
    "cpu": Machine("laptop CPU, 16 GB RAM", 14.0, None),
}
PROMPT = 160  # tokens of a course question with its chat template and system prompt (notebook 01 measured ~85-130)


def auto(lang: str, machine: Machine) -> str:
    """The preset "auto" picks on `machine` (models.auto_name, for a machine that is not this one)."""
    return models.auto_name(lang, machine.device, machine.dtype)


def parameters(path: Path, machine: Machine, overrides: dict | None = None) -> dict:
    """A notebook's parameters as `machine` runs them: its parameters cell executed with torch.cuda.is_available()
    answering for that machine, then `overrides` (as papermill injects them), then MODEL="auto" resolved."""
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    fake = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: machine.capability is not None))
    tree = ast.parse(cell.source)
    tree.body = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
    values: dict = {"torch": fake}
    exec(compile(tree, str(path), "exec"), values)  # the notebook's own parameters cell: the course's own code
    values = {k: v for k, v in values.items() if k.isupper()} | (overrides or {})
    if values.get("MODEL") in ("auto", None):  # None: as notebook 03 trained, "auto" by default
        values["MODEL"] = auto(values.get("LANG", "en"), machine)
    return values


@dataclass
class Step:
    """One step of a notebook and its estimated peak."""

    notebook: str
    step: str
    model: str
    settings: str
    bytes: int
    machine: Machine
    skipped: bool = False  # the notebook leaves this step out on this machine (it would not fit)

    @property
    def fits(self) -> bool:
        return self.skipped or self.bytes <= self.machine.gib * GIB


def _weights(model: str, quant: bool, dtype: torch.dtype) -> int:
    """Bytes of a loaded model's weights: 4-bit NF4 Linear layers (QLoRA) or every weight in `dtype`."""
    est = estimator.estimate(model, "qlora" if quant else "lora", max_length=1, batch=1, dtype=dtype,
                             device="cpu" if dtype == torch.float32 else "cuda")
    return est.weights - est.adapter_weights


def _generation(model: str, quant: bool, dtype: torch.dtype, batch: int, tokens: int) -> int:
    """Weights, the key/value cache of `batch` sequences of `tokens`, and one step's fp32 logits and softmax."""
    config = architecture._config(models.PRESETS[model].arch)
    logits = 2 * batch * architecture.text_config(config).vocab_size * 4
    return _weights(model, quant, dtype) + estimator.kv_cache_bytes(config, tokens, batch, dtype) + logits


class _Notebook:
    """Collects one notebook's steps; models it keeps loaded count in every later step."""

    def __init__(self, number: str, machine: Machine, p: dict):
        self.number, self.machine, self.p, self.steps, self.kept = number, machine, p, [], 0
        self.dtype = machine.dtype
        self.overhead = int(0.5 * GIB)  # the CUDA context and allocator (estimate()'s overhead_gib)

    def _add(self, step: str, model: str, settings: str, own: int, skip_if_too_big: bool = False) -> None:
        total = self.kept + own + self.overhead
        skipped = skip_if_too_big and total > self.machine.gib * GIB
        self.steps.append(Step(self.number, step + (": skipped, it does not fit" if skipped else ""), model,
                               f"{settings}, {str(self.dtype).removeprefix('torch.')}", total, self.machine, skipped))

    def load(self, step: str, quant: bool = False, model: str | None = None, keep: bool = True) -> None:
        model = model or self.p["MODEL"]
        own = _weights(model, quant, self.dtype)
        self._add(step, model, "4-bit NF4" if quant else "unquantized", own)
        self.kept += own if keep else 0

    def generate(self, step: str, batch: int, tokens: int, quant: bool = False) -> None:
        model = self.p["MODEL"]
        own = _generation(model, quant, self.dtype, batch, tokens) - _weights(model, quant, self.dtype)
        self._add(step, model, f"batch {batch} x {tokens} tokens (prompt ~{tokens - self.p.get('MAX_NEW_TOKENS', 0)})",
                  own)

    def train(self, step: str, method: str, max_length: int, batch: int, skip_if_too_big: bool = False) -> None:
        """A training run as recipe.prepare builds it: full fine-tuning keeps fp32 master weights on a GPU (16-bit
        autocast), LoRA and QLoRA a 16-bit frozen base; all fp32 on a CPU (estimate()'s dtype=None rule)."""
        model = self.p["MODEL"]
        est = estimator.estimate(model, method, max_length, batch, r=self.p.get("R", 16),
                                 dtype=None if self.machine.device == "cuda" else torch.float32,
                                 device=self.machine.device)
        own = est.total - est.overhead
        self._add(step, model, f"{method}, seq {max_length} x batch {batch}, gradient checkpointing "
                               f"{'on' if est.gradient_checkpointing else 'off'}", own, skip_if_too_big)


def _steps(number: str, nb: _Notebook) -> None:
    """What each notebook loads, trains, measures and generates, with its parameters (nb.p)."""
    p = nb.p
    method = p.get("METHOD") or recipe.course_method(on_gpu=nb.machine.device == "cuda")  # None: as 03 trains
    qlora = method == "qlora"
    if number == "01":
        nb._add("the tokenizer only: no weights loaded", p["MODEL"], "-", 0)
    elif number == "00":
        nb.load("load the chat model")
        nb.generate("answer the course questions", 8, PROMPT + p["MAX_NEW_TOKENS"])
    elif number == "02":
        for method in estimator.METHODS:
            nb.train(f"memory.measure: {method}", method, p["SEQ_LEN"], p["BATCH"], skip_if_too_big=True)
    elif number in ("03", "08"):
        length = p["MAX_LENGTH"]
        nb.load("load the base (kept for before/after)", quant=qlora)
        nb.generate("answer before training", p.get("EVAL_BATCH", 8), PROMPT + p["MAX_NEW_TOKENS"], qlora)
        nb.train("train.train", method, length, p["BATCH"])
        nb.generate("answer after training", p.get("EVAL_BATCH", 8), PROMPT + p["MAX_NEW_TOKENS"], qlora)
        if number == "03":
            nb.train("the overfitting demo, with early stopping", "lora", length, 2)
        else:
            nb.load("export.merge: the base in 16 bits", keep=False)
    elif number == "04":
        nb.load("load the base with both adapters", quant=qlora)
        if p.get("MIXED_RUN", True):
            nb.train("the mixed run (train.train)", method, 384, 8)
        nb.generate("score base, tuned and mixed", p["EVAL_BATCH"], PROMPT + p["MAX_NEW_TOKENS"], qlora)
        nb.generate("validation and general perplexity", 8, 1024, qlora)
    elif number == "05":
        nb.load("load the base with the adapter", quant=qlora)
        nb.generate("RAG prompts (K passages, ~150 tokens each)", p["BATCH"],
                    PROMPT + 150 * p["K"] + p["MAX_NEW_TOKENS"], qlora)
        nb.generate("engineered prompts (instructions, facts, examples)", p["BATCH"], 900 + p["MAX_NEW_TOKENS"], qlora)
    elif number == "06":
        nb.train("classifier: head + LoRA (Trainer)", "lora", 128, p["BATCH"])
        nb.load("classifier kept for sections 5 and 6")
        nb.load("the chat model (classifier still loaded)")
        nb.generate("few-shot label prompts", 8, 400 + 60 * 12 * p["SHOTS"] + p["MAX_NEW_TOKENS"])
    elif number == "07":
        nb.load("export.merge: the base in 16 bits")
        nb.load("the merge-into-4-bit trap: a 4-bit base", quant=True)
        nb.load("reload the saved merged model")
        nb.generate("answer with the reloaded model", 4, PROMPT + p["MAX_NEW_TOKENS"])


def plan(machine: str = "t4", overrides: dict | None = None, folder: Path | None = None) -> list[Step]:
    """Every notebook's steps at its defaults (plus `overrides`, e.g. {"LANG": "ja"}) on MACHINES[machine]."""
    from ftlib import course

    chosen = MACHINES[machine]
    steps: list[Step] = []
    for path in course.notebooks(folder or course.ROOT / "notebooks"):
        number = path.name[:2]
        p = parameters(path, chosen, overrides)
        if "MODEL" not in p:
            continue
        if p["MODEL"] not in models.PRESETS:
            steps.append(Step(number, "(not sized: a hub id the presets table does not hold)", p["MODEL"], "-", 0,
                              chosen))
            continue
        nb = _Notebook(number, chosen, p)
        _steps(number, nb)
        steps += nb.steps
    return steps


def frame(steps: list[Step]) -> pd.DataFrame:
    """The plan as a table: notebook, step, model, settings, estimated GiB, fits."""
    return pd.DataFrame([{"notebook": s.notebook, "step": s.step, "model": s.model, "settings": s.settings,
                          "estimated GiB": round(s.bytes / GIB, 2), "fits": "yes" if s.fits else "NO"}
                         for s in steps])

"""Where am I running, and what should I use here? (notebook 00)

Everything later notebooks need to know about the machine: platform, device, GPU, the compute
dtype to train in and why, library versions, whether the model hub is reachable, and seeding.
"""

from __future__ import annotations

import os
import platform as _platform
import socket
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate", "ftlib")


def platform() -> str:
    """'colab', 'kaggle' or 'local'. Used by env.report (notebook 00)."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "kaggle"
    return "local"


def one_gpu_on_kaggle() -> bool:
    """On Kaggle, show the course one GPU (CUDA_VISIBLE_DEVICES=0) unless the run chose itself; True if it did.

    Kaggle's "GPU T4 x2" shows two GPUs, and the Trainer then wraps every model that is not quantized in
    DataParallel: slower, and batch sizes no longer mean what the notebook says. Runs on several GPUs are a
    command-line matter (`accelerate launch`, notebook 03), which sets its own devices. Called when ftlib.env is
    imported, before anything touches CUDA. Used by env.report (notebook 00).
    """
    chosen = "CUDA_VISIBLE_DEVICES" in os.environ or "LOCAL_RANK" in os.environ  # set by you or by accelerate
    if platform() != "kaggle" or chosen:
        return False
    os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    return True


ONE_GPU_SHOWN = one_gpu_on_kaggle()


def device() -> str:
    """'cuda', 'mps' or 'cpu': the device ftlib puts models on. Taught in notebook 00."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(dev: str, capability: tuple[int, int] | None = None) -> tuple[torch.dtype, str]:
    """The compute dtype for a device (and a CUDA compute capability), with the reason.

    Taught in notebook 00.
    """
    if dev == "cuda":
        major, minor = capability or (0, 0)
        if major >= 8:
            return torch.bfloat16, (
                f"compute capability {major}.{minor} (Ampere or newer) has bf16: the range of fp32 "
                "at half the memory, no loss scaling needed"
            )
        return torch.float16, (
            f"compute capability {major}.{minor} (a T4 is 7.5, a V100 7.0, a P100 6.0) has no bf16: compute in "
            "fp16, keep the LoRA adapter weights in fp32 and let the Trainer scale the loss (fp16=True)"
        )
    if dev == "mps":
        return torch.float32, "Apple GPU: fp32 is the safe choice for training on MPS"
    return torch.float32, "CPU: fp32 is fast and exact here; fp16 is slow on CPU and bf16 needs AMX"


def memory_gib(dev: str | None = None) -> float:
    """The memory a training run may use here, in GiB: the GPU's (a T4: 15.0) or, on a CPU, the machine's RAM.

    Taught in notebook 02.
    """
    if (dev or device()) == "cuda":
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    import psutil

    return psutil.virtual_memory().total / 2**30


def compute_dtype(dev: str | None = None) -> tuple[torch.dtype, str]:
    """The dtype to compute in on this machine, and the reason for it. Taught in notebook 00."""
    dev = dev or device()
    capability = torch.cuda.get_device_capability() if dev == "cuda" else None
    return choose_dtype(dev, capability)


def trainer_precision(dev: str | None = None) -> dict[str, bool]:
    """The TrainingArguments flags that match compute_dtype(): bf16 on Ampere+, fp16 on a T4, neither on a CPU.

    Both flags are always given: TRL's SFTConfig turns bf16 on by default. Used by recipe.trainer_basics (notebook 03).
    """
    dtype, _ = compute_dtype(dev)
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def versions() -> dict[str, str]:
    """Installed versions of Python and the libraries the course uses. Taught in notebook 00."""
    found = {"python": _platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@lru_cache(maxsize=1)
def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)  # name resolution has no timeout of its own
    return bool(result and result[0])


def is_offline() -> bool:
    """True when the Hugging Face Hub cannot be used: HF_HUB_OFFLINE=1 or no connection.

    Used by env.report (notebook 00).
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return True
    return not _hub_reachable()


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and torch (all devices) through transformers.set_seed. Taught in notebook 00."""
    from transformers import set_seed

    set_seed(seed)
    return seed


def home() -> Path:
    """ftlib's cache folder (converted models): $FTLIB_HOME, default ~/.cache/ftlib. Taught in notebook 00."""
    path = Path(os.environ.get("FTLIB_HOME", Path.home() / ".cache" / "ftlib")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Where notebooks pass artifacts: runs/ in the project, or on Google Drive when it is mounted.

    Taught in notebook 00.
    """
    drive = Path("/content/drive/MyDrive")
    path = drive / "ftlib-runs" if platform() == "colab" and drive.is_dir() else ROOT / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_drive(on: bool = True) -> Path:
    """Keep runs/ where a new session finds it: on Colab, mount your Google Drive (runs_dir() then writes to
    MyDrive/ftlib-runs), so notebook 03's adapter and checkpoints survive the end of the session for notebooks
    04-07. Elsewhere it says where runs are kept. Returns runs_dir(). Taught in notebook 03.
    """
    if on and platform() == "colab":
        from google.colab import drive

        drive.mount("/content/drive")
    elif on and platform() == "kaggle":
        print("Kaggle keeps /kaggle/working for this session only: to reuse notebook 03's adapter later, Save "
              "Version (its output is kept) and add that output to the next notebook (Add Input).")
    elif on:
        print(f"runs are kept in {runs_dir()} on this machine")
    return runs_dir()


@dataclass(repr=False)
class FourBitCheck:
    """Result of check_4bit(): one layer quantized to NF4 by bitsandbytes, then used."""

    ok: bool
    relative_error: float
    bytes_fp32: int
    bytes_4bit: int
    layer: str

    def __repr__(self) -> str:
        verdict = "works" if self.ok else "FAILED"
        return (f"4-bit {verdict}: {self.layer}, weights {self.bytes_fp32:,} B fp32 -> {self.bytes_4bit:,} B NF4 "
                f"({self.bytes_fp32 / self.bytes_4bit:.1f}x smaller), output relative error {self.relative_error:.3f}")


def check_4bit(size: int = 512, seed: int = 0) -> FourBitCheck:
    """Quantize one Linear layer to NF4 with bitsandbytes and compare its output with the fp32 layer.

    NF4 rounds each weight to one of 16 levels, so a relative error of a few percent is expected;
    above 0.2 something is broken. Taught in notebook 00.
    """
    import bitsandbytes as bnb

    dev = "cuda" if device() == "cuda" else "cpu"
    torch.manual_seed(seed)
    layer = torch.nn.Linear(size, size, bias=False)
    q = bnb.nn.Linear4bit(size, size, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    q.weight = bnb.nn.Params4bit(layer.weight.data.clone(), requires_grad=False, quant_type="nf4")
    q, layer = q.to(dev), layer.to(dev)  # quantization happens on this move
    x = torch.randn(8, size, device=dev)
    with torch.no_grad():
        ref, out = layer(x), q(x).float()
    error = ((out - ref).norm() / ref.norm()).item()
    packed = q.weight.numel() * q.weight.element_size()
    return FourBitCheck(type(q.weight).__name__ == "Params4bit" and error < 0.2, error,
                        layer.weight.numel() * 4, packed, f"Linear({size}, {size}) on {dev}")


@dataclass(repr=False)
class EnvReport:
    """What env.report() found; shows as a table in Jupyter and as text in a terminal."""

    platform: str
    device: str
    gpu: str | None
    vram_gib: float | None
    compute_capability: str | None
    bf16: bool
    dtype: str
    why: str
    offline: bool
    versions: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        rows = [
            ("platform", self.platform),
            ("device", self.device),
            ("GPU", self.gpu or "none"),
            ("VRAM", f"{self.vram_gib:.1f} GiB" if self.vram_gib else "-"),
            ("compute capability", self.compute_capability or "-"),
            ("bf16 supported", "yes" if self.bf16 else "no"),
            ("compute dtype", self.dtype),
            ("why", self.why),
            ("model hub", "offline" if self.offline else "reachable"),
        ]
        return rows + [(name, version) for name, version in self.versions.items()]

    def __repr__(self) -> str:
        width = max(len(key) for key, _ in self.rows())
        return "\n".join(f"{key:<{width}}  {value}" for key, value in self.rows())

    def _repr_html_(self) -> str:
        import html

        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self.rows()
        )
        return f"<table>{body}</table>"


def report() -> EnvReport:
    """Everything above in one table: env.report() in a notebook, `python -m ftlib.env` in a shell.

    Taught in notebook 00.
    """
    dev = device()
    dtype, why = compute_dtype(dev)
    gpu = vram = capability = None
    bf16 = False
    if dev == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu, vram = props.name, props.total_memory / 2**30
        if ONE_GPU_SHOWN:
            gpu += " (Kaggle: the first GPU only, env.one_gpu_on_kaggle)"
        capability = f"{props.major}.{props.minor}"
        bf16 = dtype == torch.bfloat16
    return EnvReport(
        platform=platform(),
        device=dev,
        gpu=gpu,
        vram_gib=vram,
        compute_capability=capability,
        bf16=bf16,
        dtype=str(dtype).removeprefix("torch."),
        why=why,
        offline=is_offline(),
        versions=versions(),
    )


if __name__ == "__main__":
    print(report())

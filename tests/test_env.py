import os
import subprocess
import sys
import time

import pytest
import torch

from ftlib import env


def test_platform_and_device_match_this_machine():
    assert env.platform() == "local"
    assert env.device() == ("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available()
                            else "cpu")


def test_dtype_rule_t4_fp16_ampere_bf16_cpu_fp32():
    assert env.choose_dtype("cuda", (7, 5))[0] == torch.float16
    assert "T4" in env.choose_dtype("cuda", (7, 5))[1]
    assert env.choose_dtype("cuda", (8, 0))[0] == torch.bfloat16
    assert env.choose_dtype("cuda", (9, 0))[0] == torch.bfloat16
    assert env.choose_dtype("cpu")[0] == torch.float32


def test_trainer_precision_flags_follow_the_dtype():
    assert env.trainer_precision("cpu") == {"bf16": False, "fp16": False}
    if env.device() == "cpu":
        assert env.compute_dtype() == env.choose_dtype("cpu")


def test_report_renders_as_text_and_html():
    report = env.report()
    text, page = repr(report), report._repr_html_()
    for key in ["platform", "device", "compute dtype", "why", "model hub", "transformers", "peft", "bitsandbytes"]:
        assert key in text and key in page
    assert report.offline  # conftest sets HF_HUB_OFFLINE=1
    assert report.versions["torch"].startswith(torch.__version__.split("+")[0])


def test_offline_flag_is_read(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert env.is_offline()


def test_seed_everything_makes_torch_repeatable():
    env.seed_everything(3)
    a = torch.rand(4)
    env.seed_everything(3)
    assert torch.equal(a, torch.rand(4))


def test_home_follows_ftlib_home(monkeypatch, tmp_path):
    monkeypatch.setenv("FTLIB_HOME", str(tmp_path / "cache"))
    assert env.home() == tmp_path / "cache" and env.home().is_dir()


def test_4bit_layer_quantizes_and_multiplies():
    result = env.check_4bit()
    assert result.ok
    assert result.bytes_4bit * 7 < result.bytes_fp32  # NF4 packs two weights a byte
    assert 0.01 < result.relative_error < 0.2  # quantized, so not exact; but close


@pytest.mark.parametrize("environ, shown", [
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, "0"),             # Kaggle's T4 x2: the course sees one GPU
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "CUDA_VISIBLE_DEVICES": "0,1"}, "0,1"),  # chosen: kept
    ({"KAGGLE_KERNEL_RUN_TYPE": "Batch", "LOCAL_RANK": "1"}, None),  # accelerate launch picks devices itself
    ({}, None),                                                    # elsewhere nothing changes
])
def test_kaggle_shows_one_gpu_unless_the_run_chose(environ, shown):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("KAGGLE_KERNEL_RUN_TYPE", "CUDA_VISIBLE_DEVICES", "LOCAL_RANK")}
    code = "import os, ftlib.env; print(os.environ.get('CUDA_VISIBLE_DEVICES'))"
    out = subprocess.run([sys.executable, "-c", code], env=clean | environ, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == str(shown)


def test_the_hub_is_probed_once_per_process_with_a_short_timeout(monkeypatch):
    calls = []

    def hangs(address, timeout=None):  # a laptop with no network: name resolution waits
        calls.append(address)
        time.sleep(6)
        raise OSError("unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(env.socket, "create_connection", hangs)
    env._hub_reachable.cache_clear()
    try:
        start = time.perf_counter()
        assert env.is_offline() and env.is_offline() and env.is_offline()
        assert time.perf_counter() - start < 5 and len(calls) == 1  # one probe, cut off after 3 s
    finally:
        env._hub_reachable.cache_clear()

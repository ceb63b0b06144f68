"""Shared fixtures. Tests run offline: HF_HUB_OFFLINE=1 is set before anything imports the hub client."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from ftlib import models  # noqa: E402


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny random Llama built in code."""
    return models.load("tiny-random")


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the real offline default, SmolLM2-135M-Instruct."""
    return models.load("smollm2-135m")

"""GGUF export: the tiny model (llama and qwen2) and the CPU default written to GGUF read back to the same answers,
the chat template travels, a broken conversion is caught, the Ollama Modelfile, and the command line."""

import json
import shutil
import subprocess
import sys

import gguf
import pytest
import torch
from test_export import make_adapter

from ftlib import export, models


@pytest.fixture(scope="module")
def merged_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    merged, tok, check = export.merge("tiny-random", make_adapter(root / "adapter"))
    assert check.passed
    return export.save(merged, tok, root / "merged", card={"base_model": "tiny-random", "license": "apache-2.0"})


def fields(path) -> dict:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()} | {
        "tensor types": {t.name: t.tensor_type.name for t in reader.tensors}}


@pytest.mark.parametrize("quant", export.GGUF_QUANTS)
def test_tiny_model_reads_back_with_the_same_answers(merged_folder, tmp_path, quant):
    path, check = export.to_gguf(merged_folder, tmp_path / f"tiny.{quant}.gguf", quant, max_new_tokens=12)
    assert check.passed and check.total == len(export.PROBES) and check.tolerance == export.GGUF_TOLERANCE[quant], check
    assert check.answers_required == (quant == "f16") and quant in repr(check)  # q8_0 may flip a near tie
    if quant == "f16":
        assert check.identical == check.total
    _, tok = export.reload(merged_folder)
    meta = fields(path)
    assert meta["tokenizer.chat_template"] == tok.chat_template and meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.eos_token_id"] == tok.eos_token_id and meta["tokenizer.ggml.pre"] == "gpt-2"
    types = meta["tensor types"]
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == quant.upper()
    assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd
    assert path.stat().st_size < (merged_folder / "model.safetensors").stat().st_size


def test_a_wrong_conversion_is_caught(merged_folder, tmp_path, monkeypatch):
    """Without llama.cpp's q/k row order, transformers' un-permute scrambles attention: the check must fail."""
    monkeypatch.setattr(export, "_permute", lambda weight, heads: weight)
    _, check = export.to_gguf(merged_folder, tmp_path / "wrong.gguf", max_new_tokens=12)
    assert not check.passed and check.max_logit_diff > check.tolerance


def test_qwen2_architecture_with_biases(tiny, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch = {k: v for k, v in models.PRESETS["tiny-random"].arch.items() if k != "model_type"}
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**arch, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.5)  # zero biases would hide a wrong mapping
    folder = export.save(model, tiny[1], tmp_path / "qwen2")
    path, check = export.to_gguf(folder, max_new_tokens=12)
    assert path == tmp_path / "qwen2.f16.gguf" and check.passed, check
    meta = fields(path)
    assert meta["general.architecture"] == "qwen2" and "blk.1.attn_k.bias" in meta["tensor types"]


def test_modelfile_translates_chatml_with_its_system_prompt(tiny, tmp_path):
    tok = tiny[1]
    path = export.modelfile(tok, tmp_path / "support.q8_0.gguf")
    text = path.read_text()
    assert path.name == "support.q8_0.Modelfile" and "FROM ./support.q8_0.gguf\n" in text
    assert f'TEMPLATE """{export.CHATML_GO}"""' in text and "SYSTEM" not in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|im_start|>"' in text
    original = tok.chat_template
    try:
        tok.chat_template = ("{% if messages[0]['role'] != 'system' %}"
                             "{{ '<|im_start|>system\nYou are Tsubame.<|im_end|>\n' }}{% endif %}" + original)
        assert 'SYSTEM """You are Tsubame."""' in export.modelfile(tok, tmp_path / "s.gguf").read_text()
        tok.chat_template = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
        with pytest.raises(ValueError, match="not ChatML"):
            export.modelfile(tok, tmp_path / "llama2.gguf")
    finally:
        tok.chat_template = original


def test_unknown_tokenizer_or_architecture_is_refused(merged_folder, tmp_path):
    folder = shutil.copytree(merged_folder, tmp_path / "copy")
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    tokenizer_json["pre_tokenizer"] = {"type": "Whitespace"}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    with pytest.raises(ValueError, match=r"tokenizer.json: its pre_tokenizer splits text as \('Whitespace',\).*"
                                         "convert_hf_to_gguf.py"):
        export.write_gguf(folder, tmp_path / "x.gguf")
    config = json.loads((folder / "config.json").read_text())
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 1024, "rope_theta": 5e5}  # Llama 3.x: needs llama.cpp's converter
    (folder / "config.json").write_text(json.dumps(config | {"rope_parameters": llama3}))
    with pytest.raises(ValueError, match="RoPE 'llama3'.*convert_hf_to_gguf.py"):
        export.write_gguf(folder, tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="quant='q4'"):
        export.write_gguf(merged_folder, tmp_path / "x.gguf", "q4")


def test_command_line_exports_an_adapter(tmp_path):
    adapter = make_adapter(tmp_path / "adapter", seed=4)
    out = tmp_path / "support.gguf"
    done = subprocess.run([sys.executable, "-m", "ftlib.export", "--adapter", str(adapter), "--gguf", str(out),
                           "--quant", "q8_0"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file() and out.with_suffix(".Modelfile").is_file()
    assert "merged vs base + adapter" in done.stdout and "support.gguf (read back by transformers)" in done.stdout
    assert done.stdout.count("passed") == 2 and "NO" not in done.stdout
    assert fields(out)["tensor types"]["blk.0.ffn_up.weight"] == "Q8_0"


@pytest.mark.slow
def test_cpu_default_exports_to_a_checked_gguf(tmp_path):
    adapter = make_adapter(tmp_path / "adapter", "smollm2-135m", std=0.01)
    merged, tok, check = export.merge("smollm2-135m", adapter, probes=export.PROBES[::3], max_new_tokens=16)
    folder = export.save(merged, tok, tmp_path / "merged", card={"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    path, check = export.to_gguf(folder, quant="q8_0", probes=export.PROBES[::3], max_new_tokens=16)
    assert check.passed and check.total == 2, check
    assert fields(path)["tokenizer.chat_template"] == tok.chat_template
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in path.with_suffix(".Modelfile").read_text()

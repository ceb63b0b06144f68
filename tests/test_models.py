import copy
import dataclasses
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling

from ftlib import models


def eos_labels(tokenizer) -> int:
    """How many EOS tokens keep their label after the language-modelling collator pads a batch."""
    texts = ["Hi!", "The warranty is 18 months."]
    batch = DataCollatorForLanguageModeling(tokenizer, mlm=False)([tokenizer(t + tokenizer.eos_token) for t in texts])
    return int((batch["labels"] == tokenizer.eos_token_id).sum())


def test_presets_table_has_what_a_learner_needs():
    table = models.presets()
    for column in ["hub_id", "languages", "template", "params_b", "lora_targets", "license", "gated"]:
        assert column in table.columns
    assert {"tiny-random", "smollm2-135m", "llama-3.1-8b", "elyza-jp-8b"} <= set(table.index)
    japanese = table[table.languages.str.contains("ja") & ~table.gated]
    assert len(japanese) >= 2
    assert not models.PRESETS[models.GPU_DEFAULT["en"]].gated and not models.PRESETS[models.GPU_DEFAULT["ja"]].gated
    assert table.loc["llama-3.1-8b", "gated"]
    for preset in models.PRESETS.values():
        assert preset.arch["num_hidden_layers"] > 0 and preset.lora_targets


def test_auto_is_the_offline_default_without_gpu():
    if not torch.cuda.is_available():
        assert models.resolve("auto").name == "smollm2-135m"


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(models.ModelLoadError, match="smollm2-135m"):
        models.load("no-such-model")


def test_hub_model_offline_fails_at_once_with_advice():
    start = time.perf_counter()
    with pytest.raises(models.ModelLoadError, match="smollm2-135m") as err:
        models.load("qwen2.5-1.5b")
    assert "offline" in str(err.value) and time.perf_counter() - start < 5


def test_tiny_random_loads_offline_and_generates(tiny):
    model, tok = tiny
    assert model.config.num_hidden_layers == 2
    inputs = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5 or out[0, -1] == tok.eos_token_id


@pytest.mark.parametrize("fixture", ["tiny", "smollm2"])
def test_chat_template_round_trip(fixture, request):
    _, tok = request.getfixturevalue(fixture)
    messages = [{"role": "user", "content": "保証は何か月ですか？ How long?"},
                {"role": "assistant", "content": "18 months."}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert "保証は何か月ですか？ How long?" in text and "18 months." in text
    assert text.count("<|im_start|>") >= 2 and text.count("<|im_end|>") >= 2
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("fixture", ["tiny", "smollm2"])
def test_pad_is_not_eos_so_eos_keeps_its_label(fixture, request):
    model, tok = request.getfixturevalue(fixture)
    assert tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    assert tok.padding_side == "right"
    assert eos_labels(tok) == 2
    quick_fix = copy.deepcopy(tok)
    quick_fix.pad_token = quick_fix.eos_token
    assert eos_labels(quick_fix) == 0  # the pitfall the course prevents


def test_set_pad_token_adds_one_when_no_spare_exists():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"hello": 0, "world": 1, "</s>": 2}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="</s>")), eos_token="</s>")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=3, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    assert models.set_pad_token(tok, model) == "<|pad|>"
    assert tok.pad_token_id == 3 != tok.eos_token_id
    assert model.get_input_embeddings().weight.shape[0] == 4 and model.config.pad_token_id == 3


def test_padding_side_context_restores(tiny):
    _, tok = tiny
    with models.padding_side(tok, "left"):
        batch = tok(["a", "a longer line"], padding=True, return_tensors="pt")
        assert batch["attention_mask"][0, 0] == 0  # padding on the left
    assert tok.padding_side == "right"


def test_4bit_load_has_linear4bit_layers_on_cpu():
    import bitsandbytes as bnb

    model, tok = models.load("tiny-random", quantization="4bit")
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 2 * 7  # every projection of both layers
    full, _ = models.load("tiny-random")
    assert model.get_memory_footprint() < full.get_memory_footprint()
    logits = model(**tok("hello", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()


def _checkpoint_mappings() -> list[tuple[int, int]]:
    """Address ranges of the .safetensors files this process has memory-mapped (/proc/self/maps)."""
    ranges = []
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) > 5 and fields[5].endswith(".safetensors"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def test_4bit_load_keeps_no_parameter_in_the_checkpoint_file():
    model, tok = models.load("tiny-random", quantization="4bit")
    mapped = _checkpoint_mappings()
    inside = [name for name, p in model.named_parameters() if any(a <= p.data_ptr() < b for a, b in mapped)]
    assert inside == []  # a view into the mapped fp32 file would keep all of it resident
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied
    assert torch.isfinite(model(**tok("hello", return_tensors="pt")).logits).all()


def test_8bit_load_has_int8_layers():
    import bitsandbytes as bnb

    model, _ = models.load("tiny-random", quantization="8bit")
    assert sum(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules()) == 2 * 7


def test_bad_quantization_is_named():
    with pytest.raises(ValueError, match="4bit"):
        models.load("tiny-random", quantization="3bit")


@pytest.mark.slow
def test_smollm2_is_real_and_offline(smollm2):
    model, tok = smollm2
    assert 130e6 < model.num_parameters() < 140e6
    inputs = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, inputs["input_ids"].shape[1]:])


@pytest.mark.slow
def test_converted_smollm2_reloads_identically(smollm2):
    model, tok = smollm2
    folder = models.local_path("smollm2-135m")
    assert (folder / "model.safetensors").exists()
    again = AutoModelForCausalLM.from_pretrained(folder)
    ids = AutoTokenizer.from_pretrained(folder)("Tsubame Tech sells cameras.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-5)


def test_resolve_takes_any_hub_id():
    assert models.resolve("Qwen/Qwen2.5-1.5B-Instruct") is models.PRESETS["qwen2.5-1.5b"]
    other = models.resolve("someone/their-model")
    assert other.name == other.hub_id == "someone/their-model"
    assert other.license == "see https://huggingface.co/someone/their-model"
    with pytest.raises(models.ModelLoadError, match="unknown preset 'no-such-preset'"):
        models.resolve("no-such-preset")


@pytest.mark.parametrize("capability, expected", [((7, 5), models.FP16_DEFAULT), ((8, 0), models.GPU_DEFAULT)])
def test_auto_never_picks_a_model_reported_to_overflow_in_fp16(monkeypatch, capability, expected):
    monkeypatch.setattr(models.env, "device", lambda: "cuda")  # a T4 (7.5) computes in fp16, an A100 (8.0) in bf16
    monkeypatch.setattr(models.env, "compute_dtype", lambda dev=None: models.env.choose_dtype("cuda", capability))
    for lang in ("en", "ja"):
        picked = models.resolve("auto", lang)
        assert picked.name == expected[lang]
        if capability < (8, 0):
            assert picked.fp16 == "" and not picked.gated
    for name in ("qwen2.5-1.5b", "tinyswallow-1.5b", "gemma-3-1b"):  # each row names its reports
        assert models.PRESETS[name].fp16.startswith("overflows:") and "github.com/" in models.PRESETS[name].fp16
    assert "fp16" in models.presets().columns


def test_loading_a_model_that_overflows_in_fp16_warns(monkeypatch):
    monkeypatch.setitem(models.PRESETS, "tiny-random", dataclasses.replace(
        models.PRESETS["tiny-random"], fp16="overflows: a report"))
    with pytest.warns(UserWarning, match="tiny-random in fp16: overflows: a report.*StopOnNonFinite"):
        models.load("tiny-random", dtype="float16")

"""ftlib.memory and the modules behind it (architecture, estimator, measure, published, training_time, calculator,
plots' memory charts): exact where exactness is possible (peft's counts, bitsandbytes' footprint), close to a real run.

The slow tests train a few real steps of SmolLM2-135M (full, LoRA, QLoRA) with transformers' Trainer on CPU.
"""

import inspect
import math

import matplotlib.pyplot as plt
import pytest
import torch

from ftlib import (
    architecture,
    calculator,
    estimator,
    measure,
    memory,
    models,
    plots,
    published,
    recipe,
    training_time,
)

LORA_CASES = [("all-linear", 8), ("all-linear", 16), (("q_proj", "v_proj"), 8), (("q_proj", "v_proj"), 16)]
SMALL = {"steps": 2, "max_length": 32, "batch": 2}  # measured runs: a few real steps, short sequences


def _peft_trainable(model, targets, r: int) -> int:
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets) if not
                                               isinstance(targets, str) else targets, task_type="CAUSAL_LM"))
    trainable, _ = wrapped.get_nb_trainable_parameters()
    assert trainable == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    return trainable


@pytest.mark.parametrize("name", ["tiny-random", "smollm2-135m"])
@pytest.mark.parametrize(("targets", "r"), LORA_CASES, ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v))
def test_lora_trainable_parameters_equal_peft_exactly(name, targets, r):
    model, _ = models.load(name)  # a fresh copy: get_peft_model changes the model in place
    from_config = memory.estimate(name, "lora", r=r, target_modules=targets)  # meta device, no weights
    from_model = memory.estimate(model, "lora", r=r, target_modules=targets)
    assert from_config.trainable_params == from_model.trainable_params == _peft_trainable(model, targets, r)


@pytest.mark.parametrize(("fixture", "name"), [("tiny", "tiny-random"), ("smollm2", "smollm2-135m")])
def test_full_trainable_parameters_are_every_parameter_once(fixture, name, request):
    model, _ = request.getfixturevalue(fixture)
    assert model.config.tie_word_embeddings  # lm_head shares the embedding: it must count once
    expected = sum(p.numel() for p in model.parameters())
    assert memory.estimate(name, "full").trainable_params == expected
    assert memory.estimate(model, "full").trainable_params == expected == model.num_parameters()


def test_quantized_bytes_per_parameter_follow_the_qlora_paper():
    assert memory.quant_bytes("nf4", double_quant=True) == pytest.approx((4 + 0.127) / 8, abs=1e-4)
    assert memory.quant_bytes("nf4", double_quant=False) == pytest.approx(4.5 / 8)
    assert memory.quant_bytes("int8") == 1.0


def test_tiny_4bit_weights_match_bitsandbytes_footprint():
    model, _ = models.load("tiny-random", quantization="4bit")
    est = memory.estimate("tiny-random", "qlora", dtype=torch.float32, kbit_upcast=False)
    # get_memory_footprint counts 0.5 B per 4-bit weight (the packed bytes); the estimate adds the constants
    assert est.weights - est.adapter_weights == pytest.approx(model.get_memory_footprint(), rel=0.05)


def test_llama_8b_qlora_fits_a_t4_at_1024_tokens_and_full_fine_tuning_does_not():
    qlora = memory.estimate("llama-3.1-8b", "qlora", max_length=1024, batch=1)
    assert qlora.gradient_checkpointing  # prepare_model_for_kbit_training's default
    assert qlora.fits(15.0) and qlora.verdict(15.0) == "fits"
    assert not memory.estimate("llama-3.1-8b", "full", max_length=1024, batch=1).fits(15.0)
    assert not memory.estimate("llama-3.1-8b", "lora", max_length=1024, batch=1).fits(15.0)  # 16 GB of fp16 weights


@pytest.mark.parametrize("name", list(models.PRESETS))
def test_every_preset_is_sized_from_its_name_without_weights(name, monkeypatch):
    import transformers

    def no_download(*args, **kwargs):
        raise AssertionError("estimate() must not load weights or configs from the hub")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_download)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_download)
    architecture._of_name.cache_clear()
    ests = {m: memory.estimate(name, m, max_length=512, batch=1, gradient_checkpointing=True) for m in memory.METHODS}
    assert ests["full"].params == pytest.approx(models.PRESETS[name].params_b * 1e9, rel=0.02)
    assert 0 < ests["qlora"].total < ests["lora"].total < ests["full"].total
    assert 0 < ests["lora"].trainable_params < ests["full"].trainable_params == ests["full"].params


@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-1.5b", "llama-3.1-8b"])
def test_memory_moves_the_right_way(name):
    def est(method="lora", **kw):
        return memory.estimate(name, method, **{"max_length": 512, "batch": 2, "gradient_checkpointing": False, **kw})

    assert est("qlora").total < est("lora").total < est("full").total
    for method in memory.METHODS:
        assert est(method, gradient_checkpointing=True).activations < est(method).activations
        assert est(method, max_length=1024).activations > est(method).activations
        assert est(method, batch=4).activations > est(method).activations
    assert est(attention="eager").activations > est().activations  # stored s x s scores
    assert est(r=64).total > est(r=8).total
    assert est("full", optimizer="adamw_8bit").optimizer_state < est("full").optimizer_state / 3


@pytest.mark.parametrize("method", memory.METHODS)
def test_gradients_and_activations_do_not_peak_together(method):
    est = memory.estimate("smollm2-135m", method, max_length=128, batch=4, dtype=torch.float32)
    static = est.weights + est.optimizer_state + est.overhead
    assert est.total == static + max(est.activations + est.head_gradient, est.gradients)
    assert est.total < sum(getattr(est, c) for c in memory.COMPONENTS)
    embedding = 49152 * 576 * 4  # tied: the output layer's fp32 gradient is the embedding's, first in backward
    assert est.head_gradient == (embedding if method == "full" else 0)
    long = memory.estimate("llama-3.1-8b", method, max_length=4096, batch=1, gradient_checkpointing=False)
    assert long.total == long.weights + long.optimizer_state + long.overhead + max(
        long.activations + long.head_gradient, long.gradients)


def test_loss_costs_one_logits_tile_of_the_fused_lm_head():
    def head(vocab, seq, device):  # the activations a bigger vocabulary adds, all else equal
        config = architecture._config({**models.PRESETS["qwen2.5-1.5b"].arch, "vocab_size": vocab})
        return memory.estimate(config, "lora", max_length=seq, batch=1, device=device,
                               gradient_checkpointing=False).activations

    base = architecture._config(models.PRESETS["qwen2.5-1.5b"].arch)
    assert architecture.of(base).vocab == 151936
    assert head(151936, 1024, "cuda") == head(65536, 1024, "cuda")  # the tile is 32768 columns wide at most
    assert head(151936, 1024, "cuda") - head(16384, 1024, "cuda") == 1024 * (32768 - 16384) * 2
    assert head(151936, 8192, "cuda") - head(16384, 8192, "cuda") == 4096 * (32768 - 16384) * 2  # 4096 tokens a tile
    cpu_extra = head(151936, 1024, "cpu") - head(151936, 1024, "cuda")
    assert cpu_extra == 1024 * 32768 * (4 * estimator.CPU_HEAD_TILES - 2)


@pytest.mark.slow
def test_cpu_fused_lm_head_keeps_the_tiles_the_estimate_counts():
    import ctypes
    import threading

    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2

    def live() -> int:  # bytes malloc has handed out and not taken back: what the process really holds
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    tokens, vocab = 1024, 40000
    hidden = torch.randn(tokens, 64, requires_grad=True)
    out = ChunkedLogProbFunction.apply(hidden, torch.randn(vocab, 64), None, torch.randint(0, vocab, (tokens,)),
                                       1.0, estimator.HEAD_TILE[1], None, 1.0, ("log_probs", "entropy", "is_top1"))
    start, peak, stop = live(), [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], live())

    thread = threading.Thread(target=watch)
    thread.start()
    (-out[0].sum()).backward()
    stop.set()
    thread.join()
    tiles = (peak[0] - start) / (tokens * estimator.HEAD_TILE[1] * 4)
    assert estimator.CPU_HEAD_TILES * 0.8 < tiles < estimator.CPU_HEAD_TILES * 1.2


def test_estimate_displays_and_tabulates():
    est = memory.estimate("smollm2-135m", "qlora", max_length=256, batch=2)
    text, page = repr(est), est._repr_html_()
    assert "optimizer state" in text and "T4" in text and "<table>" in page
    assert est.total == est.weights + est.optimizer_state + est.overhead + max(est.activations, est.gradients)
    row = est.to_frame()
    assert len(row) == 1 and row.loc[0, "total_gib"] == pytest.approx(est.total / 2**30)


def test_t4_table_gives_a_verdict_per_setting():
    table = memory.t4_table(["smollm2-135m", "llama-3.1-8b"])
    assert list(table.columns) == ["preset", "method", "seq", "batch", "GiB", "fits"]
    assert len(table) == 2 * 3 * 3 * 3
    pick = table.set_index(["preset", "method", "seq", "batch"])
    assert pick.loc[("llama-3.1-8b", "qlora", 1024, 1), "fits"]
    assert not pick.loc[("llama-3.1-8b", "full", 512, 1), "fits"]
    assert pick.loc[("smollm2-135m", "full", 512, 1), "fits"]


def test_published_figures_carry_their_source():
    table = memory.published()
    assert table["source"].str.contains("http").all()
    assert {"HF blog (2023)", "LLaMA-Factory README", "QLoRA paper (2023)"} == set(table["source_name"])
    blog = table[(table["source_name"] == "HF blog (2023)") & (table["model"] == "llama-7b")
                 & table["method"].str.contains("NF4") & ~table["gradient_checkpointing"].astype(bool)]
    assert blog[blog["max_length"] == 512]["fits"].all() and not blog[blog["max_length"] == 1024]["fits"].any()
    factory = table[(table["source_name"] == "LLaMA-Factory README") & (table["model"] == "7B")]
    assert factory[factory["method"] == "QLoRA, 4-bit"]["gb"].item() == 6


def test_compare_published_says_where_it_agrees_and_why_not():
    table = memory.compare_published()
    assert {"published", "ftlib_gib", "agrees", "why", "source"} <= set(table.columns)
    assert table["agrees"].mean() > 0.8
    assert (table.loc[~table["agrees"], "why"].str.len() > 10).all()


def test_epoch_time_is_a_flops_estimate():
    full = memory.epoch_time_t4("llama-3.1-8b", 1_000_000, "full", gradient_checkpointing=False)
    lora = memory.epoch_time_t4("llama-3.1-8b", 1_000_000, "lora", gradient_checkpointing=False)
    qlora_gc = memory.epoch_time_t4("llama-3.1-8b", 1_000_000, "qlora")
    assert full.flops / lora.flops == pytest.approx(1.5)  # 6·N·D vs 4·N·D
    assert qlora_gc.flops / lora.flops == pytest.approx(1.5)  # checkpointing recomputes the forward
    assert full.flops == pytest.approx(6 * 8.03e9 * 1e6, rel=0.1)
    assert full.seconds == pytest.approx(full.flops / (65e12 * 0.35))
    assert memory.epoch_time_t4("llama-3.1-8b", 2_000_000, "full").seconds > full.seconds
    assert "estimate" in repr(full)


def test_calculator_and_plot_work_without_a_browser():
    box = memory.calculator()
    assert box.estimate.method == "qlora"
    seq = next(child for child in box.children if getattr(child, "description", "") == "max_length")
    before = box.estimate.activations
    seq.value = 4096
    assert box.estimate.activations > before
    fig = plots.memory_bars([memory.estimate("smollm2-135m", "lora"), memory.estimate("smollm2-135m", "qlora")])
    assert len(fig.axes[0].patches) == 2 * len(memory.COMPONENTS)
    plt.close(fig)
    fig = plots.memory_breakdown(box.estimate)
    plt.close(fig)


# --- real training steps (slow) ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_4bit():
    """A fresh 4-bit SmolLM2 with its bitsandbytes footprint and estimate, read before anyone trains it."""
    model, tokenizer = models.load("smollm2-135m", quantization="4bit")
    return model, tokenizer, model.get_memory_footprint(), memory.estimate(model, "qlora", dtype=torch.float32,
                                                                            kbit_upcast=False)


@pytest.mark.slow
def test_smollm2_4bit_weights_match_bitsandbytes_footprint(smollm2_4bit):
    _, _, footprint, from_model = smollm2_4bit
    assert from_model.params == 134_515_008  # Linear4bit layers are sized as in x out, not by packed bytes
    est = memory.estimate("smollm2-135m", "qlora", dtype=torch.float32, kbit_upcast=False)
    for e in (est, from_model):
        assert e.weights - e.adapter_weights == pytest.approx(footprint, rel=0.05)


@pytest.fixture(scope="module")
def measured(smollm2_4bit):
    runs = {method: memory.measure("smollm2-135m", method, **SMALL) for method in ("full", "lora")}
    model, tokenizer, _, _ = smollm2_4bit
    runs["qlora"] = memory.measure((model, tokenizer), "qlora", **SMALL)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("method", memory.METHODS)
def test_estimate_matches_a_real_run_on_cpu(measured, method):
    got = measured[method]
    est = memory.estimate("smollm2-135m", method, max_length=SMALL["max_length"], batch=SMALL["batch"],
                          dtype=torch.float32, gradient_checkpointing=got.gradient_checkpointing)
    assert est.trainable_params == got.trainable_params
    for component in ("weights", "gradients", "optimizer_state"):
        assert getattr(est, component) == pytest.approx(getattr(got, component), rel=0.15), component
    static = got.weights + got.gradients + got.optimizer_state
    assert static == pytest.approx(est.weights + est.gradients + est.optimizer_state, rel=0.15)
    if not got.gradient_checkpointing:  # saved for backward vs saved + the CPU head's tiles: within a factor of 2.5
        assert 1 < est.activations / got.activations < 2.5
    assert got.peak_rss > static + got.activations
    assert got.total == got.peak_rss and got.cuda_peak is None
    assert got.seconds_per_step > 0 and math.isfinite(got.loss)
    assert got.checkpoint_bytes > (0 if method == "full" else got.trainable_params * 4 * 0.9)


@pytest.mark.slow
def test_measurements_display_beside_estimates(measured):
    got = measured["qlora"]
    assert got.gradient_checkpointing == recipe.gradient_checkpointing()  # the course's rule: on a GPU only
    assert got.trainable_params < got.params / 20
    assert "peak RSS" in repr(got) and "<table>" in got._repr_html_()
    est = memory.estimate("smollm2-135m", "qlora", max_length=SMALL["max_length"], batch=SMALL["batch"],
                          dtype=torch.float32)
    table = memory.frame([est, got])
    assert list(table["kind"]) == ["estimate", "measured"]
    assert table.loc[1, "checkpoint_gib"] == pytest.approx(got.checkpoint_bytes / 2**30)
    fig = plots.memory_bars([est, got])
    plt.close(fig)


def test_kv_cache_bytes_equal_the_cache_generation_keeps(tiny):
    model, tok = tiny
    ids = tok(["a short prompt", "another prompt here"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        cache = model(**ids, use_cache=True).past_key_values
    kept = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    tokens, batch = ids["input_ids"].shape[1], ids["input_ids"].shape[0]
    assert memory.kv_cache_bytes(model.config, tokens, batch, model.dtype) == kept
    assert memory.kv_cache_bytes(model.config, 2 * tokens, batch, model.dtype) == 2 * kept  # linear in the prompt


MEMORY_MODULES = [memory, architecture, estimator, measure, published, training_time, calculator]


def test_memory_door_keeps_the_names_the_course_calls():
    for name in memory.__all__:
        assert getattr(memory, name) is not None
    assert memory.measure is measure.measure and memory.estimate is estimator.estimate


def _public_functions(module):
    return [obj for name, obj in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__]

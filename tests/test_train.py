"""Training: loss falls, the prompt is masked and EOS trained, runs repeat with one seed, a killed run resumes,
and the same code runs on two processes under accelerate."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from peft import get_peft_model

from ftlib import data, memory, models, recipe, train
from ftlib.env import ROOT


@pytest.fixture(scope="module")
def small():
    """A small slice of the course data: quick to train on, big enough to learn from."""
    dataset, _ = data.prepare("en")
    dataset["train"] = dataset["train"].select(range(24))
    dataset["validation"] = dataset["validation"].select(range(8))
    return dataset


def test_lora_config_targets_every_linear_layer_but_the_head(tiny):
    model, _ = tiny
    config = recipe.lora_config(r=4)
    assert config.lora_alpha == 8 and config.target_modules == "all-linear"
    tuned = get_peft_model(models.load("tiny-random")[0], config)
    adapted = {name.rsplit(".", 1)[-1] for name, module in tuned.named_modules() if hasattr(module, "lora_A")}
    assert adapted == set(models.PRESETS["tiny-random"].lora_targets)  # lm_head is left alone
    with pytest.raises(ValueError, match="qkv_proj"):  # peft's own message names the missing layer
        get_peft_model(models.load("tiny-random")[0], recipe.lora_config(target_modules=["qkv_proj"]))


def test_prepare_adapts_4bit_layers_and_keeps_adapters_fp32():
    model, _ = recipe.prepare("tiny-random", "qlora", recipe.lora_config(r=4))
    adapted = [module for module in model.modules() if hasattr(module, "lora_A")]
    assert adapted and all(type(module.base_layer).__name__ == "Linear4bit" for module in adapted)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="4 bits"):
        recipe.prepare(models.load("tiny-random"), "qlora")


def test_sft_config_masks_the_prompt_and_trains_eos(tiny, small, tmp_path):
    from trl import SFTTrainer

    model, tok = tiny
    trainer = SFTTrainer(model=model, args=recipe.sft_config(tmp_path, max_steps=1), processing_class=tok,
                         train_dataset=small["train"].select(range(2)), eval_dataset=small["validation"])
    for row, prepared in zip(small["train"].select(range(2)), trainer.train_dataset, strict=True):
        ids, labels = prepared["input_ids"], prepared["labels"]
        trained = tok.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])
        masked = tok.decode([i for i, label in zip(ids, labels, strict=True) if label == -100])
        assert row["prompt"][-1]["content"] in masked and row["prompt"][-1]["content"] not in trained
        assert trained.startswith(row["completion"][0]["content"])
        assert tok.eos_token in trained and tok.eos_token_id in [i for i, lab in zip(ids, labels, strict=True)
                                                                  if lab != -100]


def run(model, small, tmp_path, **kwargs):
    settings = {"method": "lora", "max_steps": 6, "per_device_train_batch_size": 4, "learning_rate": 3e-3,
                "eval_steps": 3, "live": False, "max_length": 192, **kwargs}
    return train.train(model, small, output_dir=tmp_path, **settings)


def test_tiny_random_validation_loss_falls_and_adapter_is_saved(small, tmp_path):
    result = run("tiny-random", small, tmp_path)
    losses = result.history["eval_loss"].dropna()
    assert result.history["step"].iloc[0] == 0 and losses.iloc[-1] < losses.iloc[0]
    assert (result.adapter_path / "adapter_config.json").exists()
    assert (result.adapter_path / "adapter_model.safetensors").exists()
    saved = json.loads((result.adapter_path / train.SUMMARY).read_text())
    assert saved["training seconds"] == pytest.approx(result.seconds, abs=0.1)
    assert saved["steps"] == result.history["step"].max()
    assert 0 < result.seconds < result.wall_seconds and result.tokens_per_second > 0
    pd.testing.assert_frame_equal(train.saved_history(result.adapter_path), result.history, check_dtype=False)
    with pytest.raises(FileNotFoundError, match="train it again"):
        train.saved_history(tmp_path)


def test_the_loss_is_scored_on_labelled_positions_only_with_the_same_value(monkeypatch):
    """TRL's fused LM head projects every position off CUDA unless told; the course's trainer tells it to project the
    labelled ones only (score_labelled_positions_only): the same loss and gradients from fewer positions."""
    import trl.kernels.chunked_logprob as trl_kernels
    import trl.trainer.utils as trl_utils

    projected, original = [], trl_utils._ChunkedLogProbFunction

    class Counting(original):
        @staticmethod
        def forward(ctx, hidden, *args):
            projected.append(hidden.shape[0])
            return original.forward(ctx, hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    monkeypatch.setattr(trl_utils, "_use_triton", trl_kernels._use_triton)  # TRL's own choice, whatever ran before
    torch.manual_seed(0)
    model, _ = recipe.prepare("tiny-random", "lora", recipe.lora_config(r=4, lora_dropout=0.0))  # no random masks
    trl_utils.add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(3, model.config.vocab_size, (2, 12))
    labels = ids.clone()
    labels[:, :8] = -100  # the prompt: no loss

    def loss_and_grads():
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
        (-out.log_probs.sum() / out.label_mask.sum()).backward()
        return out, [p.grad.clone() for p in model.parameters() if p.requires_grad]

    every, every_grads = loss_and_grads()
    train.score_labelled_positions_only()
    for device in ("cuda", "xpu", "mps", "meta"):  # every device but a CPU keeps TRL's own choice
        assert trl_utils._use_triton(torch.device(device)) == trl_kernels._use_triton(torch.device(device))
    labelled, labelled_grads = loss_and_grads()
    assert projected == [2 * 11, 2 * 4]  # every shifted position, then only those with a label
    for field in ("log_probs", "entropy", "is_top1", "label_mask"):
        torch.testing.assert_close(getattr(labelled, field), getattr(every, field))
    for a, b in zip(labelled_grads, every_grads, strict=True):
        torch.testing.assert_close(a, b)


def prepared_rows(tiny, rows, max_length):
    """`rows` as TRL prepares them for training (chat template, labels, cut to max_length)."""
    from trl import SFTTrainer

    model, tok = tiny
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(model=model, args=recipe.sft_config(out, max_length=max_length), processing_class=tok,
                             train_dataset=rows, eval_dataset=rows.select(range(1)))
    return trainer.train_dataset


def test_every_trained_token_is_counted_once(tiny, small, tmp_path):
    """One epoch (24 rows, batch 4, 6 steps): the tokens counted are exactly those of the batches LengthBuckets
    makes of the 24 rows, though evaluations run before, between and after, and the data loader builds ahead."""
    result = run("tiny-random", small, tmp_path)
    lengths = [len(ids) for ids in prepared_rows(tiny, small["train"], 192)["input_ids"]]
    order = list(train.LengthBuckets(lengths, 4, seed=0))
    padded = sum(4 * max(lengths[i] for i in order[k:k + 4]) for k in range(0, 24, 4))
    assert result.tokens == sum(lengths)
    assert result.real_token_share == pytest.approx(sum(lengths) / padded)


def epoch_padding(order, lengths, batch):
    batches = [order[i:i + batch] for i in range(0, len(order), batch)]
    return 1 - sum(lengths) / sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_length_buckets_pad_less_than_group_by_length(tiny):
    """Every row once per epoch; batches of near-equal length; a new order each epoch, the same one again for the
    same seed and epoch (resume); less padding than transformers' sampler on the course's row lengths."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [len(ids) for ids in prepared_rows(tiny, data.course_dataset("en")["train"], 384)["input_ids"]]
    sampler = train.LengthBuckets(lengths, 8, seed=0)
    first = list(sampler)
    assert sorted(first) == list(range(len(lengths))) and first == list(sampler)
    sampler.set_epoch(1)
    assert sorted(list(sampler)) == sorted(first) and list(sampler) != first
    ours = epoch_padding(first, lengths, 8)
    theirs = epoch_padding(get_length_grouped_indices(lengths, 8, generator=torch.Generator().manual_seed(0)),
                           lengths, 8)
    assert ours < 0.02 and ours < theirs / 2
    assert max(lengths[i] for i in first[-(len(lengths) % 8):]) == max(lengths)  # the partial batch comes last


def test_step_clock_leaves_out_evaluations_and_saves(monkeypatch):
    now = iter([0.0, 1.0, 6.0, 7.0, 9.0, 10.0])  # start, step, eval ends, step, save ends, step
    monkeypatch.setattr(train.time, "perf_counter", lambda: next(now))
    clock = train.StepClock()
    for event in ("on_step_end", "on_evaluate", "on_step_end", "on_save", "on_step_end"):
        getattr(clock, event)(None, None, None)
    assert clock.seconds == 3.0


def test_qlora_trains_on_cpu_with_fp32_adapters(small, tmp_path):
    result = run("tiny-random", small, tmp_path, method="qlora", max_steps=3)
    losses = result.history["eval_loss"].dropna()
    assert losses.iloc[-1] < losses.iloc[0]
    from safetensors.torch import load_file

    weights = load_file(result.adapter_path / "adapter_model.safetensors")
    assert weights and all(w.dtype.is_floating_point and w.element_size() == 4 for w in weights.values())


def test_one_seed_gives_identical_losses(small, tmp_path):
    a = run("tiny-random", small, tmp_path / "a", max_steps=3)
    b = run("tiny-random", small, tmp_path / "b", max_steps=3)
    assert a.history["train_loss"].dropna().tolist() == b.history["train_loss"].dropna().tolist()


def test_resume_skips_a_checkpoint_cut_off_mid_save(small, tmp_path):
    run("tiny-random", small, tmp_path, max_steps=4, save_steps=2)
    (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()  # killed before the Trainer's last write
    with pytest.warns(UserWarning, match="checkpoint-4 is incomplete"):
        assert train.last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    with pytest.warns(UserWarning, match="incomplete"):
        result = run("tiny-random", small, tmp_path, max_steps=4, save_steps=2, resume=True)
    assert result.history["step"].max() == 4 and (tmp_path / "checkpoint-4" / "trainer_state.json").exists()
    assert train.last_checkpoint(tmp_path / "nothing-here") is None


@pytest.mark.slow
def test_smollm2_validation_loss_falls(small, tmp_path):
    result = run("smollm2-135m", small, tmp_path, max_steps=4, eval_steps=4, learning_rate=1e-3)
    losses = result.history["eval_loss"].dropna()
    assert losses.iloc[-1] < losses.iloc[0] - 0.05


def test_mix_general_blends_at_the_ratio(small):
    general = data.general_dataset("en")
    mixed = train.mix_general(small["train"], general, ratio=0.5, seed=1)
    assert len(mixed) == 36 and set(mixed.column_names) == {"prompt", "completion"}
    questions = {row["prompt"][-1]["content"] for row in mixed}
    assert len(questions & {row["prompt"][-1]["content"] for row in general}) == 12


CLI = [sys.executable, "-m", "ftlib.train", "--model", "tiny-random", "--method", "lora", "--max-steps", "8",
       "--batch", "4", "--train-rows", "16", "--eval-steps", "4", "--save-steps", "2", "--max-length", "192",
       "--lr", "3e-3"]


def final_state(folder):
    checkpoint = max(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    losses = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    return state["global_step"], losses


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run([*CLI, "--out", str(straight)], check=True, env=env, capture_output=True, cwd=ROOT)

    cut = tmp_path / "cut"
    proc = subprocess.Popen([*CLI, "--out", str(cut)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 300
    mid_run = [cut / f"checkpoint-{step}" / "trainer_state.json" for step in (4, 6)]  # 4 is gone once 8 is saved
    while not any(state.exists() for state in mid_run):
        assert proc.poll() is None and time.time() < deadline, "the run ended before its checkpoint"
        time.sleep(0.01)  # the tiny model trains the 4 steps after checkpoint-4 in well under a second
    proc.send_signal(signal.SIGKILL)  # what a Colab disconnect does to the kernel
    proc.wait()
    assert not (cut / "adapter").exists()
    resumed = subprocess.run([*CLI, "--out", str(cut), "--resume"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    step, losses = final_state(cut)
    step_ref, losses_ref = final_state(straight)
    assert step == step_ref == 8 and (cut / "adapter" / "adapter_model.safetensors").exists()
    # the same data and optimizer state; the resumed sampler and dropout masks can differ a little from the
    # uninterrupted run's (seen: 0.16%), so "the same result" means within 2%, and well below the start
    assert losses[8] == pytest.approx(losses_ref[8], rel=2e-2)
    assert losses[8] < losses[1]


@pytest.mark.slow
def test_two_processes_under_accelerate(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu",
           "-m", "ftlib.train", *CLI[3:], "--max-steps", "4", "--out", str(out)]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(out.glob("adapter/adapter_model.safetensors"))) == 1
    step, _ = final_state(out)
    assert step == 4


def test_course_settings_follow_the_machine():
    cpu, gpu = recipe.course_settings(on_gpu=False), recipe.course_settings(on_gpu=True)
    assert cpu["focus"] == recipe.CPU_FOCUS and cpu["max_steps"] > 0 and cpu["learning_rate"] > gpu["learning_rate"]
    assert gpu["focus"] is None and gpu["max_steps"] == -1 and gpu["num_train_epochs"] == 3  # every intent, 3 passes
    assert cpu["lora_dropout"] == 0 < gpu["lora_dropout"]  # dropout masks cost 15% of a CPU step (bench/step_flops.py)
    ja = recipe.course_settings(on_gpu=False, lang="ja")
    assert ja["max_steps"] == cpu["max_steps"] // 2 and recipe.course_settings(on_gpu=True, lang="ja") == gpu


def test_estimate_measure_and_train_read_one_set_of_defaults(small, tmp_path):
    """The same r, target modules, max_length, batch and checkpointing rule: an estimate describes the run trained."""
    model, tok = models.load("tiny-random")
    est = memory.estimate(model, "lora", dtype=torch.float32)
    got = memory.measure("tiny-random", "lora", steps=1)
    result = train.train("tiny-random", small, method="lora", output_dir=tmp_path, max_steps=1, eval_steps=1,
                         live=False)
    assert est.trainable_params == got.trainable_params == result.trainable_params
    assert (est.r, est.max_length, est.batch) == (got.r, got.max_length, got.batch) == \
        (recipe.R, recipe.MAX_LENGTH, recipe.BATCH)
    args = recipe.sft_config(tmp_path)
    assert (args.max_length, args.per_device_train_batch_size) == (recipe.MAX_LENGTH, recipe.BATCH)
    assert est.gradient_checkpointing == got.gradient_checkpointing == args.gradient_checkpointing \
        == recipe.gradient_checkpointing()
    gpu = memory.estimate("qwen2.5-1.5b", "lora")  # 16-bit: sized for a GPU, where the recipe checkpoints
    assert gpu.gradient_checkpointing and recipe.gradient_checkpointing("cuda")


def test_one_function_sets_up_every_trainer(tiny, tmp_path):
    """train (SFTConfig), classify (TrainingArguments), memory.measure and data.label_preview start from
    recipe.trainer_basics: same device, precision, seeds and no reporting."""
    basics = recipe.trainer_basics(seed=3)
    args = recipe.sft_config(tmp_path, seed=3)
    for key, value in basics.items():
        assert getattr(args, key) == value, key
    assert basics["use_cpu"] and not basics["fp16"] and not basics["bf16"] and basics["report_to"] == []


def test_train_refuses_overrides_beside_an_sft_config(small, tmp_path):
    with pytest.raises(ValueError, match="learning_rate"):
        train.train("tiny-random", small, recipe.sft_config(tmp_path), learning_rate=1e-3)
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        train.train("tiny-random", small, recipe.sft_config(tmp_path), early_stopping=1)


def test_cli_trains_on_a_users_file(tmp_path):
    rows = [{"q": f"What is the code word number {i}?", "a": f"The code word is word-{i % 5}."} for i in range(40)]
    path = tmp_path / "mine.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "ftlib.train", "--model", "tiny-random", "--method", "lora",
                           "--data", str(path), "--prompt-column", "q", "--completion-column", "a",
                           "--max-steps", "2", "--eval-steps", "1", "--per-device-train-batch-size", "4",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "adapter" / "adapter_model.safetensors").exists() and "tokens/s" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "ftlib.train", "--model", "tiny-random", "--data", str(path),
                          "--prompt-column", "question"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and str(path) in bad.stderr and "question" in bad.stderr


def test_course_adapter_trains_only_when_missing(small, tmp_path, monkeypatch, capsys):
    from ftlib import env

    monkeypatch.setattr(env, "runs_dir", lambda: tmp_path)
    monkeypatch.setattr(recipe, "course_settings", lambda **_: {
        "focus": ("pricing",), "max_steps": 1, "learning_rate": 1e-3, "lora_dropout": 0.0,
        "per_device_train_batch_size": 2, "max_length": 192, "eval_steps": 1})
    adapter = train.course_adapter("tiny-random", "lora", "en")
    assert "is missing: training it as notebook 03 does, 1 steps: about" in capsys.readouterr().out  # and how long
    assert adapter == train.run_dir("tiny-random", "lora", "en") / "adapter" and adapter.is_relative_to(tmp_path)
    made = (adapter / "adapter_model.safetensors").stat().st_mtime_ns
    assert train.course_adapter("tiny-random", "lora", "en") == adapter  # found, not trained again
    assert (adapter / "adapter_model.safetensors").stat().st_mtime_ns == made


def test_live_loss_redraws_after_evaluations_and_at_most_every_few_seconds(monkeypatch):
    from types import SimpleNamespace

    drawn = []
    monkeypatch.setattr(train, "_in_notebook", lambda: True)
    live = train.LiveLoss("test", every=3600)
    monkeypatch.setattr(live, "_draw", lambda max_steps: (drawn.append(max_steps), setattr(live, "drawn", 0.0)))
    monkeypatch.setattr(train.time, "monotonic", lambda: 1.0)
    state = SimpleNamespace(global_step=1, max_steps=10, is_world_process_zero=True)
    for step in range(1, 6):
        state.global_step = step
        live.on_log(None, state, None, logs={"loss": 1.0 / step})
    assert len(drawn) == 1 and len(live.train) == 5  # the first log draws; the next four are within the interval
    live.on_log(None, state, None, logs={"eval_loss": 0.5})
    live.on_train_end(None, state, None)
    assert len(drawn) == 3 and live.val == [(5, 0.5)]


def test_training_is_quiet_when_not_live(small, tmp_path, capsys):
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the Trainer then turns its progress bar off and prints every log line instead
    try:
        run("tiny-random", small, tmp_path, max_steps=2)
    finally:
        hf_logging.set_verbosity(level)
    assert "'loss'" not in capsys.readouterr().out


def _write_kind(kind: str, frame: pd.DataFrame, folder):
    """The same question-answer rows as a file of `kind` (columns q and a), or as a 🤗 Dataset."""
    from datasets import Dataset

    path = folder / f"rows.{kind.split('-')[0]}"
    if kind == "csv":
        frame.to_csv(path, index=False)
    elif kind == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif kind == "json":
        frame.to_json(path, orient="records", force_ascii=False)
    elif kind == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif kind == "parquet":
        frame.to_parquet(path)
    elif kind == "jsonl-messages":
        chats = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                 for q, a in zip(frame["q"], frame["a"], strict=True)]
        pd.DataFrame(chats).to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        return Dataset.from_pandas(frame)
    return path


@pytest.mark.parametrize("kind", ["csv", "tsv", "json", "jsonl", "parquet", "jsonl-messages", "dataset"])
def test_two_steps_from_each_kind_of_file(kind, tmp_path):
    """Every kind of file data.from_file reads, through a column mapping, trains: the same rows whatever the kind."""
    frame = pd.DataFrame({"q": [f"Which shelf holds book number {i}?" for i in range(30)],
                          "a": [f"Book {i} is on shelf {i % 4}." for i in range(30)]})
    source = _write_kind(kind, frame, tmp_path)
    columns = {"messages": "messages"} if kind == "jsonl-messages" else {"prompt": "q", "completion": "a"}
    dataset = data.from_file(source, **columns)
    assert sum(len(split) for split in dataset.values()) == 30
    assert dataset["train"][0]["prompt"][0]["role"] == "user"  # no system prompt unless asked
    result = train.train("tiny-random", dataset, method="lora", output_dir=tmp_path / "run", max_steps=2,
                         eval_steps=2, per_device_train_batch_size=4, live=False)
    assert result.history["step"].max() == 2 and (result.adapter_path / "adapter_config.json").exists()


def test_a_non_finite_loss_stops_training_with_its_cause_and_remedy(small, tmp_path):
    model, tok = models.load("tiny-random")
    model.model.norm.register_forward_hook(lambda module, inputs, output: output * float("inf"))  # fp16 overflow
    with pytest.raises(train.TrainingDiverged, match=r"stopped at step \d+: the (eval )?loss is (nan|inf)") as error:
        train.train((model, tok), small, output_dir=tmp_path, method="lora", max_steps=4, live=False)
    assert "the model as loaded gives it" in str(error.value) and str(tmp_path) in str(error.value)
    args = type("Args", (), {"fp16": True, "learning_rate": 2e-4, "output_dir": "runs/x"})()
    state = type("State", (), {"global_step": 7})()
    with pytest.raises(train.TrainingDiverged, match="step 7: the loss is nan.*In fp16 .*65,504.*column fp16"):
        train.StopOnNonFinite().on_log(args, state, None, logs={"loss": float("nan")})
    args.fp16 = False
    with pytest.raises(train.TrainingDiverged, match=r"eval loss is inf\. .*learning rate too high .*\(now 0\.0002\)"):
        train.StopOnNonFinite().on_log(args, state, None, logs={"eval_loss": float("inf")})
    train.StopOnNonFinite().on_log(args, state, None, logs={"loss": 2.5, "eval_loss": 2.0})  # finite: no stop


def test_later_notebooks_take_the_model_and_method_notebook_03_trained(monkeypatch, tmp_path):
    monkeypatch.setattr(train.env, "runs_dir", lambda: tmp_path)
    said = []
    assert train.as_in_03(None, None, "ja", log=said.append) == ("auto", "lora")  # not run here: LoRA on a CPU
    assert "has not trained for ja:course data" in said[-1]
    train.remember("tinyswallow-1.5b", "lora", "ja")
    train.remember("smollm2-135m", "qlora", "en", "my/faq.csv")
    assert train.as_in_03(None, None, "ja", log=said.append) == ("tinyswallow-1.5b", "lora")
    assert said[-1].startswith("as notebook 03 trained") and "tinyswallow-1.5b" in said[-1]
    assert train.as_in_03("qwen2.5-1.5b", None, "ja", log=said.append) == ("qwen2.5-1.5b", "lora")  # yours wins
    assert train.as_in_03(None, None, "en", "other/questions.csv", log=said.append) == ("auto", "lora")  # other data
    assert train.as_in_03(None, None, "en", "my/faq.csv", log=said.append) == ("smollm2-135m", "qlora")
    train.remember("auto", "qlora", "en")  # kept as "auto" resolved here: another GPU would resolve it otherwise
    assert train.as_in_03(None, None, "en", log=said.append) == (train.model_name("auto", "en"), "qlora")
    settings = {"max_steps": -1, "num_train_epochs": 3}
    monkeypatch.setattr(train.env, "device", lambda: "cuda")  # on a GPU the time is a FLOP estimate, said so
    rows = {"train": list(range(337))}
    assert train._how_long("smollm2-1.7b", "qlora", "en", rows, settings).endswith(
        "min on a T4 (an estimate from FLOPs, not a measurement)")


def test_use_drive_mounts_google_drive_on_colab_only(monkeypatch, tmp_path, capsys):
    mounted = []
    colab = type(sys)("google.colab")
    colab.drive = SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google", SimpleNamespace(colab=colab))
    monkeypatch.setattr(train.env, "runs_dir", lambda: tmp_path)
    monkeypatch.setattr(train.env, "platform", lambda: "colab")
    assert train.env.use_drive(False) == tmp_path and mounted == []
    train.env.use_drive(True)
    assert mounted == ["/content/drive"]
    monkeypatch.setattr(train.env, "platform", lambda: "kaggle")
    train.env.use_drive(True)
    assert "Save Version" in capsys.readouterr().out

"""Training throughput (P1): ftlib.train's LoRA path vs a naive "first tutorial" Trainer loop, same model,
data, LoRA config, learning rate, batch and steps, fp32 on CPU (smollm2-135m, the course's English train rows).

Run: .venv/bin/python bench/training.py [--steps 5] [--batch 8] [--max-length 384] [--padding-free]

Targets (P1): ftlib >= 1.5x the naive loop in non-pad tokens per second, and at most 5% padding in ftlib's
training batches. The last line gives both.

- ftlib: ftlib.train.train((model, tok), dataset, method="lora", live=False, ...): TRL's SFTTrainer,
  completion-only loss, batches padded to their longest row, rows grouped by length
  (train_sampling_strategy="group_by_length").
- naive: transformers.Trainer + peft.get_peft_model with ftlib.train.lora_config(model), rows rendered with the
  chat template, tokenized with padding="max_length" (every row padded to --max-length), labels = input_ids with
  the padding set to -100, random batches.

What is timed. ftlib.train cannot skip evaluation: sft_config sets eval_on_start=True and the Trainer also
evaluates once more after the last step when eval_strategy="steps", then saves a checkpoint and the adapter.
TrainResult.seconds (and so its tokens_per_second) includes all of that, so this script does not use it for the
comparison: an SFTTrainer subclass (patched into trl for the duration of the ftlib run; ftlib itself is not
changed) adds a step clock and records every training batch the collator builds. Both runs are timed the same
way: from the end of step 1 (warm-up, excluded) to the end of the last step, which covers data collation,
forward, backward, optimizer and per-step logging of steps 2..N. Tokens are those of the same batches. The
validation split is cut to one batch of 8 rows here only to keep the two unavoidable evaluations short.
Padding share = pad tokens / all tokens over all N training batches.

Finding (2026-11-24): group_by_length alone does not keep padding <= 5%. transformers'
get_length_grouped_indices shuffles the rows, cuts them into megabatches of min(len // (4 * batch), 50) * batch
rows (10 * 8 = 80 of the 337 course rows), sorts each megabatch by length, then swaps the longest row of the whole
dataset into the first slot of the first megabatch ("OOM first"). Batch 1 therefore holds that 135-token row
beside rows of ~100 tokens: 23% padding, then 1-4% per batch; 9.1% over the default 5 steps, 4.6-5.8% over a
whole epoch (5 sampler seeds, mean 5.4%). TRL's padding_free=True (rows concatenated into one, position_ids mark
the boundaries; transformers builds a block-diagonal mask for SDPA from them) has no padding at all and measured
1.03x the non-pad tokens/s of the padded ftlib run on this CPU (106 vs 103, within noise): the padding saved is
spent on attention over the whole concatenated batch under a mask. It needs max_length=None without packing (TRL
refuses otherwise), so rows longer than max_length would have to be truncated before training. Measure it with
--padding-free.
"""

import argparse
import os
import tempfile
import time


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="training steps per run; step 1 is warm-up (untimed)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--padding-free", action="store_true",
                        help="also measure ftlib's path with TRL's padding_free=True (a proposed sft_config change)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (step 1 is warm-up)")

    import datasets
    import torch
    import trl
    from datasets import Dataset, DatasetDict
    from peft import get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.trainer_pt_utils import get_length_grouped_indices
    from transformers.utils import logging as hf_logging

    from ftlib import data, models
    from ftlib import train as ft

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    class StepClock(TrainerCallback):
        """perf_counter() at the end of every training step."""

        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    class BatchLog:
        """Wraps the training dataloader's collator: (all tokens, non-pad tokens) of each batch, in the order built.

        Only the training dataloader gets it, so evaluation batches never mix in. (Checking model.training, as
        ftlib's TokenCounter does, is not enough: accelerate's dataloader builds one batch ahead, and after
        eval_on_start the model is still in eval mode when training batches 1 and 2 are built.)
        """

        def __init__(self, collator):
            self.collator, self.batches = collator, []

        def __call__(self, examples):
            batch = self.collator(examples)
            ids = batch["input_ids"]
            mask = batch.get("attention_mask")
            self.batches.append((ids.numel(), int(mask.sum()) if mask is not None else ids.numel()))
            return batch

    def timed(base):
        """`base` (a Trainer class) with a step clock and a record of its training batches; no console logging."""

        class Timed(base):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                for quiet in (PrinterCallback, ProgressCallback):
                    self.remove_callback(quiet)
                self.step_clock, self.batch_log = StepClock(), None
                self.add_callback(self.step_clock)
                made.append(self)

            def get_train_dataloader(self):
                collator = self.data_collator  # for ftlib: its TokenCounter, set after __init__
                self.batch_log = self.data_collator = BatchLog(collator)
                try:
                    return super().get_train_dataloader()
                finally:
                    self.data_collator = collator

        return Timed

    made: list = []

    def summary(trainer) -> dict:
        clock, log = trainer.step_clock, trainer.batch_log
        steps = len(clock.ends)
        after = log.batches[1:steps]  # the batches of the timed steps (the log has one more: built ahead)
        seconds = clock.ends[-1] - clock.ends[0]
        tokens, real = sum(t for t, _ in log.batches[:steps]), sum(r for _, r in log.batches[:steps])
        return {"steps": steps, "timed s": seconds, "s/step": seconds / (steps - 1),
                "non-pad tok/s": sum(r for _, r in after) / seconds, "all tok/s": sum(t for t, _ in after) / seconds,
                "padding share": 1 - real / tokens, "tokens/batch": tokens / steps}

    course = data.course_dataset("en")
    dataset = DatasetDict(train=course["train"], validation=course["validation"].select(range(8)))
    runs: dict[str, dict] = {}

    def run_ftlib(label: str, padding_free: bool = False) -> None:
        original_trainer, original_config = trl.SFTTrainer, ft.sft_config

        def config(*a, **kw):
            cfg = original_config(*a, **kw)
            if padding_free:  # TRL: padding-free without packing needs max_length=None (rows here are <= 135 tokens)
                cfg.padding_free, cfg.max_length = True, None
            return cfg

        model, tok = models.load("smollm2-135m")
        trl.SFTTrainer, ft.sft_config = timed(original_trainer), config
        try:
            with tempfile.TemporaryDirectory(prefix="bench-training-") as out:
                result = ft.train((model, tok), dataset, output_dir=out, method="lora", live=False,
                                  max_steps=args.steps, batch=args.batch, max_length=args.max_length, lr=args.lr,
                                  eval_steps=10**6)
        finally:
            trl.SFTTrainer, ft.sft_config = original_trainer, original_config
        trainer = made.pop()
        runs[label] = summary(trainer)
        if not padding_free:
            shares = [1 - r / t for t, r in trainer.batch_log.batches[:args.steps]]
            print(f"{label}: padding share of each batch: {', '.join(f'{x:.1%}' for x in shares)}")
            lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
            epochs = []
            for seed in range(5):  # the sampler alone, over whole epochs of the same rows
                order = get_length_grouped_indices(lengths, args.batch, generator=torch.Generator().manual_seed(seed))
                batches = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
                epochs.append(1 - sum(lengths) / sum(max(lengths[j] for j in b) * len(b) for b in batches))
            print(f"{label}: group_by_length over a whole epoch ({len(lengths)} rows, 5 sampler seeds): padding "
                  f"share {min(epochs):.1%}-{max(epochs):.1%}, mean {sum(epochs) / len(epochs):.1%}")
        runs[label]["TrainResult s"] = result.seconds
        runs[label]["TrainResult tok/s"] = result.tokens_per_second
        runs[label]["TrainResult pad share"] = 1 - result.real_token_share

    def run_naive() -> None:
        model, tok = models.load("smollm2-135m")
        model = get_peft_model(model, ft.lora_config(model))
        rows = course["train"]
        texts = [tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
        enc = tok(texts, padding="max_length", max_length=args.max_length, truncation=True)
        labels = [[t if m else -100 for t, m in zip(ids, mask, strict=True)]
                  for ids, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
        train = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                   "labels": labels})
        with tempfile.TemporaryDirectory(prefix="bench-training-") as out:
            targs = TrainingArguments(
                output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch, learning_rate=args.lr,
                lr_scheduler_type="cosine", warmup_steps=0.1, logging_steps=1, save_strategy="no", eval_strategy="no",
                report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True)
            trainer = timed(Trainer)(model=model, args=targs, train_dataset=train,
                                     data_collator=default_data_collator)
            trainer.train()
        runs["naive"] = summary(made.pop())

    wall = time.perf_counter()
    run_ftlib("ftlib")  # first: any warm-up left after step 1 counts against ftlib, not the baseline
    run_naive()
    if args.padding_free:
        run_ftlib("ftlib padding_free", padding_free=True)

    import pandas as pd

    print(f"smollm2-135m LoRA r=16 all-linear, fp32 CPU, torch threads {torch.get_num_threads()}, "
          f"{args.steps} steps x batch {args.batch}, max_length {args.max_length}, lr {args.lr:g}; "
          f"timed: steps 2..{args.steps}; padding share over all {args.steps} batches")
    print(pd.DataFrame(runs).T.round(3).to_string())
    print("TrainResult columns: ftlib's own report. Its seconds include the evaluation at start and end and the "
          "checkpoint save; its token count misses training batches 1-2 (built while the model is still in eval "
          "mode after eval_on_start) and counts one batch built ahead but never trained.")
    print(f"total wall time {time.perf_counter() - wall:.0f} s")
    if args.padding_free:
        pf = runs["ftlib padding_free"]
        print(f"padding_free vs ftlib: {pf['non-pad tok/s'] / runs['ftlib']['non-pad tok/s']:.2f}x non-pad tok/s, "
              f"padding share {pf['padding share']:.1%}")
    speedup = runs["ftlib"]["non-pad tok/s"] / runs["naive"]["non-pad tok/s"]
    print(f"ftlib vs naive padding: {speedup:.1f}x non-pad tokens/s (target >= 1.5x); "
          f"ftlib padding share {runs['ftlib']['padding share']:.1%} (target <= 5%)")


if __name__ == "__main__":
    main()

"""Generation for evaluation and chat: batched, left-padded, chat-templated, stopping at EOS, a prefix every prompt
shares computed once (notebooks 03, 04, 05).

Evaluation generates in its own loop, never inside the Trainer, so logits of a whole validation set
never pile up in memory. Every call is timed: tokens per second, time to first token, and each answer's
latency (p50/p95), so speed sits in the same report as quality.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from threading import Thread

import pandas as pd
import torch
from transformers.generation.streamers import BaseStreamer

from ftlib import models


@dataclass(repr=False)
class Generations:
    """Texts generated for a list of prompts, with the speed they were generated at.

    `latencies` holds, per answer, the seconds from the start of its batch until its last token (its EOS, or
    the token limit); `ttfts` holds, per batch, the seconds until the first new token (the prompt's prefill).
    """

    texts: list[str]
    new_tokens: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    batch_size: int = 1

    @property
    def degenerate(self) -> list[int]:
        """The answers that are one character repeated ("!!!!", "????"): what a model whose activations overflow
        in fp16 writes (its logits are NaN, and the first token id wins every step)."""
        return [i for i, text in enumerate(self.texts) if len(text) >= 4 and len(set(text)) == 1]

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else float("nan")

    @property
    def seconds_per_answer(self) -> float:
        return self.seconds / len(self.texts) if self.texts else float("nan")

    @property
    def ttft(self) -> float:
        """Median time to first token over the batches."""
        return statistics.median(self.ttfts) if self.ttfts else float("nan")

    def latency(self, q: float) -> float:
        """The q-th percentile (0-100) of the answers' latencies."""
        return _percentile(self.latencies, q)

    def speed(self) -> dict[str, float]:
        """One row of a speed table."""
        return {"batch": self.batch_size, "answers": len(self.texts), "seconds": self.seconds,
                "s/answer": self.seconds_per_answer, "tokens/s": self.tokens_per_second, "TTFT s": self.ttft,
                "latency p50 s": self.latency(50), "latency p95 s": self.latency(95)}

    def __repr__(self) -> str:
        return (f"{len(self.texts)} answers, {self.new_tokens} new tokens in {self.seconds:.1f} s "
                f"({self.tokens_per_second:.1f} tokens/s, batch {self.batch_size}, TTFT {self.ttft:.2f} s, "
                f"latency p50 {self.latency(50):.1f} s, p95 {self.latency(95):.1f} s)")


def _percentile(values: list[float], q: float) -> float:
    return float(torch.tensor(values, dtype=torch.float64).quantile(q / 100)) if values else float("nan")


class _Clock(BaseStreamer):
    """Times one `model.generate` call: the first new token, and the step at which each sequence ends."""

    def __init__(self, stop_ids: set[int]):
        self.stop_ids, self.ends, self.prompt_seen = stop_ids, {}, False
        self.first: float | None = None
        self.start = time.perf_counter()
        self.finish = 0.0

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        now = time.perf_counter() - self.start
        self.first = self.first if self.first is not None else now
        for row, token in enumerate(value.view(-1).tolist()):
            if token in self.stop_ids and row not in self.ends:
                self.ends[row] = now

    def end(self) -> None:
        self.finish = time.perf_counter() - self.start


def as_messages(prompt, system: str | None = None) -> list[dict]:
    """A question string, or a list of chat messages, as chat messages (with an optional system message).

    Used by generate.generate (notebook 00).
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return messages


TEMPLATE_KWARGS = {"enable_thinking": False}  # Qwen3's template writes a <think> block unless told not to; other
# templates ignore the variable. Training passes the same (train.train), so a model answers as it was trained.


def _inputs(tokenizer, prompts: list, system: str | None, device) -> dict:
    conversations = [as_messages(p, system) for p in prompts]
    with models.padding_side(tokenizer, "left"):
        return tokenizer.apply_chat_template(conversations, add_generation_prompt=True, padding=True,
                                             return_tensors="pt", return_dict=True, **TEMPLATE_KWARGS).to(device)


SHARED_PREFIX_MIN = 64  # tokens every prompt starts with, from which generate computes them once (prefix caching)


def _prefix_cache(model, ids: list[list[int]]):
    """(length, cache) of the token prefix all prompts share when it is at least SHARED_PREFIX_MIN tokens (an
    instruction, a fact sheet and worked examples before each question), else (0, None). Its keys and values are
    computed once and copied into every batch, as serving engines do (vLLM's prefix caching); each prompt keeps at
    least one token of its own. Models whose cache is not a plain per-layer one (sliding windows) get (0, None)."""
    from transformers import DynamicCache

    shared = min(len(os.path.commonprefix(ids)), min(map(len, ids)) - 1) if len(ids) > 1 else 0
    if shared < SHARED_PREFIX_MIN:
        return 0, None
    with torch.inference_mode():
        cache = model(input_ids=torch.tensor([ids[0][:shared]], device=model.device), use_cache=True).past_key_values
    if type(cache) is not DynamicCache or any(getattr(cache, "is_sliding", [])):
        return 0, None
    return shared, cache


def _cache_from(model, prefix, shape: torch.Size, max_new_tokens: int):
    """A batch's key/value cache holding the shared prefix in every row, allocated once at its final length
    (transformers' StaticCache): a growing cache would copy its whole length at each new token, and with a
    long prefix those copies took half of the time (notebook 05's engineered prompt: 60.8 s -> 28.5 s, the same
    answers; bench/generation.py)."""
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=shape[1] + max_new_tokens)
    for i, layer in enumerate(prefix.layers):
        cache.update(layer.keys.expand(shape[0], -1, -1, -1), layer.values.expand(shape[0], -1, -1, -1), i)
    return cache


def _after_prefix(ids: list[list[int]], shared: int, pad_id: int, device) -> dict:
    """A batch laid out as [shared prefix, padding, own tokens]: the prefix sits at the same positions in every row
    (its cached keys and values fit all of them) and the padding, masked out, goes between."""
    width = max(map(len, ids))
    rows = [row[:shared] + [pad_id] * (width - len(row)) + row[shared:] for row in ids]
    mask = [[1] * shared + [0] * (width - len(row)) + [1] * (len(row) - shared) for row in ids]
    return {"input_ids": torch.tensor(rows, device=device), "attention_mask": torch.tensor(mask, device=device)}


def _stop_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return {i for i in ids if i is not None}


def generate(model, tokenizer, prompts: list, max_new_tokens: int = 64, batch_size: int = 8,
             system: str | None = None, do_sample: bool = False, progress: bool = False, shared_prefix: bool = True,
             **kwargs) -> Generations:
    """Answer each prompt (a question or a list of chat messages) with the chat template, in batches.

    Prompts of near-equal length are batched together (sorted by their token count; the answers come back in
    the order of `prompts`): a short question batched with a long RAG prompt would be padded to its length.
    Prompts are padded on the left (new tokens are appended on the right, so each prompt must end there),
    generation stops at EOS, and the answer is decoded from the new tokens only. Where every prompt starts with
    the same SHARED_PREFIX_MIN tokens or more (notebook 05's engineered prompt: instructions, fact sheet,
    examples), that prefix is computed once and its cache reused (`shared_prefix=False` computes it per
    prompt; the answers are the same). Greedy by default, so answers are repeatable; `do_sample=True` with
    `temperature`/`top_p` samples. Each batch is timed: time to first token and each answer's latency.
    Taught in notebooks 03, 04 and 05.
    """
    from tqdm.auto import tqdm

    texts, latencies = [""] * len(prompts), [0.0] * len(prompts)
    new_tokens, seconds, ttfts = 0, 0.0, []
    stop_ids = _stop_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    ids = tokenizer.apply_chat_template([as_messages(p, system) for p in prompts], add_generation_prompt=True,
                                        return_dict=True, **TEMPLATE_KWARGS)["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
    began = time.perf_counter()
    shared, cache = _prefix_cache(model, ids) if shared_prefix else (0, None)
    seconds += time.perf_counter() - began  # the shared prefix's one computation counts in the time
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generating", leave=False, disable=not progress):
        rows = order[start:start + batch_size]
        if cache is not None:
            inputs = _after_prefix([ids[i] for i in rows], shared, tokenizer.pad_token_id, model.device)
            inputs["past_key_values"] = _cache_from(model, cache, inputs["input_ids"].shape, max_new_tokens)
        else:
            inputs = _inputs(tokenizer, [prompts[i] for i in rows], system, model.device)
        clock = _Clock(stop_ids)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                    disable_compile=True,  # no torch.compile of a static cache (minutes on a T4)
                                    pad_token_id=tokenizer.pad_token_id, streamer=clock, **kwargs)
        seconds += clock.finish
        ttfts.append(clock.first if clock.first is not None else clock.finish)
        new = output[:, inputs["input_ids"].shape[1]:]
        new_tokens += int((new != tokenizer.pad_token_id).sum())
        for j, (i, text) in enumerate(zip(rows, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True)):
            texts[i], latencies[i] = text.strip(), clock.ends.get(j, clock.finish)
    model.train(was_training)
    out = Generations(texts, new_tokens, seconds, latencies, ttfts, batch_size)
    bad = out.degenerate
    if len(bad) > len(texts) / 4:
        warnings.warn(
            f"{len(bad)} of {len(texts)} answers are one character repeated (e.g. {texts[bad[0]][:12]!r}), the sign of "
            f"numbers that overflowed: in fp16 (a T4) the overflow reported for Qwen2 and Gemma 3 models "
            f"(models.presets(), column fp16): take a model marked fp16-safe, or a GPU with bf16.", stacklevel=2)
    return out


def speed_table(model, tokenizer, prompts: list, batch_sizes: tuple[int, ...] = (1, 8, 16),
                max_new_tokens: int = 32, **kwargs) -> pd.DataFrame:
    """Generate the same prompts at each batch size; one row per batch size, with the speed-up per answer.

    Batching fills the CPU's or GPU's wide matrix units, so answers per second rise with the batch while
    each answer waits longer (latency). Taught in notebook 04.
    """
    rows = [generate(model, tokenizer, prompts, max_new_tokens, batch_size=b, **kwargs).speed() for b in batch_sizes]
    table = pd.DataFrame(rows).set_index("batch")
    table["speed-up per answer"] = table["s/answer"].iloc[0] / table["s/answer"]
    return table


def stream(model, tokenizer, prompt, max_new_tokens: int = 128, system: str | None = None,
           **kwargs) -> Iterator[str]:
    """Yield the answer to one prompt piece by piece as it is generated (for interactive cells).

    `for piece in stream(model, tok, "Hello"): print(piece, end="", flush=True)`. Taught in notebook 04.
    """
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    inputs = _inputs(tokenizer, [prompt], system, model.device)
    settings = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id, "do_sample": False,
                **kwargs}
    was_training, failure = model.training, []
    model.eval()

    def work() -> None:
        try:
            with torch.inference_mode():
                model.generate(**inputs, streamer=streamer, **settings)
        except Exception as error:  # handed to the caller's thread below
            failure.append(error)
            streamer.end()

    worker = Thread(target=work, daemon=True)
    worker.start()
    try:
        yield from streamer
    finally:
        worker.join()
        model.train(was_training)
    if failure:
        raise failure[0]

"""Generation for evaluation and chat: batched, left-padded, chat-templated, stopping at EOS (notebooks 03, 04).

Evaluation generates in its own loop, never inside the Trainer, so logits of a whole validation set
never pile up in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ftlib import models


@dataclass(repr=False)
class Generations:
    """Texts generated for a list of prompts, with the speed they were generated at."""

    texts: list[str]
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else float("nan")

    def __repr__(self) -> str:
        return (f"{len(self.texts)} answers, {self.new_tokens} new tokens in {self.seconds:.1f} s "
                f"({self.tokens_per_second:.1f} tokens/s)")


def as_messages(prompt, system: str | None = None) -> list[dict]:
    """A question string, or a list of chat messages, as chat messages (with an optional system message).

    Taught in notebook 03.
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def generate(model, tokenizer, prompts: list, max_new_tokens: int = 64, batch_size: int = 8,
             system: str | None = None, do_sample: bool = False, **kwargs) -> Generations:
    """Answer each prompt (a question or a list of chat messages) with the chat template, in batches.

    Prompts are padded on the left (new tokens are appended on the right, so each prompt must end
    there), generation stops at EOS, and the answer is decoded from the new tokens only. Greedy by
    default, so answers are repeatable. Taught in notebook 03.
    """
    texts, new_tokens, seconds = [], 0, 0.0
    was_training = model.training
    model.eval()
    for start in range(0, len(prompts), batch_size):
        conversations = [as_messages(p, system) for p in prompts[start:start + batch_size]]
        with models.padding_side(tokenizer, "left"):
            inputs = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, padding=True,
                                                   return_tensors="pt", return_dict=True).to(model.device)
        begin = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                    pad_token_id=tokenizer.pad_token_id, **kwargs)
        seconds += time.perf_counter() - begin
        new = output[:, inputs["input_ids"].shape[1]:]
        new_tokens += int((new != tokenizer.pad_token_id).sum())
        texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    model.train(was_training)
    return Generations(texts, new_tokens, seconds)

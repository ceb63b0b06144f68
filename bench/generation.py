"""Generation speed (P2): per-answer speed-up of batch 16 over batch 1 with ftlib.generate, and ftlib.generate
vs a plain one-prompt-at-a-time `model.generate` loop, on the offline default model (smollm2-135m, fp32).

Run: .venv/bin/python bench/generation.py [--prompts 32] [--tokens 32]

Targets (issues 6 and 9): batch 16 >= 5x faster per answer than batch 1. Also the same model loaded in 4 bits
(NF4, as QLoRA loads it) at batch 16: why the course trains LoRA, not QLoRA, on a CPU (recipe.course_method).
And a prefix every prompt shares (notebook 05's engineered prompt) held in a cache allocated at its final length
against one that grows at each token.
Greedy decoding with the same prompts and token limit everywhere; answers stop at EOS. The last line is the
batch-16 speed-up.
"""

import argparse
import os
import time


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()

    import torch

    from ftlib import data, generate, models

    model, tok = models.load("smollm2-135m")
    prompts = [row["prompt"] for row in data.course_dataset("en")["test"]][:args.prompts]
    generate.generate(model, tok, prompts[:2], max_new_tokens=4)  # warm-up

    start = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:  # what a first attempt looks like: one prompt at a time, no batching
            inputs = tok.apply_chat_template([prompt], add_generation_prompt=True, return_tensors="pt",
                                             return_dict=True)
            model.generate(**inputs, max_new_tokens=args.tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    plain = (time.perf_counter() - start) / len(prompts)

    table = generate.speed_table(model, tok, prompts, batch_sizes=(1, 8, 16), max_new_tokens=args.tokens)
    print(f"{len(prompts)} prompts, up to {args.tokens} new tokens each, torch threads {torch.get_num_threads()}")
    print(table.round(3).to_string())
    print(f"plain model.generate loop: {plain:.3f} s/answer; ftlib.generate batch 1: "
          f"{table.loc[1, 's/answer']:.3f} s/answer; batch 16: {table.loc[16, 's/answer']:.3f} s/answer")
    print(f"ftlib.generate batch 16 vs plain loop: {plain / table.loc[16, 's/answer']:.1f}x per answer")
    four_bit, _ = models.load("smollm2-135m", quantization="4bit")
    nf4 = generate.generate(four_bit, tok, prompts, args.tokens, batch_size=16)
    print(f"4-bit NF4 (bitsandbytes) batch 16: {nf4.seconds_per_answer:.3f} s/answer; fp32 batch 16 is "
          f"{nf4.seconds_per_answer / table.loc[16, 's/answer']:.1f}x faster per answer")
    shared_prefix(model, tok)
    print(f"batch 16 vs batch 1 per answer: {table.loc[16, 'speed-up per answer']:.1f}x (target >= 5x)")


def shared_prefix(model, tok, tokens: int = 40) -> None:
    """Notebook 05's engineered prompt on a CPU (instructions, the fact sheet of its two intents, three worked
    examples, then the question) for its 64 questions in one batch. The prefix computed once and held in a cache
    allocated at its final length (ftlib), the same prefix in a cache that grows by concatenation at each token
    (transformers' DynamicCache, as ftlib did before), and no prefix sharing. The answers must be the same."""
    import copy
    from unittest import mock

    from ftlib import data, generate, recipe, retrieval, train

    focus = train.dataset_for(None, "en", 0, recipe.CPU_FOCUS)["train"]
    questions = [row["prompt"][-1]["content"] for row in data.eval_sets(focus, "en", 0, untrained=0)["trained facts"]]
    sheet = "\n".join(retrieval.fact_passages("en", intents=recipe.CPU_FOCUS))
    shots = focus.shuffle(seed=0).select(range(3))
    long = [retrieval.few_shot_messages(q, shots, sheet, "en") for q in questions[:64]]

    def growing(model, prefix, shape, max_new_tokens):
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(shape[0])
        return cache

    arms = {}
    arms["prefix, cache at its final length"] = generate.generate(model, tok, long, tokens, batch_size=len(long))
    with mock.patch.object(generate, "_cache_from", growing):
        arms["prefix, growing cache"] = generate.generate(model, tok, long, tokens, batch_size=len(long))
    arms["no shared prefix"] = generate.generate(model, tok, long, tokens, batch_size=len(long), shared_prefix=False)
    first = next(iter(arms.values()))
    length = round(sum(retrieval.prompt_tokens(messages, tok) for messages in long) / len(long))
    print(f"shared prefix (prompts of {length} tokens on average, batch {len(long)}):")
    for name, out in arms.items():
        print(f"  {name}: {out.seconds:.1f} s, same answers: {out.texts == first.texts}")
    print(f"cache at its final length vs growing: {arms['prefix, growing cache'].seconds / first.seconds:.1f}x")


if __name__ == "__main__":
    main()

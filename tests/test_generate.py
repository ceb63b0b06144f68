"""ftlib.generate: batching must not change greedy answers; timings are real; streaming yields the same text."""

import copy

import pytest
import torch

from ftlib import generate

QUESTIONS = ["Hi", "What is the capital of France? Answer in one word.", "How long is the warranty?",
             "Tell me a very short story about a cat that learns to fly over the sea.", "2+2?"]


@pytest.mark.parametrize("fixture", ["tiny", pytest.param("smollm2", marks=pytest.mark.slow)])
def test_batched_greedy_equals_one_by_one(fixture, request):
    model, tok = request.getfixturevalue(fixture)
    batched = generate.generate(model, tok, QUESTIONS, max_new_tokens=12, batch_size=5)
    alone = generate.generate(model, tok, QUESTIONS, max_new_tokens=12, batch_size=1)
    assert batched.texts == alone.texts
    assert tok.padding_side == "right"  # left padding was only borrowed for generation


def test_timings_are_consistent(tiny):
    model, tok = tiny
    out = generate.generate(model, tok, QUESTIONS, max_new_tokens=10, batch_size=2)
    assert len(out.texts) == len(out.latencies) == 5 and len(out.ttfts) == 3 and out.batch_size == 2
    assert 0 < out.ttft <= max(out.latencies) and out.latency(50) <= out.latency(95) <= max(out.latencies)
    assert sum(out.ttfts) <= out.seconds and out.new_tokens > 0 and out.tokens_per_second > 0
    row = out.speed()
    assert row["answers"] == 5 and row["s/answer"] == pytest.approx(out.seconds / 5)


def test_an_answer_that_stops_early_has_a_shorter_latency(tiny):
    model, tok = tiny
    # the first answer may only say EOS (so it ends at once), the second never can
    eos = tok.eos_token_id
    out = generate.generate(model, tok, ["a", "b"], max_new_tokens=20, batch_size=2, min_new_tokens=0,
                            prefix_allowed_tokens_fn=lambda row, ids: [eos] if row == 0 else list(range(5, 50)))
    assert out.texts[0] == "" and out.latencies[0] < out.latencies[1]


def test_speed_table_has_one_row_per_batch_size(tiny):
    model, tok = tiny
    table = generate.speed_table(model, tok, QUESTIONS * 2, batch_sizes=(1, 5), max_new_tokens=6)
    assert list(table.index) == [1, 5] and table.loc[1, "speed-up per answer"] == 1
    assert (table["answers"] == 10).all()


def test_stream_yields_the_greedy_answer(tiny):
    model, tok = tiny
    pieces = list(generate.stream(model, tok, QUESTIONS[1], max_new_tokens=12))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == generate.generate(model, tok, [QUESTIONS[1]], max_new_tokens=12).texts[0]


def test_stream_passes_errors_to_the_caller(tiny):
    model, tok = tiny
    with pytest.raises(ValueError):
        list(generate.stream(model, tok, "Hi", max_new_tokens=4, num_beams=2))  # beam search cannot stream


def test_prompts_of_near_equal_length_share_a_batch_and_answers_keep_their_order(tiny, monkeypatch):
    model, tok = tiny
    batches = []
    inputs = generate._inputs
    monkeypatch.setattr(generate, "_inputs", lambda t, prompts, *a: batches.append(prompts) or inputs(t, prompts, *a))
    out = generate.generate(model, tok, QUESTIONS, max_new_tokens=6, batch_size=2)
    lengths = {q: len(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                              return_dict=True)["input_ids"]) for q in QUESTIONS}
    flat = [q for batch in batches for q in batch]
    assert [lengths[q] for q in flat] == sorted(lengths[q] for q in QUESTIONS)  # shortest first, none padded far
    assert batches[-1] == [QUESTIONS[3]]  # the long story waits alone, not padding a short question
    monkeypatch.setattr(generate, "_inputs", inputs)
    assert out.texts == [generate.generate(model, tok, [q], max_new_tokens=6).texts[0] for q in QUESTIONS]


def test_degenerate_answers_are_flagged_with_the_cause(monkeypatch):
    from ftlib import models

    model, tok = models.load("tiny-random")
    bang = tok.convert_tokens_to_ids("!")

    def overflowed(module, inputs, logits):  # NaN logits make greedy pick one token id every step ("!!!!" in Qwen)
        out = torch.full_like(logits, float("-inf"))
        out[..., bang] = 0.0
        return out

    healthy = generate.generate(model, tok, QUESTIONS[:3], max_new_tokens=6)
    assert healthy.degenerate == []
    model.lm_head.register_forward_hook(overflowed)
    with pytest.warns(UserWarning, match=r"3 of 3 answers are one character repeated \(e.g. '!!!!!!'\).*fp16"):
        out = generate.generate(model, tok, QUESTIONS[:3], max_new_tokens=6)
    assert out.degenerate == [0, 1, 2]


def test_a_thinking_template_is_asked_not_to_think(tiny):
    model, tok = tiny
    tok = copy.deepcopy(tok)
    tok.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                         "{% if enable_thinking is not defined or enable_thinking %}<think>{% endif %}")
    ids = generate._inputs(tok, ["Hi"], None, model.device)["input_ids"][0]
    assert "think" not in tok.decode(ids)  # Qwen3's template writes a <think> block unless enable_thinking=False
    assert generate.TEMPLATE_KWARGS == {"enable_thinking": False}


@pytest.mark.parametrize("fixture", ["tiny", pytest.param("smollm2", marks=pytest.mark.slow)])
def test_a_shared_prefix_is_computed_once_and_answers_do_not_change(fixture, request, monkeypatch):
    """Notebook 05's engineered prompt: a long system prompt before each question. Its cache is computed once and
    copied into each batch ([prefix, padding, question]); the greedy answers equal those computed prompt by prompt."""
    model, tok = request.getfixturevalue(fixture)
    sheet = "Facts. " + " ".join(f"Item {i} costs {i * 7} yen and ships in {i % 5 + 1} days." for i in range(20))
    prompts = [[{"role": "system", "content": sheet}, {"role": "user", "content": q}] for q in QUESTIONS]
    computed = []
    original = generate._prefix_cache
    monkeypatch.setattr(generate, "_prefix_cache", lambda m, ids: computed.append(original(m, ids)) or computed[-1])
    shared = generate.generate(model, tok, prompts, max_new_tokens=10, batch_size=3)
    assert len(computed) == 1 and computed[0][0] >= generate.SHARED_PREFIX_MIN  # one prefix, used by both batches
    alone = generate.generate(model, tok, prompts, max_new_tokens=10, batch_size=1, shared_prefix=False)
    assert shared.texts == alone.texts
    short = generate.generate(model, tok, QUESTIONS, max_new_tokens=4, batch_size=5)  # no long shared prefix
    assert computed[-1] == (0, None) and len(short.texts) == 5

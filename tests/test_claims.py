"""ftlib.claims: the seeds' claims experiment runs end to end, and every sentence follows the intervals."""

import pytest

from ftlib import claims, data, recipe


def test_raw_rows_keep_the_defects_and_leave_out_the_held_out_questions():
    raw = claims.raw_rows("en", 0, recipe.CPU_FOCUS)
    answers = [row["completion"][0]["content"] for row in raw]
    assert "" in answers  # an empty answer, which clean() removes
    assert any("&amp;" in a for a in answers)  # an HTML entity, which clean() unescapes
    assert set(raw["intent"]) == set(recipe.CPU_FOCUS)
    course = data.course_dataset("en", 0)
    held = {claims._key(row["prompt"][-1]["content"]) for split in ("validation", "test") for row in course[split]}
    assert not held & {claims._key(row["prompt"][-1]["content"]) for row in raw}


def test_experiment_runs_end_to_end_on_the_tiny_model_and_resumes(tmp_path):
    file = tmp_path / "claims.json"
    settings = {"steps": 2, "limit": 3, "batch_size": 4, "max_new_tokens": 4, "file": file}
    first = claims.run("tiny-random", "en", arms=("base",), log=lambda _: None, **settings)
    said = []
    result = claims.run("tiny-random", "en", resume=True, log=said.append, **settings)
    assert said[0] == f"base model (no training): kept from {file}" and len(said) == 1 + 2 * (len(claims.ARMS) - 1)
    assert result.arms["base"] == first.arms["base"]
    assert list(result.arms) == list(claims.ARMS)
    table = result.table()
    for name in claims.SETS:
        assert (table[f"n {name}"] == 3).all()
    assert table.loc["full fine-tuning, cleaned rows", "learning rate"] == claims.FULL_LEARNING_RATE
    assert table.loc["base model (no training)", "method"] == "-"
    comparisons = result.comparisons()
    assert len(comparisons) == len(claims.CLAIMS)
    for _, _, c in comparisons:
        assert c.n == 3
        for est in (c.before_interval, c.after_interval):
            assert est.low <= est.value <= est.high and est.n == 3
        assert c.low <= c.after - c.before <= c.high
    assert result.ladder() is not None and len(result.sentences()) == len(claims.CLAIMS) + 1
    assert "n=3" in result.sentences()[0]
    quality = result.only("data quality")
    assert list(quality.arms) == ["lora", "lora_raw"] and quality.ladder() is None
    assert [claim for _, claim, _ in quality.comparisons()] == ["cleaned rows train a better model than the raw export"]
    saved = claims.load(file=file)  # written after each arm
    assert saved.sentences() == result.sentences()
    assert saved.table().equals(table)
    assert saved.source.startswith(f"Reference run, saved in {file}: tiny-random, en, 2 steps")
    said.clear()
    claims.run("tiny-random", "en", arms=("base",), resume=True, log=said.append, **(settings | {"steps": 3}))
    assert said[0] == "base model (no training)"  # other settings: nothing kept


def fake(arms: dict[str, dict[str, list[float]]]) -> claims.Claims:
    """A Claims whose arms have the given scores (no training): what the sentences are made from."""
    meta = {"model": "m", "lang": "en", "steps": 1, "seed": 0, "date": "d", "minutes": 0.0, "machine": "x",
            "command": "c"}
    info = {"method": None, "rows": None, "learning_rate": None, "train_seconds": None, "loss": None}
    untrained = {"untrained facts": [0.0] * 20}
    return claims.Claims(meta, {arm: {"label": arm, **info, "scores": untrained | scores}
                                for arm, scores in arms.items()})


def sentence(result: claims.Claims, claim: str) -> str:
    return next(s for s in result.sentences() if s.startswith(claim))


def test_overlapping_intervals_are_not_distinguishable():
    # 12 of 40 before, 14 of 40 after, with rows going both ways: the intervals overlap, the change includes 0
    before = [1.0] * 12 + [0.0] * 28
    after = [0.0] * 4 + [1.0] * 8 + [0.0] * 22 + [1.0] * 6
    general = [1.0] * 30 + [0.0] * 10
    result = fake({"base": {"trained facts": before, "general": general},
                   "lora": {"trained facts": after, "general": general}})
    (_, _, c), *_ = result.comparisons()
    assert c.after_interval.low < c.before_interval.high  # the arms' intervals overlap
    assert "not distinguishable at this n (n=40)" in sentence(result, "LoRA learns the trained facts")
    assert "not distinguishable" in sentence(result, "LoRA keeps general ability")  # identical scores
    assert "better" not in " ".join(result.sentences()) and "worse" not in " ".join(result.sentences())


def test_separated_intervals_say_better_or_worse_and_ties_are_not_an_order():
    zeros, ones = [0.0] * 40, [1.0] * 40
    result = fake({
        "base": {"trained facts": zeros, "general": ones},
        "lora": {"trained facts": [1.0] * 30 + [0.0] * 10, "general": ones},
        "qlora": {"trained facts": [1.0] * 30 + [0.0] * 10, "general": ones},
        "full": {"trained facts": [1.0] * 30 + [0.0] * 10, "general": [1.0] * 10 + [0.0] * 30},
    })
    assert "better" in sentence(result, "LoRA learns the trained facts")
    assert "worse" in sentence(result, "full fine-tuning keeps general ability")
    assert "better" in sentence(result, "LoRA keeps more general ability than full fine-tuning")
    assert "not distinguishable" in sentence(result, "full fine-tuning beats LoRA")  # equal scores
    assert "qlora < lora < full: not distinguishable" in result.sentences()[-1]
    assert "data quality" not in result.frame().index.get_level_values("topic")  # no raw arm ran: no claim


def test_the_reference_run_is_saved_with_every_claim(lang="en"):
    if not claims.path(lang).exists():
        pytest.skip(f"{claims.path(lang)}: run bench/claims.py --lang {lang}")
    result = claims.load(lang)
    assert set(result.arms) == set(claims.ARMS)
    assert len(result.sentences()) == len(claims.CLAIMS) + 1
    assert result.meta["steps"] == recipe.course_settings(on_gpu=False)["max_steps"]

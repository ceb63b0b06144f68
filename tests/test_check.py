import pytest

from ftlib import check, recipe

RIGHT = {"00.dtype_t4": "float16", "00.pad_not_eos": "(b)", "00.left_padding": "left", "00.weights_mib": 513,
         "01.mask_phone": "Call me at <PHONE> tonight", "01.leak": "b", "01.eos_trained": True,
         "03.overfit": "(b)", "03.t4_flag": "fp16=True", "03.resume": "resume",
         "02.smallest": "qlora", "02.adamw_bytes": 8, "02.llama_full": False, "02.checkpointing": "a",
         "04.ja_unit": "b", "04.perplexity": 2.72, "04.win_rate": "66.7%", "04.batching": "(a)",
         "05.spaces": "c", "05.kv_bytes": "46,080", "05.paid_once": "(b)",
         "06.chance": "0.083", "06.weight": 2, "06.rare_metric": "(b)",
         "07.merge_4bit": "b", "07.base": "disable_adapter", "07.status": 422,
         "08.steps": 60, "08.interval": "(c)", "08.leak": "no"}


@pytest.mark.parametrize("key", sorted(RIGHT))
def test_right_answer_is_confirmed(key):
    verdict = check.check(key, RIGHT[key])
    assert verdict and "correct" in str(verdict)


@pytest.mark.parametrize("key", sorted(RIGHT))
@pytest.mark.parametrize("wrong", [None, "", "bfloat16", 7, "right", [1, 2]])
def test_wrong_or_malformed_answer_gets_a_hint_not_the_solution(key, wrong):
    if str(wrong) == str(RIGHT[key]):
        return
    verdict = check.check(key, wrong)
    assert not verdict
    assert check.EXERCISES[key].hint["en"] in verdict.message
    assert check.solution(key) not in verdict.message


def test_prompt_tokens_are_counted_with_the_real_tokenizer(smollm2):
    _, tok = smollm2
    ids = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                  return_dict=True)["input_ids"]
    assert check.check("00.prompt_tokens", len(ids))
    assert not check.check("00.prompt_tokens", len(ids) - 1)


def test_japanese_track_speaks_japanese():
    assert "正解" in str(check.check("00.left_padding", "left", lang="ja"))
    assert "ヒント" in str(check.check("00.left_padding", "right", lang="ja"))
    for ex in check.EXERCISES.values():
        assert {"en", "ja"} <= ex.question.keys() and {"en", "ja"} <= ex.hint.keys()


def test_questions_lists_one_notebook():
    text = check.questions("00")
    assert text.count("\n") + 1 == sum(k.startswith("00.") for k in check.EXERCISES)


def test_unknown_exercise_is_named():
    with pytest.raises(KeyError, match="no exercise"):
        check.check("99.nothing", 1)


def test_verdict_shows_in_jupyter():
    assert "color" in check.check("00.left_padding", "left")._repr_html_()


def test_mask_phone_solution_is_what_mask_pii_gives():
    from ftlib import data

    assert data.mask_pii("Call me at 03-1234-5678 tonight")[0] == "Call me at <PHONE> tonight"
    assert data.mask_pii("今夜 03-1234-5678 に電話ください")[0] == "今夜 <PHONE> に電話ください"


def test_lora_exercise_accepts_peft_s_count():
    from peft import get_peft_model

    from ftlib import models

    model, _ = models.load("smollm2-135m")
    expected = get_peft_model(model, recipe.lora_config(r=8)).get_nb_trainable_parameters()[0]
    assert check.check("03.lora_params", f"{expected:,}") and not check.check("03.lora_params", expected * 2)


def test_every_notebook_has_checked_exercises_in_course_order():
    from ftlib import course

    numbers = [path.name[:2] for path in course.notebooks()]
    order = list(dict.fromkeys(key.split(".")[0] for key in check.EXERCISES))  # registration order = file order
    assert order == numbers, "check.py's sections follow the notebooks, one section per notebook"
    for path in course.notebooks():
        text = path.read_text(encoding="utf-8")
        keys = [key for key in check.EXERCISES if key.startswith(path.name[:2] + ".")]
        assert all(f'check.check(\\"{key}\\"' in text for key in keys), f"{path.name} misses an exercise"


def test_exercises_about_your_run_are_checked_against_your_model_and_tokenizer(tiny):
    model, tok = tiny  # not SmolLM2-135M: on a T4 "auto" loads another model
    mib = model.num_parameters() * 4 / 2**20
    assert check.check("00.weights_mib", mib, model=model)
    assert not check.check("00.weights_mib", 513, model=model)  # SmolLM2's number is wrong for this model
    assert check.check("00.weights_mib", 513)  # without a model: the course default's
    ids = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                  return_dict=True)["input_ids"]
    assert check.check("00.prompt_tokens", len(ids), tok=tok)
    assert check.check("00.dtype_t4", "float16", model=model)  # an exercise not about your run ignores model=

"""The course's memory plan: every notebook's steps at its defaults on a T4 (and other machines) fit, in English and
Japanese; the parameters are the notebooks' own, read as that machine runs them; a step that cannot fit fails it."""

import pytest
import torch

from ftlib import course, models, plan


def test_parameters_are_read_as_the_machine_runs_them():
    path = next(p for p in course.notebooks() if p.name.startswith("03"))
    t4 = plan.parameters(path, plan.MACHINES["t4"])
    cpu = plan.parameters(path, plan.MACHINES["cpu"])
    assert (t4["MAX_STEPS"], t4["EPOCHS"], t4["LEARNING_RATE"], t4["FOCUS"]) == (-1, 3, 5e-4, None)  # GPU: 3 passes
    assert (cpu["MAX_STEPS"], cpu["CPU_STEPS"], cpu["LEARNING_RATE"]) == (None, {"en": 20, "ja": 10}, 3e-3)
    assert (t4["METHOD"], cpu["METHOD"]) == ("qlora", "lora")  # QLoRA fits a GPU; a CPU trains LoRA
    assert t4["MODEL"] == models.FP16_DEFAULT["en"] and cpu["MODEL"] == models.CPU_DEFAULT
    assert plan.parameters(path, plan.MACHINES["a100"], {"LANG": "ja"})["MODEL"] == models.GPU_DEFAULT["ja"]
    assert plan.MACHINES["t4"].dtype == torch.float16 and plan.MACHINES["a100"].dtype == torch.bfloat16


@pytest.mark.parametrize("lang", ["en", "ja"])
@pytest.mark.parametrize("machine", ["t4", "cpu"])
def test_every_notebook_step_fits_at_its_defaults(machine, lang):
    steps = plan.plan(machine, {"LANG": lang})
    assert {s.notebook for s in steps} == {p.name[:2] for p in course.notebooks()}  # every notebook is planned
    assert all(s.fits for s in steps), plan.frame([s for s in steps if not s.fits]).to_string()
    expected = plan.auto(lang, plan.MACHINES[machine])
    assert {s.model for s in steps} == {expected}
    dtype = "float16" if machine == "t4" else "float32"
    assert all(s.settings.endswith(dtype) for s in steps)
    kinds = " ".join(s.step for s in steps)
    for word in ("load", "train", "measure", "answer"):
        assert word in kinds


def test_on_a_t4_notebook_02_leaves_out_full_fine_tuning_which_does_not_fit():
    steps = {s.step: s for s in plan.plan("t4") if s.notebook == "02"}
    full = steps["memory.measure: full: skipped, it does not fit"]
    assert full.skipped and full.bytes > plan.MACHINES["t4"].gib * plan.GIB
    assert not steps["memory.measure: qlora"].skipped
    assert all(not s.skipped for s in plan.plan("a100") if s.notebook == "02" and "qlora" in s.step)


def test_the_command_exits_1_when_a_step_does_not_fit(capsys):
    assert course.main(["plan", "--gpu", "t4", "-p", "LANG=ja"]) == 0
    out = capsys.readouterr().out
    assert "llm-jp-3-1.8b" in out and "every step fits" in out
    assert course.main(["plan", "--gpu", "t4", "-p", "MAX_LENGTH=8192", "-p", "EVAL_BATCH=512"]) == 1
    assert "does not fit" in capsys.readouterr().out


def test_a_hub_id_is_listed_as_not_sized():
    steps = plan.plan("t4", {"MODEL": "someone/their-model"})
    assert len(steps) == len(course.notebooks()) and all(s.step.startswith("(not sized") for s in steps)

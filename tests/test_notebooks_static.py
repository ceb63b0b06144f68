"""Every notebook has the course's shape: set-up cell, parameters, badges, no outputs, no absolute paths."""

import re

import nbformat
import pytest
import tomllib

from ftlib import course
from ftlib.env import ROOT

NOTEBOOKS = course.notebooks()
SETUP = nbformat.read(NOTEBOOKS[0], as_version=4).cells[1].source


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert "colab.research.google.com/github/" in cells[0].source and path.name in cells[0].source
    assert "kaggle.com/kernels/welcome" in cells[0].source
    assert "setup" in cells[1].metadata.get("tags", []) and cells[1].source == SETUP
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for knob in ["MODEL", "LANG", "SEED"]:
        assert re.search(rf"^{knob} = ", params[0].source, re.M), f"{path.name}: parameter {knob} missing"
    assert "Check yourself" in "".join(c.source for c in cells if c.cell_type == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_and_no_absolute_paths(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip outputs"
        assert not re.search(r"(/work/|/home/|/root/|/Users/|[A-Z]:\\\\)", cell.source), f"{path.name}: absolute path"


def test_setup_cell_installs_the_same_pins_as_make_setup():
    makefile = (ROOT / "Makefile").read_text()
    smollm2 = re.search(r"SMOLLM2 := (\S+)", makefile).group(1)
    assert smollm2 in SETUP
    assert '"-e", course]' in SETUP  # installs the clone (or checkout), whose dependencies are requirements.txt
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    pinned = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    assert not any(line.startswith("torch") for line in pinned), "torch stays the platform's on Colab"


def test_readme_opens_with_the_two_commands_and_maps_every_notebook():
    for readme in ["README.md", "README.ja.md"]:
        text = (ROOT / readme).read_text(encoding="utf-8")
        blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
        assert blocks and blocks[0].split("\n")[:2] == ["make course", "make test"], readme
        for path in NOTEBOOKS:
            assert path.name in text, f"{readme} does not list {path.name}"


def _cells(number: str):
    path = next(p for p in NOTEBOOKS if p.name.startswith(number))
    return nbformat.read(path, as_version=4).cells


@pytest.mark.parametrize("gpu", [False, True])
def test_notebook_03_parameters_are_the_recipe_for_the_machine(gpu, monkeypatch):
    """The plain values of notebook 03's parameters cell are recipe.course_settings() for a GPU and for a CPU."""
    import torch

    from ftlib import recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    params = next(c for c in _cells("03") if "parameters" in c.metadata.get("tags", []))
    space: dict = {}
    exec(params.source, space)
    settings = recipe.course_settings(on_gpu=gpu)
    assert space["CPU_STEPS"] == recipe.CPU_STEPS
    if not gpu:  # None: the steps of CPU_STEPS for the language, resolved in the next cell
        assert space["MAX_STEPS"] is None
        space["MAX_STEPS"] = space["CPU_STEPS"]["en"]
    assert (space["MAX_STEPS"], space["EPOCHS"], space["LEARNING_RATE"], space["LORA_DROPOUT"], space["FOCUS"]) == (
        settings["max_steps"], settings["num_train_epochs"], settings["learning_rate"], settings["lora_dropout"],
        settings["focus"])
    assert space["METHOD"] == recipe.course_method(on_gpu=gpu) == ("qlora" if gpu else "lora")
    assert (space["R"], space["LORA_ALPHA"], space["TARGET_MODULES"], space["BATCH"], space["MAX_LENGTH"]) == (
        recipe.R, recipe.LORA_ALPHA_PER_R * recipe.R, recipe.TARGET_MODULES, recipe.BATCH, recipe.MAX_LENGTH)


def test_notebook_03_builds_the_three_configs_as_the_recipe_does(tmp_path, monkeypatch):
    """Notebook 03 writes BitsAndBytesConfig, LoraConfig and SFTConfig out in plain sight; they equal what
    ftlib.recipe's builders make of the same values, so the course's runs and the notebook's never drift apart."""
    from ftlib import env, recipe, train

    monkeypatch.setattr(env, "runs_dir", lambda: tmp_path)
    cells = _cells("03")
    params = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    configs = next(c for c in cells if "SFTConfig(" in c.source)
    space: dict = {"env": env, "train": train}
    exec(params.source, space)
    space["MAX_STEPS"] = space["MAX_STEPS"] or space["CPU_STEPS"][space["LANG"]]  # as the next cell resolves it
    lora_only = space | {"METHOD": "lora"}
    exec(configs.source, lora_only)
    assert lora_only["bnb_config"] is None  # LoRA loads the base without a BitsAndBytesConfig
    space["METHOD"] = "qlora"
    exec(configs.source, space)
    assert space["bnb_config"].to_dict() == recipe.bnb_config().to_dict()
    assert space["lora_config"].to_dict() == recipe.lora_config(
        space["R"], space["LORA_ALPHA"], space["LORA_DROPOUT"], space["TARGET_MODULES"]).to_dict()
    built = recipe.sft_config(space["sft_config"].output_dir, space["SEED"], learning_rate=space["LEARNING_RATE"],
                              max_steps=space["MAX_STEPS"], per_device_train_batch_size=space["BATCH"],
                              max_length=space["MAX_LENGTH"], eval_steps=space["EVAL_STEPS"])
    assert space["sft_config"].to_dict() == built.to_dict()
    shown = recipe.show(space["bnb_config"], space["lora_config"], space["sft_config"])
    assert set(shown.index.get_level_values("config")) == {"BitsAndBytesConfig", "LoraConfig", "SFTConfig"}

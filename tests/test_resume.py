"""Resume falls back to the newest valid checkpoint and says so: a cut-off trainer_state.json, an empty adapter file or
a missing optimizer state in the newest checkpoint; and it says when there is nothing to resume, training from step 0.
"""

import json
import shutil

import pytest
import test_train
from test_train import run

from ftlib import train

small = test_train.small  # test_train's fixture: a slice of the course data


@pytest.fixture(scope="module")
def trained(small, tmp_path_factory):
    """A tiny run of 4 steps with checkpoints at steps 2 and 4: (folder, result)."""
    folder = tmp_path_factory.mktemp("run")
    return folder, run("tiny-random", small, folder, max_steps=4, save_steps=2)


@pytest.fixture
def spare(trained, tmp_path):
    """A fresh copy of the trained run's folder, to damage."""
    folder = tmp_path / "run"
    shutil.copytree(trained[0], folder)
    return folder


def cut_state(checkpoint):
    state = checkpoint / "trainer_state.json"
    state.write_text(state.read_text()[:500])  # a disk that filled up while the Trainer wrote it


def empty_adapter(checkpoint):
    (checkpoint / "adapter_model.safetensors").write_bytes(b"")


DAMAGE = {"cut-off trainer_state.json": (cut_state, r"trainer_state.json is cut off or damaged \(JSONDecodeError"),
          "empty adapter file": (empty_adapter, "adapter_model.safetensors is missing, empty or cut off"),
          "no optimizer.pt": (lambda c: (c / "optimizer.pt").unlink(), "no optimizer state")}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_newest_checkpoint_gives_way_to_the_one_before(damage, small, trained, spare, capsys):
    spoil, why = DAMAGE[damage]
    spoil(spare / "checkpoint-4")
    with pytest.warns(UserWarning, match=rf"checkpoint-4 is incomplete \({why}.*looking for an earlier checkpoint"):
        assert train.last_checkpoint(spare) == str(spare / "checkpoint-2")
    with pytest.warns(UserWarning, match="checkpoint-4 is incomplete"):
        resumed = run("tiny-random", small, spare, max_steps=4, save_steps=2, resume=True)
    assert f"resuming from {spare / 'checkpoint-2'}" in capsys.readouterr().out
    assert 0 < resumed.tokens < trained[1].tokens  # steps 3 and 4 trained again, not all four
    assert json.loads((spare / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    assert train.last_checkpoint(spare) == str(spare / "checkpoint-4")  # whole again, and no warning


def test_without_any_optimizer_state_the_newest_resumes_and_says_the_optimizer_is_fresh(spare):
    for step in (2, 4):
        (spare / f"checkpoint-{step}" / "optimizer.pt").unlink()
    with pytest.warns(UserWarning) as caught:
        assert train.last_checkpoint(spare) == str(spare / "checkpoint-4")
    fresh = (f"no checkpoint in {spare} has the optimizer state: resuming from {spare / 'checkpoint-4'} with a fresh "
             "optimizer and learning-rate schedule")
    assert [str(w.message) for w in caught][-1] == fresh


@pytest.mark.parametrize("there", [True, False], ids=["empty folder", "missing folder"])
def test_resume_with_nothing_to_resume_says_it_starts_at_step_0(there, small, tmp_path, capsys):
    folder = tmp_path / "run"
    if there:
        folder.mkdir()
    result = run("tiny-random", small, folder, max_steps=2, eval_steps=2, resume=True)
    assert f"no checkpoint in {folder}: training starts at step 0" in capsys.readouterr().out
    assert result.history["step"].max() == 2


@pytest.mark.parametrize("rows", ["0", "-3"])
def test_cli_refuses_a_train_rows_below_one(rows, capsys):
    with pytest.raises(SystemExit):
        train.main(["--model", "tiny-random", "--train-rows", rows])
    assert f"--train-rows {rows}: give at least 1" in capsys.readouterr().err

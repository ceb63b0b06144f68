"""Every public function and class of ftlib has a docstring; teaching modules point back to their notebook."""

import importlib
import inspect
import pkgutil
import re

import nbformat
import pytest

import ftlib
from ftlib import course

TOOLS = {"ftlib.course", "ftlib.i18n", "ftlib.plan"}  # they run, build or plan the course; no notebook teaches them
MODULES = [importlib.import_module(f"ftlib.{m.name}") for m in pkgutil.iter_modules(ftlib.__path__)]


def public_members(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_public_api_is_documented(module):
    assert module.__doc__, f"{module.__name__} has no module docstring"
    for name, obj in public_members(module):
        doc = inspect.getdoc(obj)
        assert doc, f"{module.__name__}.{name} has no docstring"
        if inspect.isfunction(obj) and module.__name__ not in TOOLS:
            last = doc.strip().splitlines()[-1].lower()
            assert "notebook" in last, f"{module.__name__}.{name}: the last docstring line should name its notebook"


NOTEBOOK_TEXT = {path.name[:2]: "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
                 for path in course.notebooks()}
FUNCTIONS = [(module, name, obj) for module in MODULES if module.__name__ not in TOOLS
             for name, obj in public_members(module) if inspect.isfunction(obj)]


@pytest.mark.parametrize("module,name,function", FUNCTIONS, ids=lambda x: getattr(x, "__name__", str(x)))
def test_notebook_pointers_are_true(module, name, function):
    """"Taught in notebook NN" holds only where notebook NN's cells name the function; a function reached only through
    another says "Used by X (notebook NN)", and notebook NN names X. The pointer leads a reader from code to lesson."""
    last = inspect.getdoc(function).strip().splitlines()[-1]
    taught = re.search(r"Taught in notebooks? ([0-9, and]+)", last)
    used = re.search(r"Used by ([\w.]+) \(notebook (\d\d)\)", last)
    assert taught or used, f"{module.__name__}.{name}: the last line should say 'Taught in notebook NN.' or " \
                           "'Used by X (notebook NN).'"
    if taught:  # a command line's main() is taught by its command: `python -m ftlib.train`
        named = re.escape(module.__name__) if name == "main" else rf"\b{name}\b"
        for number in re.findall(r"\d\d", taught.group(1)):
            assert re.search(named, NOTEBOOK_TEXT[number]), f"notebook {number} never names {name}"
    else:
        user, number = used.groups()
        owner, _, attr = user.rpartition(".")
        assert hasattr(importlib.import_module(f"ftlib.{owner}"), attr), f"{user} is not an ftlib name"
        assert re.search(rf"\b{attr}\b", NOTEBOOK_TEXT[number]), f"notebook {number} never names {user}"

"""Every public function and class of ftlib has a docstring; teaching modules point back to their notebook."""

import importlib
import inspect
import pkgutil

import pytest

import ftlib

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
        if inspect.isfunction(obj) and module.__name__ != "ftlib.course":
            last = doc.strip().splitlines()[-1].lower()
            assert "notebook" in last, f"{module.__name__}.{name}: the last docstring line should name its notebook"

"""Every module declares ``__all__``, and every exported name exists."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import ws13

# ``python -m ws13`` runs __main__; it is a script, not an API, like websockets' own.
SCRIPTS = {"ws13.__main__"}


def python_modules() -> list[str]:
    names = ["ws13"]
    for info in pkgutil.walk_packages(ws13.__path__, "ws13."):
        if info.name in SCRIPTS:
            continue
        module = importlib.import_module(info.name)
        # C extensions (ws13._speedups) are described by their .pyi stub instead.
        if module.__file__ is not None and module.__file__.endswith(".py"):
            names.append(info.name)
    return names


MODULES = python_modules()

# The sans-I/O core: everything ws13 exports at the top level comes from these.
CORE = [
    "ws13.client",
    "ws13.exceptions",
    "ws13.frames",
    "ws13.headers",
    "ws13.http11",
    "ws13.protocol",
    "ws13.server",
    "ws13.uri",
    "ws13.version",
    "ws13.writer",
]


def test_core_modules_are_found() -> None:
    assert set(CORE) <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_has_all(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"


@pytest.mark.parametrize("name", MODULES)
def test_all_names_resolve(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert missing == [], f"{name}.__all__ names what it doesn't define"


def test_top_level_names_resolve() -> None:
    for name in ws13.__all__:
        assert getattr(ws13, name) is not None


def test_top_level_exports_come_from_the_core() -> None:
    core: dict[str, object] = {}
    for name in CORE:
        module: ModuleType = importlib.import_module(name)
        core.update({attr: getattr(module, attr) for attr in module.__all__})
    for name in ws13.__all__:
        assert name in core, f"ws13.{name} isn't exported by a core module"
        assert getattr(ws13, name) is core[name]


def test_star_import() -> None:
    namespace: dict[str, object] = {}
    exec("from ws13 import *", namespace)
    assert set(ws13.__all__) <= set(namespace)

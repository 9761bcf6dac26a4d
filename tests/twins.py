"""Both implementations of ws13 in one process, for the differential tests.

``load(speedups)`` imports a separate copy of the ``ws13`` package with the C
speedups on or off (``WS13_NO_EXTENSIONS``, read once by ``ws13._accel``),
whatever mode the test run itself is in, and puts the modules the run
imported back afterwards. The two copies share nothing: classes, exceptions
and module state are each copy's own, so a test compares what they produce
(events, bytes, close codes, exception names and messages), not identities.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

__all__ = ["Twin", "load"]

_MODULES = (
    "ws13.protocol",
    "ws13.server",
    "ws13.client",
    "ws13.writer",
    "ws13.extensions.permessage_deflate",
)


class Twin:
    """One copy of ws13: its modules by short name (``protocol``, ``server`` ...)."""

    def __init__(self, modules: dict[str, ModuleType], accel: ModuleType) -> None:
        self.protocol = modules["ws13.protocol"]
        self.server = modules["ws13.server"]
        self.client = modules["ws13.client"]
        self.writer = modules["ws13.writer"]
        self.permessage_deflate = modules["ws13.extensions.permessage_deflate"]
        self.accel = accel


def _is_ws13(name: str) -> bool:
    return name == "ws13" or name.startswith("ws13.")


def load(speedups: bool) -> Twin:
    """A fresh copy of ws13, with the C speedups or in pure Python."""
    saved = {name: module for name, module in sys.modules.items() if _is_ws13(name)}
    saved_env = os.environ.get("WS13_NO_EXTENSIONS")
    for name in saved:
        del sys.modules[name]
    if speedups:
        os.environ.pop("WS13_NO_EXTENSIONS", None)
    else:
        os.environ["WS13_NO_EXTENSIONS"] = "1"
    try:
        modules = {name: importlib.import_module(name) for name in _MODULES}
        accel = importlib.import_module("ws13._accel")
    finally:
        for name in [name for name in sys.modules if _is_ws13(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
        if saved_env is None:
            os.environ.pop("WS13_NO_EXTENSIONS", None)
        else:
            os.environ["WS13_NO_EXTENSIONS"] = saved_env
    if speedups != accel.USING_SPEEDUPS:
        raise RuntimeError(
            "the C speedups are not built: pip install -e . with a C compiler"
            if speedups
            else "WS13_NO_EXTENSIONS=1 did not turn the speedups off"
        )
    return Twin(modules, accel)

"""The core's public API is the only door (shared/DESIGN.md), checked on the source.

An I/O layer never reads or writes a private attribute of the sans-I/O core,
and the C code never reads a Python class's layout or replaces its methods.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ws13
from ws13 import assembler, client, corebase, largeframes, protocol, server, writer

SRC = Path(ws13.__file__).parent
CORE_CLASSES = (
    corebase.CoreBase,
    writer.FrameWriter,
    largeframes.LargeFrameReceiver,
    assembler.MessageAssembler,
    protocol.Protocol,
    client.ClientProtocol,
    server.ServerProtocol,
)


def core_private_names() -> set[str]:
    """The private attributes and methods of the core's classes."""
    names: set[str] = set()
    for cls in CORE_CLASSES:
        names.update(getattr(cls, "__slots__", ()))
        names.update(vars(cls))
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def own_names(tree: ast.Module) -> set[str]:
    """Names a module defines for its own objects: self.x = ..., slots, methods."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return names


def private_core_uses(package: str) -> list[str]:
    """Where the I/O layer ``package`` touches a private attribute of the core."""
    private = core_private_names()
    sources = sorted((SRC / package).glob("*.py"))
    assert sources, package
    trees = {path: ast.parse(path.read_text()) for path in sources}
    own: set[str] = set().union(*(own_names(tree) for tree in trees.values()))
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private and node.attr not in own:
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    return found


def test_the_asyncio_layer_uses_only_the_cores_public_api() -> None:
    assert private_core_uses("asyncio") == []
    private = core_private_names()
    assert "_events" in private
    assert "_fast_recv" in private


def test_the_threaded_layer_uses_only_the_cores_public_api() -> None:
    assert private_core_uses("sync") == []


def test_the_uvicorn_layer_uses_only_the_cores_public_api() -> None:
    assert private_core_uses("uvicorn") == []


def test_the_c_code_reads_no_python_layout() -> None:
    # What the removed _receiver.c did: offsets of __slots__ found from
    # member descriptors, methods replaced at import, private asyncio calls.
    forbidden = re.compile(
        r"tp_dictoffset|PyMemberDescr|d_member|_enter_task|_leave_task|"
        r"PyObject_SetAttr\w*\([^,]+, *\"data_received\"|Py_MOD_GIL_NOT_USED"
    )
    for path in sorted(SRC.glob("*.[ch]")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if forbidden.search(line) and "Py_mod_gil slot" not in line:
                raise AssertionError(f"{path.name}:{number}: {line.strip()}")


def test_no_private_asyncio_api_by_default() -> None:
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        for name in ("_enter_task", "_leave_task", "_current_tasks", "_register_task"):
            assert name not in text, f"{path.relative_to(SRC)} uses asyncio's {name}"


def test_the_uvicorn_layer_reads_no_private_attribute_at_all() -> None:
    # Stricter than the core check: no private attribute of anything it
    # doesn't define itself (asyncio's or uvloop's transports, uvicorn's
    # objects, the core, ws13.asyncio's connection).
    sources = sorted((SRC / "uvicorn").glob("*.py"))
    trees = {path: ast.parse(path.read_text()) for path in sources}
    own: set[str] = set().union(*(own_names(tree) for tree in trees.values()))
    found = [
        f"{path.name}:{node.lineno} .{node.attr}"
        for path, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and node.attr not in own
    ]
    assert found == []

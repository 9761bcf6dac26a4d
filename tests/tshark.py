"""Read pcapng captures with Debian's ``tshark`` (scripts/test.sh installs it)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

__all__ = ["tshark", "tshark_fields", "websocket_frames"]


def tshark(path: str, *args: str) -> str:
    """The output of ``tshark -r path ARGS``; fail on any error."""
    result = subprocess.run(
        ["tshark", "-r", path, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def tshark_fields(path: str, filter: str, *fields: str) -> list[list[str]]:
    """One row per packet matching ``filter``: the values of ``fields``."""
    args = ["-Y", filter, "-T", "fields", "-E", "occurrence=a"]
    for field in fields:
        args += ["-e", field]
    return [line.split("\t") for line in tshark(path, *args).splitlines()]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose repeated keys (a layer twice in a packet) become lists."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            previous = result[key]
            result[key] = (
                [*previous, value]
                if isinstance(previous, _Repeated)
                else _Repeated([previous, value])
            )
        else:
            result[key] = value
    return result


class _Repeated(list[Any]):
    """The values of a key repeated in one JSON object."""


def _flat(layer: dict[str, Any]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in layer.items():
        if isinstance(value, dict):
            flat.update(_flat(value))
        elif isinstance(value, str):
            flat[key] = value
    return flat


def websocket_frames(path: str, filter: str = "websocket") -> list[dict[str, str]]:
    """Every WebSocket frame in packets matching ``filter``, in order, as
    ``{field: value}`` (nested fields flattened), with its ``tcp.stream``;
    several frames in one TCP segment are several entries."""
    output = tshark(path, "-Y", filter, "-T", "json", "-J", "tcp websocket")
    frames = []
    for packet in json.loads(output, object_pairs_hook=_pairs):
        layers = packet["_source"]["layers"]
        stream = layers["tcp"]["tcp.stream"]
        websocket = layers.get("websocket", [])
        for layer in websocket if isinstance(websocket, _Repeated) else [websocket]:
            frames.append({**_flat(layer), "tcp.stream": stream})
    return frames

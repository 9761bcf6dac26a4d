"""The fuzz targets: each takes bytes and raises only when it finds a bug.

* ``frames``: RFC 6455 frames into an OPEN protocol of both twins (the C core
  and the pure-Python reference), server or client side, with or without
  permessage-deflate, split into reads where the input says; both must give
  the same events, bytes to write, state and close codes (the differential
  check of ``tests/test_corebase.py``, driven by coverage instead of
  hypothesis), and never raise.
* ``deflate``: the input as the payload of a compressed (RSV1) message into
  both twins with permessage-deflate: the same outcome (a message, or 1007 /
  1009 / 1002), never an exception.
* ``http11``: the input as a client's opening handshake into a
  ``ServerProtocol`` of both twins (the same answer, no exception), and as a
  server's response to ``Response.parse`` (a parse or ``InvalidHandshake``).
* ``hub_wire``: the input as a hub client's message to
  ``ws13.hub.wire.parse_request`` (a request or ``HubError``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ws13.exceptions import InvalidHandshake
from ws13.http11 import Response
from ws13.hub.wire import HubError, parse_request

__all__ = ["TARGETS", "TWIN_TARGETS", "load_twins"]


@functools.cache
def load_twins() -> ModuleType:
    """The differential tests' helpers, with both twins: loaded (and
    instrumented) only by the targets that use them."""
    from tests import test_corebase

    return test_corebase


def _both(run: Callable[[Any], Any]) -> None:
    """Run ``run`` on each twin; the results must be equal."""
    corebase = load_twins()
    results = [run(twin) for twin in (corebase.C, corebase.PY)]
    assert results[0] == results[1], results


def frames(data: bytes) -> None:
    if not data:
        return
    flags, data = data[0], data[1:]
    server, deflate, stream = bool(flags & 1), bool(flags & 2), bool(flags & 4)
    # The high bits cut the input into reads of 1 to 31 bytes... or one read.
    step = flags >> 3
    chunks = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
    corebase = load_twins()
    _both(lambda twin: corebase.feed(corebase.make(twin, server, deflate, stream=stream), chunks))


def deflate(data: bytes) -> None:
    if len(data) > 125:
        data = data[:125]
    # A masked (zero key), compressed, final text or binary frame.
    opcode = 0x1 if data[:1] == b"t" else 0x2
    frame = bytes([0xC0 | opcode, 0x80 | len(data)]) + b"\0\0\0\0" + data
    corebase = load_twins()
    _both(lambda twin: corebase.feed(corebase.make(twin, True, True, max_size=4096), [frame]))


def _handshake(twin: Any, data: bytes) -> Any:
    protocol = twin.server.ServerProtocol()
    events, writes = protocol.receive(data)
    answer = None
    if events:
        response = protocol.accept(events[0])
        protocol.send_response(response)
        answer = (response.status_code, response.headers.items(), response.body)
    return (
        [type(event).__name__ for event in events],
        answer,
        writes,
        protocol.data_to_send(),
        load_twins().error(protocol.handshake_exc),
    )


def http11(data: bytes) -> None:
    _both(lambda twin: _handshake(twin, data))
    for eof in (False, True):
        try:
            Response.parse(data, eof=eof)
        except InvalidHandshake:
            pass


def hub_wire(data: bytes) -> None:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return
    try:
        parse_request(text, max_data_size=1024)
    except HubError:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames": frames,
    "deflate": deflate,
    "http11": http11,
    "hub_wire": hub_wire,
}

#: The targets that run both twins: ``run.py`` loads them before fuzzing.
TWIN_TARGETS = frozenset({"frames", "deflate", "http11"})

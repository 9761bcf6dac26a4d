"""Reading the rest of a large frame straight into its payload.

A ``Connection`` is an ``asyncio.Protocol``: every read arrives as a new
``bytes`` object (uvloop reads into one buffer per loop and copies each read
out), which the core then unmasks into the frame's payload. For a large frame
that is one copy too many: a 1 MiB message arrives in four or more 256 KiB
reads, each allocated, copied and freed. When a frame still has at least
``LARGE_READ`` bytes to come, the connection hands its transport to a
``LargeFrameReader`` (``transport.set_protocol()``, which uvloop and asyncio
both support on plain and TLS transports): an ``asyncio.BufferedProtocol``
whose ``get_buffer()`` is the unfilled part of the payload itself
(``Protocol.receive_large_buffer()``), so the kernel (or the TLS layer)
writes there and the core unmasks in place. Once the frame is complete the
transport goes back to the connection, before the message is delivered.
Everything else a transport reports in the meantime (EOF, the connection
lost, write flow control) goes to the connection unchanged.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["LARGE_READ", "LargeFrameReader"]

#: A large frame with at least this many bytes still to come is read straight
#: into its payload. Below it, switching the transport's protocol twice
#: (uvloop restarts reading each time) costs more than the copies it saves.
LARGE_READ = 256 * 1024


class LargeFrameReader(asyncio.BufferedProtocol):
    """The transport's protocol while the rest of a large frame is read."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._connection.protocol.receive_large_buffer()
        # The reader is installed only while a large frame is incomplete and
        # removed (below) as soon as it isn't.
        assert buffer is not None
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        connection = self._connection
        protocol = connection.protocol
        protocol.large_buffer_updated(nbytes)
        if not protocol.large_frame_remaining:
            # Complete, or the connection failed: back to data_received(),
            # then what data_received() does after the core has the data.
            transport = connection.transport
            if transport is not None:
                transport.set_protocol(connection)
            connection._received()

    def eof_received(self) -> bool | None:
        return self._connection.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection.connection_lost(exc)

    def pause_writing(self) -> None:
        self._connection.pause_writing()

    def resume_writing(self) -> None:
        self._connection.resume_writing()

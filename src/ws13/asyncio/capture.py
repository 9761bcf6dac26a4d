"""Capture a connection's bytes to pcapng (``pcap=`` of ``connect()`` and ``serve()``).

Captured connections get a ``TapProtocol`` between the asyncio transport and
the ``Connection``, and the connection gets a ``TapTransport`` wrapping the
real one: every byte read (``data_received``, and the buffers of the large
frame reader) and written (``write``/``writelines``) goes to a ``TcpFlow``
(``ws13.pcap``) on its way. Connections without ``pcap=`` are made as
before: capture costs them nothing, not even a branch.

With TLS, the transport the connection sees carries the plaintext, so the
capture shows the connection as if it were ws:// on the same ports, and
says so in a comment on its SYN. A Unix socket has no addresses: its
connections aren't captured.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import IO, Any, Generic, TypeVar

from ..pcap import PcapWriter, TcpFlow
from .connection import Connection

__all__ = ["Pcap", "TapProtocol", "TapTransport", "open_pcap", "start_capture", "tap", "untap"]

C = TypeVar("C", bound=Connection)

#: What ``pcap=`` takes: a path (the file is created or truncated) or a writer.
Pcap = str | os.PathLike[str] | IO[bytes] | PcapWriter

TLS_COMMENT = (
    "TLS connection: the plaintext is shown as if it were ws:// on the same ports "
    "(in Wireshark, Decode As HTTP if the port is 443)"
)


def open_pcap(pcap: Pcap) -> PcapWriter:
    """The writer for ``pcap=``: OSError now if a path can't be written."""
    if isinstance(pcap, PcapWriter):
        return pcap
    return PcapWriter(pcap)


def tap(
    factory: Callable[[], C], writer: PcapWriter, *, client: bool
) -> Callable[[], TapProtocol[C]]:
    """A protocol factory capturing the connections ``factory`` makes."""

    def tapped() -> TapProtocol[C]:
        return TapProtocol(factory(), writer, client=client)

    return tapped


def start_capture(
    connection: Connection, pcap: Pcap, *, client: bool, received: bytes = b""
) -> None:
    """Capture an open connection from now on, e.g. from ``process_request``.

    The capture starts with its TCP handshake now, then ``received`` as if
    it had just come from the peer (``request.serialize()`` for a server:
    the request was read before this call). ``client``: whether
    ``connection`` is the client's end. A connection already captured, or
    closed, is left as it is.
    """
    transport = connection.transport
    if transport is None or isinstance(transport, TapTransport) or transport.is_closing():
        return
    tap = TapProtocol(connection, open_pcap(pcap), client=client)
    tap.start(transport)
    tap.read(received)
    connection.transport = TapTransport(transport, tap)
    transport.set_protocol(tap)


def untap(protocol: C | TapProtocol[C]) -> C:
    """The connection behind what a (possibly tapped) factory made."""
    if isinstance(protocol, TapProtocol):
        return protocol.connection
    return protocol


def ip_port(address: Any) -> tuple[str, int] | None:
    """``(host, port)`` of a socket address; None for a Unix socket's."""
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        return address[0], address[1]
    return None


class TapProtocol(asyncio.Protocol, Generic[C]):
    """The transport's protocol for a captured connection: records, then forwards."""

    def __init__(self, connection: C, writer: PcapWriter, *, client: bool) -> None:
        self.connection = connection
        self.writer = writer
        self.client = client
        self.flow: TcpFlow | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.start(transport)
        self.connection.connection_made(TapTransport(transport, self))

    def start(self, transport: asyncio.BaseTransport) -> None:
        """The TCP handshake, on the transport's addresses (none for Unix sockets)."""
        local = ip_port(transport.get_extra_info("sockname"))
        peer = ip_port(transport.get_extra_info("peername"))
        if local is not None and peer is not None and not self.writer.failed:
            tls = transport.get_extra_info("sslcontext") is not None
            client, server = (local, peer) if self.client else (peer, local)
            self.flow = TcpFlow(self.writer, client, server, now_us(), TLS_COMMENT if tls else None)

    def data_received(self, data: bytes) -> None:
        self.read(data)
        self.connection.data_received(data)

    def eof_received(self) -> bool | None:
        self.read_eof()
        return self.connection.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost(exc)
        self.connection.connection_lost(exc)

    def pause_writing(self) -> None:
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self.connection.resume_writing()

    # -- recording -----------------------------------------------------------

    def read(self, data: bytes | memoryview) -> None:
        if self.flow is not None:
            self.flow.sent(not self.client, data, now_us())

    def wrote(self, data: bytes | bytearray | memoryview) -> None:
        if self.flow is not None:
            self.flow.sent(self.client, data, now_us())

    def read_eof(self) -> None:
        if self.flow is not None:
            self.flow.finish(not self.client, now_us())

    def closed(self) -> None:
        if self.flow is not None:
            self.flow.finish(self.client, now_us())

    def aborted(self) -> None:
        if self.flow is not None:
            self.flow.reset(self.client, now_us())

    def lost(self, exc: Exception | None) -> None:
        flow = self.flow
        if flow is None:
            return
        now = now_us()
        if exc is not None:
            flow.reset(not self.client, now)
        else:
            # Whichever side hasn't closed yet closes now: ours first if the
            # peer's FIN came first (it was recorded then), or the transport
            # closed itself after that FIN.
            flow.finish(self.client, now)
            flow.finish(not self.client, now)
        self.flow = None


class _TapBuffered(asyncio.BufferedProtocol):
    """Wraps a ``BufferedProtocol`` the connection installs (the large frame reader)."""

    def __init__(self, inner: asyncio.BufferedProtocol, tap: TapProtocol[Any]) -> None:
        self.inner = inner
        self.tap = tap
        self._buffer: memoryview | None = None

    def get_buffer(self, sizehint: int) -> Any:
        buffer = self.inner.get_buffer(sizehint)
        self._buffer = memoryview(buffer)
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self._buffer is not None
        self.tap.read(self._buffer[:nbytes])
        self._buffer = None
        self.inner.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        self.tap.read_eof()
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tap.lost(exc)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class TapTransport(asyncio.Transport):
    """The transport a captured connection sees: records writes, then forwards."""

    def __init__(self, transport: asyncio.BaseTransport, tap: TapProtocol[Any]) -> None:
        super().__init__()
        self.transport: Any = transport  # uvloop's transports don't subclass asyncio's
        self.tap = tap

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.tap.wrote(data)
        self.transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        list_of_data = list(list_of_data)
        for data in list_of_data:
            self.tap.wrote(data)
        self.transport.writelines(list_of_data)

    def close(self) -> None:
        if not self.transport.is_closing():
            self.tap.closed()
        self.transport.close()

    def abort(self) -> None:
        self.tap.aborted()
        self.transport.abort()

    def write_eof(self) -> None:
        self.tap.closed()
        self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return bool(self.transport.can_write_eof())

    def is_closing(self) -> bool:
        return bool(self.transport.is_closing())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        if protocol is self.tap.connection:
            self.transport.set_protocol(self.tap)
        elif isinstance(protocol, asyncio.BufferedProtocol):
            self.transport.set_protocol(_TapBuffered(protocol, self.tap))
        else:
            raise TypeError("a captured connection's protocol can't be replaced")

    def get_protocol(self) -> asyncio.BaseProtocol:
        protocol = self.transport.get_protocol()
        if isinstance(protocol, _TapBuffered):
            inner: asyncio.BaseProtocol = protocol.inner
            return inner
        connection: asyncio.BaseProtocol = self.tap.connection
        return connection

    def is_reading(self) -> bool:
        return bool(self.transport.is_reading())

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return int(self.transport.get_write_buffer_size())

    def get_write_buffer_limits(self) -> tuple[int, int]:
        low, high = self.transport.get_write_buffer_limits()
        return low, high


def now_us() -> int:
    """Microseconds since the epoch: pcapng's default timestamp unit."""
    return time.time_ns() // 1000

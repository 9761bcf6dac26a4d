"""Capture TLS connections as they went out (``pcap_tls=True`` of ``connect()`` and ``serve()``).

asyncio's TLS transports never show the records they send and receive, so a
connection captured with ``pcap_tls`` runs its TLS transport over one end of
a ``socket.socketpair()``; a ``Relay`` copies the bytes between the other end
and the real TCP socket and records them, encrypted, in a ``TcpFlow`` on the
real addresses. The session keys come from the ``SSLContext``'s key log
(``keylog_filename``): a ``KeyLog`` reads the lines OpenSSL appends and
writes them in a Decryption Secrets Block before the packets that follow,
so Wireshark and tshark decrypt the capture from the file alone.

The costs: the bytes cross the socketpair once more, and the connection's
own transport is on the socketpair, so its ``remote_address`` and
``local_address`` are empty (the capture has the real ones).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as ssl_module
import tempfile
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ..pcap import PcapWriter, TcpFlow, secrets_block
from .capture import ip_port, now_us

__all__ = ["KeyLog", "Relay", "open_relayed", "relayed"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

logger = logging.getLogger("ws13.pcap")

RELAY_COMMENT = "TLS records as sent; the keys are in this file's Decryption Secrets Blocks"


class KeyLog:
    """The TLS key log of an ``SSLContext``, copied into a capture as it grows.

    If ``context.keylog_filename`` names a file, that file is read from its
    current end; otherwise the context gets a new temporary file, deleted at
    once (OpenSSL keeps it open, and so does this object, to read it).
    Raises OSError if the file can't be made or read.
    """

    def __init__(self, context: ssl_module.SSLContext) -> None:
        path = context.keylog_filename
        if path is not None and os.path.exists(path):
            self._fd = os.open(path, os.O_RDONLY)
            self._offset = os.fstat(self._fd).st_size
        else:
            fd, path = tempfile.mkstemp(prefix="ws13-keylog-")
            try:
                context.keylog_filename = path
            finally:
                os.unlink(path)
            self._fd = fd
            self._offset = 0
        weakref.finalize(self, os.close, self._fd)

    def copy(self, writer: PcapWriter) -> None:
        """Write the whole lines logged since the last call as a Decryption Secrets Block."""
        data = os.pread(self._fd, 1 << 16, self._offset)
        end = data.rfind(b"\n") + 1
        if end:
            self._offset += end
            writer.write_packets([secrets_block(data[:end])])


class _Pipe(asyncio.Protocol):
    """One side of a ``Relay``: the real socket (``net``) or the socketpair's end."""

    def __init__(self, relay: Relay, *, net: bool) -> None:
        self.relay = relay
        self.net = net
        self.transport: Any = None  # uvloop's transports don't subclass asyncio's
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.relay.made(self)

    def data_received(self, data: bytes) -> None:
        self.relay.forward(self, data)

    def eof_received(self) -> bool:
        self.eof = True
        self.relay.forward_eof(self)
        return True  # the other direction may still carry data

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.lost(self, exc)

    def pause_writing(self) -> None:
        self.relay.other(self).transport.pause_reading()

    def resume_writing(self) -> None:
        self.relay.other(self).transport.resume_reading()


class Relay:
    """Copies bytes between the real socket and the socketpair, recording them.

    ``client``: whether this is the client's end. What the real socket
    reads before the socketpair's side is there (a ClientHello) waits in
    memory. The packets are held
    until ``release()``, after the TLS handshake: by then OpenSSL has logged
    the keys of the handshake and of the data, and they go first. (An end
    learns some keys only after it has received what they encrypt.)
    """

    def __init__(self, writer: PcapWriter, keylog: KeyLog, *, client: bool) -> None:
        self.writer = writer
        self.keylog = keylog
        self.client = client
        self.net = _Pipe(self, net=True)
        self.pair = _Pipe(self, net=False)
        self.flow: TcpFlow | None = None
        self._held: list[bytes] | None = []
        # Read before the socketpair's side was there; b"" for an EOF.
        self._early: list[bytes] = []
        self._gone = False

    @property
    def failed(self) -> bool:
        return self.writer.failed

    def write_packets(self, blocks: list[bytes]) -> None:
        """Where the flow writes: held until ``release()``, then the keys first."""
        if self._held is not None:
            self._held.extend(blocks)
        else:
            self.keylog.copy(self.writer)
            self.writer.write_packets(blocks)

    def release(self) -> None:
        """The TLS handshake is over (or failed): write the keys, then the held packets."""
        if self._held is not None:
            held, self._held = self._held, None
            self.keylog.copy(self.writer)
            self.writer.write_packets(held)

    def other(self, pipe: _Pipe) -> _Pipe:
        return self.pair if pipe is self.net else self.net

    def made(self, pipe: _Pipe) -> None:
        if pipe is self.net:
            local = ip_port(pipe.transport.get_extra_info("sockname"))
            peer = ip_port(pipe.transport.get_extra_info("peername"))
            if local is not None and peer is not None and not self.writer.failed:
                client, server = (local, peer) if self.client else (peer, local)
                self.flow = TcpFlow(self, client, server, now_us(), RELAY_COMMENT)
        else:
            # What the real socket read meanwhile (uvloop reads even when
            # paused in connection_made, so it is kept rather than paused).
            early, self._early = self._early, []
            pipe.transport.writelines([data for data in early if data])
            if early and not early[-1]:
                pipe.transport.write_eof()
            if self._gone:
                pipe.transport.close()  # after the early bytes: the real socket is gone

    def _from_client(self, pipe: _Pipe) -> bool:
        return pipe.net is not self.client

    def forward(self, pipe: _Pipe, data: bytes) -> None:
        if self.flow is not None:
            self.flow.sent(self._from_client(pipe), data, now_us())
        other = self.other(pipe).transport
        if other is None:
            self._early.append(data)
        else:
            other.write(data)

    def forward_eof(self, pipe: _Pipe) -> None:
        if self.flow is not None:
            self.flow.finish(self._from_client(pipe), now_us())
        other = self.other(pipe)
        if other.transport is None:
            self._early.append(b"")
            return
        if other.eof:
            pipe.transport.close()
            other.transport.close()
        elif not other.transport.is_closing():
            other.transport.write_eof()

    def lost(self, pipe: _Pipe, exc: Exception | None) -> None:
        if self.flow is not None:
            now = now_us()
            if exc is not None:
                self.flow.reset(self._from_client(pipe), now)
            else:
                self.flow.finish(self._from_client(pipe), now)
                self.flow.finish(not self._from_client(pipe), now)
            self.flow = None
        self.release()
        self._gone = True
        other = self.other(pipe).transport
        if other is not None:
            if exc is None:
                other.close()
            else:
                other.abort()


async def open_relayed(
    factory: Callable[[], P],
    writer: PcapWriter,
    keylog: KeyLog,
    *,
    ssl: ssl_module.SSLContext,
    server_hostname: str | None,
    **kwargs: Any,
) -> P:
    """``loop.create_connection(factory, ssl=ssl, ...)`` with its TLS records captured."""
    loop = asyncio.get_running_loop()
    relay = Relay(writer, keylog, client=True)
    net, _ = await loop.create_connection(lambda: relay.net, **kwargs)
    inner, outer = socket.socketpair()
    try:
        await loop.create_connection(lambda: relay.pair, sock=outer)
        _, protocol = await loop.create_connection(
            factory, sock=inner, ssl=ssl, server_hostname=server_hostname
        )
    except BaseException:
        net.abort()
        outer.close()
        inner.close()
        raise
    finally:
        relay.release()
    return protocol


def relayed(
    factory: Callable[[], asyncio.BaseProtocol],
    writer: PcapWriter,
    keylog: KeyLog,
    *,
    ssl: ssl_module.SSLContext,
) -> Callable[[], asyncio.Protocol]:
    """A factory for a plain ``loop.create_server()`` serving ``factory`` over TLS, captured.

    Each accepted socket is relayed to a socketpair where the TLS transport
    runs; a failed TLS handshake closes the connection and is logged at
    debug level.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def start(relay: Relay, inner: socket.socket, outer: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: relay.pair, outer)
            await loop.connect_accepted_socket(factory, inner, ssl=ssl)
        except Exception as exc:
            logger.debug("TLS connection failed: %s", exc)
            relay.net.transport.abort()
            outer.close()
            inner.close()
        finally:
            relay.release()

    def make() -> asyncio.Protocol:
        relay = Relay(writer, keylog, client=False)
        inner, outer = socket.socketpair()
        task = asyncio.get_running_loop().create_task(start(relay, inner, outer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return relay.net

    return make

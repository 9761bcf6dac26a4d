"""A minimal permessage-deflate client: the deflate case's neutral load generator.

The library clients (``websockets``, ws13) spend 40-90 us of Python per
compressed round trip, as much as the servers they drive, so with them case
6 measured the client: every server ran against a client at 100 % CPU. This
one does only what the protocol needs, with ``zlib`` and plain Python:

* it offers what browsers offer, ``permessage-deflate; client_max_window_bits``,
  and compresses with zlib's defaults (level 6, ``memLevel`` 8) in the window
  the server grants;
* it compresses each distinct message once, on its own (a fresh compressor,
  so the output refers to nothing sent before it and is valid whatever
  context the server's decompressor keeps), and sends those bytes every
  time: its own cost per message is framing and inflating the echo, so a
  server at twice another's speed can show it (compressing for real, at
  30-40 us of zlib per message, it ran at 100 % CPU against every fast server);
* each message goes out as one compressed, masked text frame; the masking
  key is four zero bytes (servers can't tell, and it skips the XOR);
* it reads whole messages: frames from the server are unmasked, compressed
  or not; Ping is answered, Close echoed; fragmented messages are an error
  (the echo servers measured never fragment a 1 KiB message).

``send()`` / ``recv()`` / ``close()`` are coroutines, like the libraries'
clients, so ``loadclient.coroutine_roundtrips`` drives all of them the same
way; ``response.headers`` gives the negotiated extension for the report.
Targets 127.0.0.1 only (the caller's URL).
"""

from __future__ import annotations

import asyncio
import collections
import types
import urllib.parse
import zlib
from typing import Any

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ZERO_MASK = b"\x00\x00\x00\x00"
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 section 7.2.1


def request_bytes(host: str, port: int) -> bytes:
    return (
        b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        % (host.encode(), port, KEY)
    )


def header(first_byte: int, length: int) -> bytes:
    """A client frame header with the zero masking key."""
    if length < 126:
        return bytes((first_byte, 0x80 | length)) + ZERO_MASK
    if length < 65536:
        return bytes((first_byte, 0x80 | 126)) + length.to_bytes(2, "big") + ZERO_MASK
    return bytes((first_byte, 0x80 | 127)) + length.to_bytes(8, "big") + ZERO_MASK


#: Compressed frames by (window bits, message), shared by all connections.
FRAMES: dict[tuple[int, str], bytes] = {}


def compressed_frame(message: str, bits: int) -> bytes:
    """``message`` compressed on its own in a ``bits`` window, as a masked text frame."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
    payload = compressor.compress(message.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    # RFC 7692 section 7.2.1: the 0x00 0x00 0xff 0xff tail is removed.
    payload = payload.removesuffix(TAIL)
    return header(0xC1, len(payload)) + payload


def parse_extension(value: str) -> dict[str, str | None]:
    """The parameters of the server's single permessage-deflate answer."""
    name, *params = (part.strip() for part in value.split(";"))
    if name != "permessage-deflate":
        raise RuntimeError(f"server answered an unexpected extension: {value!r}")
    out: dict[str, str | None] = {}
    for param in params:
        key, eq, val = param.partition("=")
        out[key.strip()] = val.strip().strip('"') if eq else None
    return out


class RawDeflateClient(asyncio.Protocol):
    def __init__(self, request: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.loop = loop
        self.transport: Any = None
        self.buf = bytearray()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.response: Any = None
        self.messages: collections.deque[str | bytes] = collections.deque()
        self.waiter: asyncio.Future[str | bytes] | None = None
        self.decompressor: Any = None
        self.server_bits = self.client_bits = 15
        self.reset_decompressor = False
        self.close_sent = False

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            if not self.opened.done():
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1")
                del self.buf[: end + 4]
                self.negotiate(head)
                self.opened.set_result(None)
            self.parse()
        except Exception as exc:
            self.fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # -- handshake and frames -------------------------------------------------

    def negotiate(self, head: str) -> None:
        if not head.startswith("HTTP/1.1 101"):
            raise RuntimeError(head.split("\r\n", 1)[0])
        answer = None
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions":
                answer = value.strip()
        self.response = types.SimpleNamespace(headers={"Sec-WebSocket-Extensions": answer})
        if answer is None:
            raise RuntimeError("the server declined permessage-deflate")
        params = parse_extension(answer)
        self.server_bits = int(params.get("server_max_window_bits") or 15)
        self.client_bits = int(params.get("client_max_window_bits") or 15)
        if self.client_bits < 9:
            raise RuntimeError("zlib can't compress with an 8-bit window")
        self.reset_decompressor = "server_no_context_takeover" in params
        self.decompressor = zlib.decompressobj(-self.server_bits)

    def parse(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            b0, length = buf[0], buf[1] & 0x7F
            start = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + length:
                return
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            opcode = b0 & 0x0F
            if opcode == 0x8:
                if not self.close_sent:
                    self.close_sent = True
                    self.transport.write(header(0x88, len(payload)) + payload)
            elif opcode == 0x9:
                self.transport.write(header(0x8A, len(payload)) + payload)
            elif opcode in (0x1, 0x2):
                if not b0 & 0x80:
                    raise RuntimeError("fragmented message: not supported by this client")
                if b0 & 0x40:
                    payload = self.decompressor.decompress(payload + TAIL)
                    if self.reset_decompressor:
                        self.decompressor = zlib.decompressobj(-self.server_bits)
                self.deliver(payload.decode() if opcode == 0x1 else payload)
            elif opcode != 0xA:
                raise RuntimeError(f"unexpected opcode {opcode:#x}")

    def deliver(self, message: str | bytes) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_result(message)
        else:
            self.messages.append(message)

    # -- the library-like API -------------------------------------------------

    async def send(self, message: str) -> None:
        frame = FRAMES.get((self.client_bits, message))
        if frame is None:
            frame = FRAMES[self.client_bits, message] = compressed_frame(message, self.client_bits)
        self.transport.write(frame)

    async def recv(self) -> str | bytes:
        if self.messages:
            return self.messages.popleft()
        self.waiter = self.loop.create_future()
        return await self.waiter

    async def close(self) -> None:
        if not self.close_sent and not self.transport.is_closing():
            self.close_sent = True
            self.transport.write(header(0x88, 2) + (1000).to_bytes(2, "big"))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 10)
        except TimeoutError:
            self.transport.abort()


async def open_raw_deflate(url: str) -> RawDeflateClient:
    loop = asyncio.get_running_loop()
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request_bytes(host, port)
    _, client = await loop.create_connection(lambda: RawDeflateClient(request, loop), host, port)
    await client.opened
    return client

"""Pure-Python reference implementations of the hot helpers.

Each function here may have a C twin in ``ws13._speedups``; ``ws13._accel`` picks
one of the two. Keep both in step: the test suite runs the same tests on both.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import os
import struct
from collections.abc import Callable

__all__ = [
    "MaskKeys",
    "PayloadBuffer",
    "accept_key",
    "apply_mask",
    "build_frame",
    "encode_header",
    "encode_text",
    "generate_key",
    "rotate_mask",
    "utf8_check",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def generate_key() -> str:
    """Return a fresh ``Sec-WebSocket-Key``: 16 random bytes, base64-encoded.

    RFC 6455 section 4.1: "The nonce MUST be selected randomly for each connection."
    """
    return binascii.b2a_base64(os.urandom(16), newline=False).decode()


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value that answers ``key``.

    RFC 6455 section 1.3: base64 of the SHA-1 of the key concatenated with the GUID.
    """
    return binascii.b2a_base64(hashlib.sha1(key.encode() + GUID).digest(), newline=False).decode()


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3).

    Masking and unmasking are the same operation. The XOR runs on one big
    integer, which CPython does word by word: far faster than a byte loop.
    """
    # Same contract as the C twin: a key of another size is a caller's bug, not
    # something to repeat or truncate silently.
    if len(mask) != 4:
        raise ValueError("mask must contain 4 bytes")
    n = len(data)
    if n == 0:
        return b""
    repeated = mask * (n // 4) + mask[: n % 4]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


def rotate_mask(mask: bytes, offset: int) -> bytes:
    """The masking key that applies to payload bytes starting at ``offset``.

    Section 5.3: octet i is XORed with key octet i MOD 4.
    """
    shift = offset % 4
    return mask[shift:] + mask[:shift]


def encode_header(first_byte: int, length: int, mask: bytes | None) -> bytes:
    """Encode a frame header: FIN/RSV/opcode byte, MASK bit, length, masking key.

    RFC 6455 section 5.2: "the minimal number of bytes MUST be used to encode
    the length".
    """
    if length < 126:
        if mask is None:
            return bytes((first_byte, length))
        return bytes((first_byte, 0x80 | length)) + mask
    if length < 65536:
        header = struct.pack("!BBH", first_byte, 126, length)
    else:
        header = struct.pack("!BBQ", first_byte, 127, length)
    if mask is None:
        return header
    return bytes((header[0], header[1] | 0x80)) + header[2:] + mask


def build_frame(
    first_byte: int, payload: bytes | bytearray | memoryview, mask: bytes | None
) -> bytes:
    """A whole frame: the header, then the payload (masked with ``mask`` if given)."""
    header = encode_header(first_byte, len(payload), mask)
    if mask is None:
        return header + payload
    return header + apply_mask(payload, mask)


#: ``text.encode("utf-8")``: the reference for the C ``encode_text``, and as
#: cheap to call as the method (a method descriptor, no Python frame).
encode_text: Callable[[str], bytes] = str.encode


def utf8_check(data: bytes | bytearray | memoryview, state: int = 0, /) -> int:
    """Check the next piece of a UTF-8 stream; return the new state, or -1 if invalid.

    ``state`` carries an incomplete character from the previous piece: 0 at a
    character boundary, else its length (1-3) in the low byte and its bytes
    in the next three, first byte lowest. The stream is valid UTF-8 when every
    piece returns a state >= 0 and the last one returns 0.

    Invalid means no continuation can make it valid, so a bad sequence fails
    at its first bad byte even if it is cut off there (RFC 6455 section
    8.1: an endpoint that receives invalid UTF-8 "MUST _Fail the WebSocket
    Connection_"; Autobahn 6.4 checks that this happens before the rest of
    a message arrives).
    """
    if state:
        count = state & 0xFF
        # Only a state this function returns: garbage would shift the stream.
        if state < 0 or not 1 <= count <= 3 or state >> 8 * (count + 1):
            raise ValueError("invalid UTF-8 state")
        pending = (state >> 8).to_bytes(count, "little")
        if utf8_check(pending) != state:
            raise ValueError("invalid UTF-8 state")
        data = pending + bytes(data)
    try:
        _, consumed = codecs.utf_8_decode(data, "strict", False)
    except UnicodeDecodeError:
        return -1
    rest = bytes(data[consumed:])
    if not rest:
        return 0
    # CPython's decoder holds ED A0-BF (a UTF-16 surrogate, never valid in
    # UTF-8) until a third byte arrives; every other bad prefix already raised.
    if len(rest) >= 2 and rest[0] == 0xED and rest[1] >= 0xA0:
        return -1
    return len(rest) | int.from_bytes(rest, "little") << 8


class MaskKeys:
    """Strong random 4-byte masking keys, read from the OS in batches.

    RFC 6455 section 5.3: "The masking key is a 32-bit value chosen at random
    by the client ... MUST be derived from a strong source of entropy."
    ``os.urandom`` is that source; reading 4 KiB at a time saves a system call
    per frame.
    """

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def next(self) -> bytes:
        pos = self._pos
        if pos + 4 > len(self._pool):
            self._pool = os.urandom(4096)
            pos = 0
        self._pos = pos + 4
        return self._pool[pos : pos + 4]


class PayloadBuffer:
    """A large frame's payload, received over several reads and unmasked once.

    ``PayloadBuffer(size, mask)`` takes the frame's payload length and its
    4-byte masking key (``b""`` for an unmasked frame). ``feed(data, start)``
    takes ``data[start:]``, up to the payload's end, and returns the position
    after what it took; ``remaining`` is what is still to come;
    ``check_utf8(state)`` runs ``utf8_check`` over the bytes fed since the
    last check; ``take()`` returns the unmasked payload once it is complete,
    once. ``receive_buffer()`` returns a writable buffer for a transport to
    read the next bytes into (``asyncio.BufferedProtocol.get_buffer``), and
    ``written(nbytes)`` takes what it wrote.

    The C twin allocates the final ``bytes`` when it is made and unmasks each
    read into it: one allocation and one copy per frame, where buffering the
    reads and unmasking at the end makes two of each; its receive buffer is
    the payload itself. This reference keeps a ``bytearray`` that grows as
    data arrives (so a peer that announces a large frame and sends little
    costs little), unmasks it in place 64 KiB at a time or when asked to
    check or take it (big-integer XOR: slower per call on small reads, and
    per byte on a whole MiB), and receives into a scratch buffer of up to
    256 KiB.
    """

    __slots__ = ("_checked", "_data", "_mask", "_scratch", "_size", "_unmasked")

    def __init__(self, size: int, mask: bytes) -> None:
        if len(mask) not in (0, 4):
            raise ValueError("mask must contain 0 or 4 bytes")
        if size < 0:
            raise ValueError("size must be >= 0")
        self._size = size
        self._mask = bytes(mask)
        self._data: bytearray | None = bytearray()
        # Bytes of _data unmasked so far, and UTF-8-checked so far.
        self._unmasked = 0
        self._checked = 0
        self._scratch = bytearray()

    def _buffer(self) -> bytearray:
        if self._data is None:
            raise ValueError("payload already taken")
        return self._data

    def _unmask(self, buffer: bytearray) -> None:
        """Unmask what was fed since the last call, in place."""
        start = self._unmasked
        if self._mask and start < len(buffer):
            buffer[start:] = apply_mask(buffer[start:], rotate_mask(self._mask, start))
        self._unmasked = len(buffer)

    @property
    def remaining(self) -> int:
        return self._size - len(self._data or b"")

    def feed(self, data: bytes | bytearray | memoryview, start: int) -> int:
        buffer = self._buffer()
        if not 0 <= start <= len(data):
            raise ValueError("start out of range")
        end = min(len(data), start + self._size - len(buffer))
        if start == 0 and end == len(data):
            buffer += data  # the common read: all of it belongs to the payload
        else:
            with memoryview(data) as view, view[start:end] as piece:
                buffer += piece
        if len(buffer) - self._unmasked >= 65536:
            self._unmask(buffer)
        return end

    def receive_buffer(self) -> memoryview:
        self._buffer()
        self._scratch = bytearray(min(self.remaining, 256 * 1024))
        return memoryview(self._scratch)

    def written(self, nbytes: int) -> None:
        self._buffer()
        if not 0 <= nbytes <= min(len(self._scratch), self.remaining):
            raise ValueError("nbytes out of range")
        self.feed(self._scratch[:nbytes], 0)

    def check_utf8(self, state: int) -> int:
        buffer = self._buffer()
        self._unmask(buffer)
        with memoryview(buffer) as view, view[self._checked :] as new:
            state = utf8_check(new, state)
        self._checked = len(buffer)
        return state

    def take(self) -> bytes:
        buffer = self._buffer()
        if len(buffer) != self._size:
            raise ValueError(f"payload incomplete: {len(buffer)} of {self._size} bytes")
        self._unmask(buffer)
        self._data = None
        return bytes(buffer)

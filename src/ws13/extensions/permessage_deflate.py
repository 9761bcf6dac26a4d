"""permessage-deflate (RFC 7692): DEFLATE compression of whole messages.

Defaults, chosen for CPU and memory as much as for ratio (each connection with
context takeover keeps a compressor and a decompressor for its whole life, and
compressing is most of a compressed echo's cost):

* the server answers ``server_max_window_bits=11`` (2 KiB window) and, when the
  client allows it, ``client_max_window_bits=10`` (1 KiB); the compressor's
  ``memLevel`` follows its window, ``window bits - 7`` (4 at 11 bits, zlib's
  own 8 at 15 bits): a hash table much smaller than the window makes zlib
  search long collision chains, 5-10x slower on large messages. zlib's state
  then takes about 22 KiB to compress and 8 KiB to decompress per connection,
  against about 38 + 11 KiB at 12 bits and ``memLevel=5`` (the websockets
  package's defaults) and 256 + 39 KiB at zlib's own defaults.
* compression level 3 (``DEFAULT_LEVEL``), the best of zlib's fast levels
  (1-3 share one greedy matcher; 4-9 search lazily). Against the earlier
  default, level 6 with a 1 KiB window, it compresses varied JSON and text of
  256 B-64 KiB in 60-80 % of the time, at ratios from 10 % worse (1 KiB ticker
  JSON 5.4x instead of 6.0x) to 6 % better
  (Markdown, Python source); compressing is most of what a compressed echo
  costs. Context takeover is kept: without it 100-200 byte messages shrink
  only 1.2-1.4x. Other settings are one argument away
  (``ServerPerMessageDeflateFactory(server_max_window_bits=15,
  compress_settings={"level": 6})``).
* messages under ``threshold=32`` bytes go out uncompressed (DEFLATE's few
  bytes of framing outweigh what it saves on them);
* zlib state is created on first use, so a connection that never sends (or
  never receives) a compressed message pays nothing for that direction, and
  ``free_idle_memory()`` (which ``ws13.asyncio`` calls at each keepalive
  ping, every ``ping_interval``) lets it go between messages: the
  compressor outright (a fresh one makes a valid continuation of the
  stream; only the next message's ratio suffers, having no history), the
  decompressor keeping a copy of its window, the last ``2 **
  remote_max_window_bits`` bytes it produced (at most that, 1 KiB with
  the defaults, or 32 KiB when the client doesn't offer
  ``client_max_window_bits``), which primes the next one (``zdict``) so
  that context takeover goes on exactly. An idle connection then keeps
  the window copy instead of about 31 KiB of zlib state.

zlib can't make a raw DEFLATE stream with an 8-bit window (``wbits=-8`` is
refused). When the peer limits our window to 8 bits we compress with a 9-bit
window and the ``Z_RLE`` strategy, whose matches all have distance 1: valid for
any window, so the peer's 256-byte window always suffices.

Decompression is bounded while it runs: ``decompress(data, max_length)`` never
produces more than the message may still hold, so a deflate bomb ends with 1009
before memory grows.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from ..exceptions import NegotiationError, PayloadTooBig, ProtocolError
from ..frames import Frame, Opcode
from ..headers import ExtensionParameter
from .base import ClientExtensionFactory, Extension, ServerExtensionFactory

__all__ = [
    "ClientPerMessageDeflateFactory",
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
    "enable_client_permessage_deflate",
    "enable_server_permessage_deflate",
    "max_compressed_size",
]

NAME = "permessage-deflate"
_EMPTY_UNCOMPRESSED_BLOCK = b"\x00\x00\xff\xff"
_WINDOW_BITS = range(8, 16)
#: ``zlib.compressobj`` settings used unless given; ``memLevel`` is then
#: ``window bits - 7`` and the level ``DEFAULT_LEVEL`` (see the module docstring).
DEFAULT_COMPRESS_SETTINGS: dict[str, int] = {}
DEFAULT_LEVEL = 3
DEFAULT_THRESHOLD = 32


class PerMessageDeflate(Extension):
    """permessage-deflate, negotiated: compresses outgoing and inflates incoming messages.

    "remote" is the peer's compressor (our decompressor), "local" ours.
    """

    name = NAME
    rsv_bits = 0x40
    # One per compressed connection: no __dict__ (about 300 bytes less).
    __slots__ = (
        "_decoder",
        "_decoding",
        "_encoder",
        "_encoding",
        "_window",
        "_window_size",
        "compress_settings",
        "local_max_window_bits",
        "local_no_context_takeover",
        "remote_max_window_bits",
        "remote_no_context_takeover",
        "threshold",
    )

    def __init__(
        self,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_settings: dict[str, int] | None = None,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        settings = DEFAULT_COMPRESS_SETTINGS if compress_settings is None else compress_settings
        unknown = set(settings) - {"level", "memLevel", "strategy"}
        if unknown:
            raise ValueError(f"unknown compress_settings: {', '.join(sorted(unknown))}")
        # The defaults shared (never changed), a caller's dict copied.
        self.compress_settings = settings if compress_settings is None else dict(settings)
        self.threshold = threshold
        self._decoder: Any = None
        self._encoder: Any = None
        # With context takeover, the last bytes inflated (up to the peer's
        # window): what a new decoder needs after free_idle_memory().
        self._window = b""
        self._window_size = 0 if remote_no_context_takeover else 1 << remote_max_window_bits
        self._decoding = False  # inside a compressed message being received
        self._encoding: bool | None = None  # inside a message being sent: compressed?

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_max_window_bits={self.local_max_window_bits})"
        )

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        opcode = frame.opcode
        if opcode >= 8:
            # RFC 7692 section 6.1: "An endpoint MUST NOT set the "Per-Message
            # Compressed" bit of control frames".
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a control frame")
            return frame
        if opcode is Opcode.CONT:
            if frame.rsv1:
                # Section 6.1: the bit is set on the first frame of a message only.
                raise ProtocolError("RSV1 set on a continuation frame")
            if not self._decoding:
                return frame
        else:
            if not frame.rsv1:
                return frame
            self._decoding = True
        return Frame(opcode, self._inflate(frame.data, frame.fin, max_size), frame.fin)

    def decode_message(self, data: bytes, max_size: int | None) -> bytes:
        """Inflate a whole compressed message that came in one frame (FIN and RSV1 set).

        ``decode()`` for the common case, without its Frame objects: the
        protocol's fast path when this is the only extension, which the C
        frame parser calls for each such frame. ``max_size`` ``None`` or
        negative: no limit.
        """
        return self._inflate(data, True, None if max_size is None or max_size < 0 else max_size)

    def _inflate(self, data: bytes, fin: bool, max_size: int | None) -> bytes:
        decoder = self._decoder
        if decoder is None:
            if self._window:
                decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits, zdict=self._window)
            else:
                decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
            self._decoder = decoder
        if fin:
            # Section 7.2.2: append 0x00 0x00 0xff 0xff to the payload of the
            # message, then decompress (one call for both).
            data += _EMPTY_UNCOMPRESSED_BLOCK
        try:
            data = decoder.decompress(data, 0 if max_size is None else max_size + 1)
        except zlib.error as exc:
            raise ProtocolError(f"invalid DEFLATE data: {exc}") from None
        _check_inflated(decoder, len(data), max_size)
        size = self._window_size
        if size:
            # Section 7.2.2's window: the peer may refer to any of it later.
            window = self._window
            self._window = (
                data[-size:] if len(data) >= size else (window + data)[-size:] if window else data
            )
        if fin:
            self._decoding = False
            if self.remote_no_context_takeover:
                self._decoder = None
        return data

    def free_idle_memory(self) -> None:
        """Let the zlib state go between messages (see the module docstring)."""
        if not self._encoding:
            self._encoder = None
        if not self._decoding:
            self._decoder = None

    def encode(self, frame: Frame, *, compress: bool = True) -> Frame:
        opcode = frame.opcode
        if opcode >= 8:
            return frame
        if opcode is Opcode.CONT:
            if not self._encoding:
                if frame.fin:
                    self._encoding = None
                return frame
        else:
            # Small single-frame messages aren't worth compressing.
            if not compress or (frame.fin and len(frame.data) < self.threshold):
                self._encoding = None if frame.fin else False
                return frame
            self._encoding = True
        data = self._deflate(frame.data, frame.fin)
        return Frame(opcode, data, frame.fin, rsv1=opcode is not Opcode.CONT)

    def encode_message(self, data: bytes, compress: bool = True) -> bytes | None:
        """Compress a whole message sent as one frame; ``None``: send it as it is.

        ``encode()`` for the common case, without its Frame objects. The
        caller sets RSV1 on the frame when the result isn't ``None``.
        """
        if not compress or len(data) < self.threshold:
            return None
        return self._deflate(data, True)

    def _deflate(self, data: bytes, fin: bool) -> bytes:
        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = self._new_encoder()
        data = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            # Section 7.2.1: remove the 4 octets 0x00 0x00 0xff 0xff at the tail.
            if data.endswith(_EMPTY_UNCOMPRESSED_BLOCK):
                data = data[:-4]
            self._encoding = None
            if self.local_no_context_takeover:
                self._encoder = None
        return data

    def _new_encoder(self) -> Any:
        bits = self.local_max_window_bits
        settings = self.compress_settings
        strategy = settings.get("strategy", zlib.Z_DEFAULT_STRATEGY)
        if bits == 8:
            strategy, bits = zlib.Z_RLE, 9
        return zlib.compressobj(
            settings.get("level", DEFAULT_LEVEL),
            zlib.DEFLATED,
            -bits,
            settings.get("memLevel", max(1, min(9, bits - 7))),
            strategy,
        )


def max_compressed_size(size: int) -> int:
    """The most bytes a frame may take on the wire to carry ``size`` bytes compressed.

    ``max_size`` bounds the *decompressed* message, checked while inflating;
    the wire size of a compressed frame is bounded too, so that no more than
    this is buffered before inflating. DEFLATE can expand data that doesn't
    compress (already compressed files, random bytes): zlib's worst case,
    ``deflateBound()``, is fixed-Huffman blocks at 9 bits per literal, about
    13 % over the input plus a few bytes. This allows 1/8 + 1/64 (14 %),
    plus 64 bytes for the block headers and the flush that ends a frame.
    The C parser computes the same (``compressed_limit()``).
    """
    return size + (size >> 3) + (size >> 6) + 64


def _check_inflated(decoder: Any, size: int, max_size: int | None) -> None:
    """Raise PayloadTooBig if decompression stopped at its limit or went over ``max_size``."""
    if decoder.unconsumed_tail or (max_size is not None and size > max_size):
        raise PayloadTooBig(
            f"decompressed message exceeds max_size ({max_size} more bytes allowed)"
        )


def _parse_params(
    params: Sequence[ExtensionParameter], *, is_server: bool
) -> dict[str, int | bool | None]:
    """Validate parameters (section 7); raise NegotiationError on any problem.

    Returns a dict of the parameters present: no_context_takeover flags as
    True, window bits as int, a bare ``client_max_window_bits`` as None.
    """
    result: dict[str, int | bool | None] = {}
    for name, value in params:
        if name in result:
            # Section 7: "MUST decline [...] multiple extension parameters with the same name".
            raise NegotiationError("Sec-WebSocket-Extensions", f"duplicate parameter {name}")
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise NegotiationError("Sec-WebSocket-Extensions", f"{name} takes no value")
            result[name] = True
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            if value is None:
                # Only a client offer may carry a bare client_max_window_bits.
                if name == "server_max_window_bits" or not is_server:
                    raise NegotiationError("Sec-WebSocket-Extensions", f"{name} needs a value")
                result[name] = None
                continue
            if not (value.isdigit() and len(value) <= 2 and int(value) in _WINDOW_BITS):
                raise NegotiationError("Sec-WebSocket-Extensions", f"{name}={value}")
            result[name] = int(value)
        else:
            raise NegotiationError("Sec-WebSocket-Extensions", f"unknown parameter {name}")
    return result


def _check_bits(value: int | None, name: str) -> None:
    if value is not None and value not in _WINDOW_BITS:
        raise ValueError(f"{name} must be between 8 and 15")


class ClientPerMessageDeflateFactory(ClientExtensionFactory):
    """The client's offer of permessage-deflate.

    Args:
        server_no_context_takeover: ask the server not to keep its compression
            context between messages.
        client_no_context_takeover: promise not to keep ours (saves memory).
        server_max_window_bits: ask the server for a smaller window (8-15).
        client_max_window_bits: ``True`` offers the bare parameter (the server
            may then pick our window), an int offers that limit, ``False``
            offers nothing.
        compress_settings: ``zlib.compressobj`` keywords ``level``, ``memLevel``,
            ``strategy`` (default: level 3, memLevel = window bits - 7).
        threshold: messages shorter than this many bytes are sent uncompressed.
    """

    name = NAME

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool = True,
        compress_settings: dict[str, int] | None = None,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        _check_bits(server_max_window_bits, "server_max_window_bits")
        if not isinstance(client_max_window_bits, bool):
            _check_bits(client_max_window_bits, "client_max_window_bits")
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_settings = compress_settings
        self.threshold = threshold

    def get_request_params(self) -> list[ExtensionParameter]:
        params: list[ExtensionParameter] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits is not False:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        if any(isinstance(extension, PerMessageDeflate) for extension in accepted):
            raise NegotiationError("Sec-WebSocket-Extensions", "permessage-deflate twice")
        found = _parse_params(params, is_server=False)
        # Section 7.1.1.1: a server accepts server_no_context_takeover by
        # including it; one that drops it didn't accept our offer.
        if self.server_no_context_takeover and "server_no_context_takeover" not in found:
            raise NegotiationError(
                "Sec-WebSocket-Extensions", "server_no_context_takeover was required"
            )
        server_bits = found.get("server_max_window_bits")
        # Section 7.1.2.1: the server must answer with a value no larger.
        if self.server_max_window_bits is not None and (
            server_bits is None or int(server_bits) > self.server_max_window_bits
        ):
            raise NegotiationError(
                "Sec-WebSocket-Extensions",
                f"server_max_window_bits must be <= {self.server_max_window_bits}",
            )
        client_bits = found.get("client_max_window_bits")
        if client_bits is not None:
            # Section 7.1.2.2: only allowed if offered, and no larger than offered.
            if self.client_max_window_bits is False:
                raise NegotiationError(
                    "Sec-WebSocket-Extensions", "client_max_window_bits was not offered"
                )
            if self.client_max_window_bits is not True and int(client_bits) > int(
                self.client_max_window_bits
            ):
                raise NegotiationError(
                    "Sec-WebSocket-Extensions",
                    f"client_max_window_bits must be <= {self.client_max_window_bits}",
                )
        elif self.client_max_window_bits not in (True, False):
            client_bits = int(self.client_max_window_bits)
        return PerMessageDeflate(
            remote_no_context_takeover="server_no_context_takeover" in found,
            local_no_context_takeover=self.client_no_context_takeover
            or "client_no_context_takeover" in found,
            remote_max_window_bits=15 if server_bits is None else int(server_bits),
            local_max_window_bits=15 if client_bits is None else int(client_bits),
            compress_settings=self.compress_settings,
            threshold=self.threshold,
        )


class ServerPerMessageDeflateFactory(ServerExtensionFactory):
    """The server's side of permessage-deflate negotiation.

    Args:
        server_no_context_takeover: don't keep our compression context
            between messages (saves memory, costs ratio).
        client_no_context_takeover: ask the client not to keep its context.
        server_max_window_bits: our compression window (default 11 = 2 KiB);
            a smaller value offered by the client wins.
        client_max_window_bits: the client's window, when the client lets us
            choose it (default 10).
        require_client_max_window_bits: decline offers that don't let us
            limit the client's window.
        compress_settings: ``zlib.compressobj`` keywords ``level``, ``memLevel``,
            ``strategy`` (default: level 3, memLevel = window bits - 7).
        threshold: messages shorter than this many bytes are sent uncompressed.
    """

    name = NAME

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = 11,
        client_max_window_bits: int | None = 10,
        require_client_max_window_bits: bool = False,
        compress_settings: dict[str, int] | None = None,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        _check_bits(server_max_window_bits, "server_max_window_bits")
        _check_bits(client_max_window_bits, "client_max_window_bits")
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.require_client_max_window_bits = require_client_max_window_bits
        self.compress_settings = compress_settings
        self.threshold = threshold

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        if any(isinstance(extension, PerMessageDeflate) for extension in accepted):
            raise NegotiationError("Sec-WebSocket-Extensions", "permessage-deflate twice")
        found = _parse_params(params, is_server=True)
        answer: list[ExtensionParameter] = []
        # Section 7.1.1.1: a server that accepts an offer with
        # server_no_context_takeover MUST include it in the answer.
        server_nct = self.server_no_context_takeover or "server_no_context_takeover" in found
        if server_nct:
            answer.append(("server_no_context_takeover", None))
        client_nct = self.client_no_context_takeover or "client_no_context_takeover" in found
        if client_nct:
            answer.append(("client_no_context_takeover", None))
        server_bits = self.server_max_window_bits
        offered_server_bits = found.get("server_max_window_bits")
        if offered_server_bits is not None:
            # Section 7.1.2.1: answer with a value no larger than offered.
            server_bits = min(int(offered_server_bits), server_bits or 15)
        if server_bits is not None:
            answer.append(("server_max_window_bits", str(server_bits)))
        client_bits: int | None = None
        if "client_max_window_bits" in found:
            offered = found["client_max_window_bits"]
            client_bits = self.client_max_window_bits
            if offered is not None:
                client_bits = min(int(offered), client_bits or 15)
            if client_bits is not None:
                answer.append(("client_max_window_bits", str(client_bits)))
        elif self.require_client_max_window_bits:
            raise NegotiationError("Sec-WebSocket-Extensions", "client_max_window_bits required")
        extension = PerMessageDeflate(
            remote_no_context_takeover=client_nct,
            local_no_context_takeover=server_nct,
            remote_max_window_bits=15 if client_bits is None else client_bits,
            local_max_window_bits=15 if server_bits is None else server_bits,
            compress_settings=self.compress_settings,
            threshold=self.threshold,
        )
        return answer, extension


def enable_client_permessage_deflate(
    extensions: Sequence[ClientExtensionFactory] | None,
) -> list[ClientExtensionFactory]:
    """Add the default permessage-deflate offer unless one is configured."""
    result = list(extensions or ())
    if not any(factory.name == NAME for factory in result):
        result.append(ClientPerMessageDeflateFactory())
    return result


def enable_server_permessage_deflate(
    extensions: Sequence[ServerExtensionFactory] | None,
) -> list[ServerExtensionFactory]:
    """Add the default permessage-deflate support unless one is configured."""
    result = list(extensions or ())
    if not any(factory.name == NAME for factory in result):
        result.append(ServerPerMessageDeflateFactory())
    return result

"""Differential tests of ``CoreBase``: the C twin (``_corebase.c``, with the C
leaves) against the pure-Python reference (``ws13/corebase.py``, with
``ws13/utils.py``), in one process.

Both copies of ws13 (``tests/twins.py``) get the same random byte streams,
split at random points: whole and fragmented messages, control frames between
fragments, permessage-deflate, large frames, and bad input of every kind
RFC 6455 section 5 defines (reserved bits, opcodes, masking, lengths, close
payloads, UTF-8, sizes). What comes out must be equal: events, the bytes to
write, the state, the close codes and frames, the exception that failed the
connection. Sending is compared the same way: every ``send_message()`` in a
random sequence returns the same buffers or raises the same error.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import twins
from ws13.utils import apply_mask

C = twins.load(speedups=True)
PY = twins.load(speedups=False)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_SIZE = 40_000
KEYS = (b"\x11\x22\x33\x44", b"\xa0\xb1\xc2\xd3", b"\x00\x00\x00\x00")

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(
    twin: twins.Twin,
    server: bool,
    deflate: bool,
    max_size: int | None = MAX_SIZE,
    stream: bool = False,
) -> Any:
    """An OPEN protocol of one copy, with deterministic masking keys."""
    module = twin.protocol
    side = module.Side.SERVER if server else module.Side.CLIENT
    protocol = module.Protocol(side, state=module.State.OPEN, max_size=max_size)
    protocol.stream_fragments = stream
    protocol.stream_large_frames = stream
    if deflate:
        extension = twin.permessage_deflate.PerMessageDeflate(False, False, 15, 15, threshold=16)
        protocol.set_extensions([extension])
    if not server:
        keys = itertools.cycle(KEYS)
        protocol._mask_next = lambda: next(keys)
    return protocol


# -- what a peer sends --------------------------------------------------------


def encode(first: int, payload: bytes, mask: bytes | None, length: int | None = None) -> bytes:
    """A frame: header (with ``length`` in place of the real one, if given) and payload."""
    n = len(payload) if length is None else length
    second = 0x80 if mask is not None else 0
    if n < 126:
        header = bytes([first, second | n])
    elif n < 65536:
        header = bytes([first, second | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([first, second | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


texts = st.text(max_size=60)
payloads = st.one_of(
    st.binary(max_size=60),
    texts.map(lambda text: text.encode()),
    # Lengths on 16 and 64 bits, and large frames (ws13.largeframes).
    st.tuples(st.integers(0, 255), st.sampled_from([126, 200, 4097, 17_000, 70_000])).map(
        lambda pair: bytes([pair[0]]) * pair[1]
    ),
)
control_payloads = st.binary(max_size=125)


@st.composite
def close_payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["empty", "good", "bad-code", "one-byte", "bad-utf8"]))
    if kind == "empty":
        return b""
    if kind == "one-byte":
        return b"\x03"
    code = draw(
        st.sampled_from([1000, 1001, 1011, 3000, 4999])
        if kind != "bad-code"
        else st.sampled_from([0, 999, 1004, 1005, 1006, 1016, 2000, 5000])
    )
    reason = b"\xff\xfe" if kind == "bad-utf8" else draw(texts).encode()[:100]
    return code.to_bytes(2, "big") + reason


@st.composite
def peer_frames(draw: st.DrawFn, deflate: bool) -> list[tuple[int, bytes, int | None]]:
    """A peer's frames as (first byte, payload, fake length or None), in order."""
    compressor = zlib.compressobj(wbits=-15)
    frames: list[tuple[int, bytes, int | None]] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(
            st.sampled_from(
                ["text", "binary", "fragmented", "ping", "pong", "close", "compressed", "bad"]
            )
        )
        if kind in ("text", "binary"):
            data = draw(texts).encode() if kind == "text" else draw(payloads)
            frames.append((0x80 | (OP_TEXT if kind == "text" else OP_BINARY), data, None))
        elif kind == "compressed" and deflate:
            data = draw(payloads)
            if draw(st.booleans()):
                body = (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            else:
                body = draw(st.binary(min_size=1, max_size=30))  # not DEFLATE data
            frames.append((0xC0 | draw(st.sampled_from([OP_TEXT, OP_BINARY])), body, None))
        elif kind == "fragmented":
            opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
            data = draw(texts).encode() if opcode == OP_TEXT else draw(payloads)
            cuts = sorted(draw(st.lists(st.integers(0, len(data)), min_size=1, max_size=3)))
            pieces = [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]
            for index, piece in enumerate(pieces):
                fin = 0x80 if index == len(pieces) - 1 else 0
                frames.append((fin | (opcode if index == 0 else OP_CONT), piece, None))
                if not fin and draw(st.booleans()):
                    # Section 5.4: control frames MAY be injected between fragments.
                    frames.append((0x80 | OP_PING, draw(control_payloads), None))
        elif kind in ("ping", "pong"):
            frames.append(
                (0x80 | (OP_PING if kind == "ping" else OP_PONG), draw(control_payloads), None)
            )
        elif kind == "close":
            frames.append((0x80 | OP_CLOSE, draw(close_payloads()), None))
        else:
            frames.append(draw(bad_frames()))
    return frames


@st.composite
def bad_frames(draw: st.DrawFn) -> tuple[int, bytes, int | None]:
    kind = draw(
        st.sampled_from(
            [
                "rsv",
                "opcode",
                "long-control",
                "fragmented-control",
                "continuation",
                "too-big",
                "bad-utf8",
                "huge-length",
            ]
        )
    )
    if kind == "rsv":
        return (0x80 | draw(st.sampled_from([0x40, 0x20, 0x10])) | OP_BINARY, b"x", None)
    if kind == "opcode":
        return (0x80 | draw(st.sampled_from([3, 4, 7, 0xB, 0xF])), b"", None)
    if kind == "long-control":
        return (0x80 | OP_PING, bytes(126), None)
    if kind == "fragmented-control":
        return (OP_PING, b"", None)
    if kind == "continuation":
        return (0x80 | OP_CONT, b"lost", None)
    if kind == "too-big":
        return (0x80 | OP_BINARY, bytes(MAX_SIZE + 1), None)
    if kind == "bad-utf8":
        return (0x80 | OP_TEXT, draw(st.sampled_from([b"\xff", b"a\xc3", b"\xed\xa0\x80"])), None)
    return (0x82, b"", 2**63)  # a length with the most significant bit set


def wire(frames: list[tuple[int, bytes, int | None]], masked: bool, bad_mask: bool) -> bytes:
    keys = itertools.cycle(KEYS)
    out = []
    for index, (first, payload, length) in enumerate(frames):
        mask = next(keys) if masked else None
        if bad_mask and index == len(frames) - 1:
            mask = None if masked else KEYS[0]  # section 5.1: the wrong masking
        out.append(encode(first, payload, mask, length))
    return b"".join(out)


# -- comparing the two copies ---------------------------------------------------


def event(item: Any) -> Any:
    """An event as a value both copies can be compared by."""
    if isinstance(item, (str, bytes)):
        return item
    if type(item).__name__ == "Fragment":
        return ("Fragment", item.data, item.fin)
    return (type(item).__name__, int(item.opcode), item.data, item.fin)


def error(exc: BaseException | None) -> Any:
    return None if exc is None else (type(exc).__name__, str(exc))


def close(frame: Any) -> Any:
    return None if frame is None else (int(frame.code), frame.reason)


def outcome(protocol: Any) -> dict[str, Any]:
    return {
        "state": int(protocol.state),
        "close_code": protocol.close_code,
        "close_reason": protocol.close_reason,
        "close_rcvd": close(protocol.close_rcvd),
        "close_sent": close(protocol.close_sent),
        "close_rcvd_then_sent": protocol.close_rcvd_then_sent,
        "parser_exc": error(protocol.parser_exc),
        "eof_sent": protocol.eof_sent,
        "counters": (
            protocol.bytes_received,
            protocol.bytes_sent,
            protocol.messages_received,
            protocol.messages_sent,
        ),
    }


def feed(protocol: Any, chunks: list[bytes]) -> dict[str, Any]:
    """Feed ``chunks`` one ``receive()`` each, then EOF: everything that came out."""
    events: list[Any] = []
    writes: list[bytes] = []
    for chunk in chunks:
        new_events, new_writes = protocol.receive(chunk)
        events += [event(item) for item in new_events]
        writes += new_writes
    during = outcome(protocol)
    protocol.receive_eof()
    events += [event(item) for item in protocol.events_received()]
    writes += protocol.data_to_send()
    # The counters: every byte fed and handed out, every message.
    assert protocol.bytes_received == sum(map(len, chunks))
    assert protocol.bytes_sent == sum(len(w) for w in writes if isinstance(w, bytes))
    assert protocol.messages_received == sum(
        isinstance(e, (str, bytes)) or (e[0] == "Fragment" and e[2]) for e in events
    )
    return {"events": events, "writes": writes, "during": during, "after": outcome(protocol)}


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)]) if b > a] or [b""]


# -- receiving -------------------------------------------------------------------


class TestReceiveSection5:
    @SETTINGS
    @given(st.data(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
    def test_same_events_bytes_and_close(
        self, data: st.DataObject, server: bool, deflate: bool, bad_mask: bool, stream: bool
    ) -> None:
        frames = data.draw(peer_frames(deflate))
        stream = wire(frames, masked=server, bad_mask=bad_mask and data.draw(st.booleans()))
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
        chunks = split(stream, cuts)
        c_result = feed(make(C, server, deflate, stream=stream), chunks)
        py_result = feed(make(PY, server, deflate, stream=stream), chunks)
        assert c_result == py_result

    @SETTINGS
    @given(st.binary(max_size=300), st.booleans(), st.lists(st.integers(0, 300), max_size=6))
    def test_same_outcome_for_random_bytes(
        self, stream: bytes, server: bool, cuts: list[int]
    ) -> None:
        chunks = split(stream, cuts)
        assert feed(make(C, server, True), chunks) == feed(make(PY, server, True), chunks)

    @pytest.mark.parametrize("server", [True, False])
    def test_a_read_of_many_messages(self, server: bool) -> None:
        # The C parser's loop consumes runs of whole messages in one call.
        frames = [(0x81, f"message {i}".encode(), None) for i in range(500)]
        chunks = split(wire(frames, masked=server, bad_mask=False), [1000, 5000])
        c_result = feed(make(C, server, False), chunks)
        assert c_result == feed(make(PY, server, False), chunks)
        assert c_result["events"] == [f"message {i}" for i in range(500)]

    def test_no_limit(self) -> None:
        frames = [(0x82, bytes(MAX_SIZE + 1), None)]
        chunks = [wire(frames, masked=True, bad_mask=False)]
        c_result = feed(make(C, True, False, max_size=None), chunks)
        assert c_result == feed(make(PY, True, False, max_size=None), chunks)
        assert c_result["events"] == [bytes(MAX_SIZE + 1)]

    @pytest.mark.parametrize("size", [MAX_SIZE - 10, MAX_SIZE, MAX_SIZE + 1])
    @pytest.mark.parametrize("reads", [1, 7])
    def test_incompressible_message_near_max_size(self, size: int, reads: int) -> None:
        # RFC 7692: random bytes grow when deflated, past max_size on the wire;
        # max_size bounds the inflated message, in one read or in several.
        data = random.Random(size).randbytes(size)
        compressor = zlib.compressobj(wbits=-15)
        body = (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        assert len(body) > MAX_SIZE
        stream = wire([(0xC2, body, None)], masked=True, bad_mask=False)
        chunks = split(stream, [len(stream) * k // reads for k in range(1, reads)])
        c_result = feed(make(C, True, True), chunks)
        assert c_result == feed(make(PY, True, True), chunks)
        assert c_result["events"] == ([data] if size <= MAX_SIZE else [])

    @pytest.mark.parametrize("extra", [0, 1])
    def test_compressed_frame_at_the_wire_bound(self, extra: int) -> None:
        # Bytes that aren't DEFLATE data: at the bound they are inflated (and
        # fail with 1002), one byte over it they fail with 1009 unread.
        limit = PY.permessage_deflate.max_compressed_size(MAX_SIZE)
        stream = wire([(0xC2, b"\xff" * (limit + extra), None)], masked=True, bad_mask=False)
        c_result = feed(make(C, True, True), [stream])
        assert c_result == feed(make(PY, True, True), [stream])
        assert c_result["during"]["close_sent"][0] == (1009 if extra else 1002)


# -- sending ---------------------------------------------------------------------

messages = st.one_of(
    texts,
    payloads,
    payloads.map(bytearray),
    payloads.map(memoryview),
    st.sampled_from([42, None, ["list"]]),
)


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    ops: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["send", "send", "send", "ping", "fragment", "close"]))
        if kind == "send":
            text = draw(st.sampled_from([None, True, False]))
            ops.append(("send", (draw(messages), text, draw(st.booleans()))))
        elif kind == "ping":
            ops.append(("ping", draw(control_payloads)))
        else:
            ops.append((kind, None))
    return ops


def run(protocol: Any, ops: list[tuple[str, Any]], server: bool) -> list[Any]:
    results: list[Any] = []
    keys = itertools.cycle(KEYS)
    for kind, arg in ops:
        try:
            if kind == "send":
                message, text, compress = arg
                results.append(protocol.send_message(message, text=text, compress=compress))
            elif kind == "ping":
                # A Ping received queues a Pong, which goes out before the next message.
                mask = next(keys) if server else None
                protocol.receive_data(encode(0x80 | OP_PING, arg, mask))
                results.append([event(item) for item in protocol.events_received()])
            elif kind == "fragment":
                protocol.send_binary(b"first", fin=False)
                results.append("fragment started")
            else:
                protocol.send_close(1000, "bye")
                results.append("closing")
        except Exception as exc:
            results.append(error(exc))
    results.append(protocol.data_to_send())
    results.append(outcome(protocol))
    handed_out = [b for r in results if isinstance(r, list) for b in r if isinstance(b, bytes)]
    assert protocol.bytes_sent == sum(map(len, handed_out))
    return results


class TestSendMessageSection5:
    @SETTINGS
    @given(operations(), st.booleans(), st.booleans())
    def test_same_buffers_or_errors(
        self, ops: list[tuple[str, Any]], server: bool, deflate: bool
    ) -> None:
        c_results = run(make(C, server, deflate), ops, server)
        assert c_results == run(make(PY, server, deflate), ops, server)

    @pytest.mark.parametrize(
        "call",
        [
            lambda p: p.send_message(),
            lambda p: p.send_message("a", "b"),
            lambda p: p.send_message("a", nope=1),
        ],
    )
    def test_bad_arguments(self, call: Callable[[Any], Any]) -> None:
        for twin in (C, PY):
            with pytest.raises(TypeError):
                call(make(twin, True, False))


class TestBroadcastFrame:
    """``writer.broadcast_frame()``: the bytes a server's ``send_message()`` gives,
    made once without a connection, the same in both twins."""

    @SETTINGS
    @given(
        st.one_of(
            texts,
            payloads,
            payloads.map(bytearray),
            payloads.map(memoryview),
            st.binary(min_size=4090, max_size=70_000),
        ),
        st.sampled_from([None, True, False]),
    )
    def test_same_as_a_server_connection(self, message: Any, text: bool | None) -> None:
        c_buffers = C.writer.broadcast_frame(message, text=text)
        assert c_buffers == PY.writer.broadcast_frame(message, text=text)
        for twin in (C, PY):
            assert c_buffers == make(twin, True, False).send_message(message, text=text)
            # With permessage-deflate on, the uncompressed frame is what
            # compress=False sends: RFC 7692 section 6 allows it.
            deflated = make(twin, True, True)
            assert c_buffers == deflated.send_message(message, text=text, compress=False)

    @SETTINGS
    @given(
        st.lists(st.one_of(texts, payloads, st.binary(min_size=4090, max_size=9000)), max_size=4)
    )
    def test_compressed_without_context_takeover(self, messages: list[Any]) -> None:
        for twin in (C, PY):
            pmd = twin.permessage_deflate.PerMessageDeflate
            deflate = pmd(False, True, 15, 11, {"level": 5}, threshold=16)
            protocol = make(twin, True, False)
            protocol.set_extensions([deflate])
            # Whatever the connection sent before: no context is kept.
            for message in messages:
                sent = protocol.send_message(message)
                assert sent == twin.writer.broadcast_frame(message, deflate=deflate)
                assert sent == C.writer.broadcast_frame(message, deflate=deflate)

    def test_bad_arguments(self) -> None:
        for twin in (C, PY):
            with pytest.raises(TypeError, match="not int"):
                twin.writer.broadcast_frame(42)  # type: ignore[arg-type]
            keeps_context = twin.permessage_deflate.PerMessageDeflate(False, False, 15, 15)
            with pytest.raises(ValueError, match="context takeover"):
                twin.writer.broadcast_frame("x", deflate=keeps_context)


def test_copy_max_is_the_same() -> None:
    from ws13 import _speedups, writer

    assert _speedups.COPY_MAX == writer.COPY_MAX


def test_the_copies_are_the_twins() -> None:
    assert C.accel.CoreBase.__module__ == "ws13._speedups"
    assert PY.accel.CoreBase.__module__ == "ws13.corebase"
    assert C.protocol.Protocol.__mro__[-2] is C.accel.CoreBase
    assert PY.protocol.Protocol.__mro__[-2] is PY.accel.CoreBase

"""Tests for ws13.largeframes: large frames received over many reads, copied once.

Bytes in, bytes out, through ``Protocol``, on both twins of ``PayloadBuffer``.
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_protocol import (
    assert_failed,
    client,
    cut_points,
    encode_as_client,
    frame,
    masked,
    receive,
    sent_frames,
    server,
)
from ws13 import protocol as protocol_module
from ws13.exceptions import InvalidState, PayloadTooBig
from ws13.extensions.permessage_deflate import PerMessageDeflate
from ws13.frames import Frame, Opcode
from ws13.protocol import (
    CLIENT,
    LARGE_FRAME,
    SERVER,
    Event,
    Protocol,
    Side,
)


class TestSection5_2LargeFrames:
    """Frames of LARGE_FRAME bytes or more that arrive over several reads are
    unmasked read by read into their own buffer (``PayloadBuffer``)."""

    @pytest.mark.parametrize("side", [SERVER, CLIENT])
    @pytest.mark.parametrize("opcode", [0x1, 0x2])
    def test_in_reads_of_every_alignment(self, side: Side, opcode: int) -> None:
        # Reads of odd sizes start at every offset modulo 4 of the payload,
        # and the last one carries the start of the next frame.
        payload = (b"0123456789abcdef" * 4096)[: LARGE_FRAME * 3 + 3]
        wrap = masked if side is SERVER else frame
        wire = wrap(opcode, payload) + wrap(0x2, b"next")
        protocol = Protocol(side, max_size=None)
        events: list[Event] = []
        pos, sizes = 0, itertools.cycle([1, 2, 3, 4093, 5, 7, 11_111])
        while pos < len(wire):
            size = next(sizes)
            events += receive(protocol, wire[pos : pos + size])
            pos += size
        assert events == [payload.decode() if opcode == 0x1 else payload, b"next"]
        assert protocol.data_to_send() == []
        assert protocol.parser_exc is None

    def test_reads_straight_after_the_header(self) -> None:
        # The first read ends with the header: nothing of the payload yet.
        payload = os.urandom(LARGE_FRAME)
        wire = masked(0x2, payload)
        head = len(wire) - len(payload)
        protocol = server()
        assert receive(protocol, wire[:head]) == []
        assert receive(protocol, wire[head:]) == [payload]

    @pytest.mark.parametrize("split", range(1, 4))
    def test_character_split_between_reads(self, split: int) -> None:
        text = "a" * (LARGE_FRAME - 1) + "🌍" + "b" * 100
        wire = masked(0x1, text.encode())
        cut = len(wire) - len(text.encode()) + LARGE_FRAME - 1 + split  # inside "🌍"
        protocol = server()
        assert receive(protocol, wire[:cut]) == []
        assert receive(protocol, wire[cut:]) == [text]

    def test_invalid_utf8_fails_before_the_frame_ends(self) -> None:
        # Section 8.1 (and Autobahn 6.4.*): fail as soon as the bad byte arrives.
        payload = b"a" * LARGE_FRAME + b"\xff" + b"b" * LARGE_FRAME
        wire = masked(0x1, payload)
        bad = len(wire) - len(payload) + LARGE_FRAME
        protocol = server()
        assert receive(protocol, wire[:bad]) == []
        assert protocol.data_to_send() == []
        assert receive(protocol, wire[bad : bad + 1]) == []
        assert_failed(protocol, 1007)
        assert receive(protocol, wire[bad + 1 :]) == []
        assert protocol.data_to_send() == []

    def test_fragments_of_a_text_message(self) -> None:
        # Large fragments, with a character split across the two frames and
        # a Ping between them.
        encoded = ("x" * LARGE_FRAME + "€" + "y" * LARGE_FRAME).encode()
        first, second = encoded[: LARGE_FRAME + 1], encoded[LARGE_FRAME + 1 :]
        wire = masked(0x1, first, fin=False) + masked(0x9, b"p") + masked(0x0, second)
        protocol = server()
        events: list[Event] = []
        for pos in range(0, len(wire), 1000):
            events += receive(protocol, wire[pos : pos + 1000])
        assert events == [Frame(Opcode.PING, b"p"), encoded.decode()]
        assert sent_frames(protocol) == [Frame(Opcode.PONG, b"p")]

    def test_invalid_utf8_across_fragments(self) -> None:
        # The first fragment ends with a lead byte the second can't continue.
        first = b"x" * LARGE_FRAME + b"\xe2\x82"
        second = b"(" + b"y" * LARGE_FRAME
        protocol = server()
        assert receive(protocol, masked(0x1, first, fin=False)) == []
        wire = masked(0x0, second)
        head = len(wire) - len(second)
        assert receive(protocol, wire[:head]) == []
        assert receive(protocol, wire[head : head + 1]) == []
        assert_failed(protocol, 1007)

    def test_binary_is_not_checked(self) -> None:
        payload = b"\xff" * (LARGE_FRAME + 1)
        wire = masked(0x2, payload)
        protocol = server()
        assert receive(protocol, wire[:100]) == []
        assert receive(protocol, wire[100:]) == [payload]

    def test_compressed(self) -> None:
        # permessage-deflate (RFC 7692): the compressed payload is gathered,
        # then inflated whole.
        payload = os.urandom(3 * LARGE_FRAME)
        sender, receiver = client(max_size=None), server(max_size=None)
        sender.set_extensions([PerMessageDeflate(False, False, 15, 15, threshold=0)])
        receiver.set_extensions([PerMessageDeflate(False, False, 15, 15, threshold=0)])
        sender.send_binary(payload)
        wire = b"".join(sender.data_to_send())
        assert wire[0] == 0xC2  # FIN, RSV1, binary
        events: list[Event] = []
        for pos in range(0, len(wire), 7000):
            events += receive(receiver, wire[pos : pos + 7000])
        assert events == [payload]

    def test_over_max_size_fails_on_the_header(self) -> None:
        protocol = server(max_size=LARGE_FRAME)
        assert receive(protocol, masked(0x2, bytes(LARGE_FRAME + 1))[:8]) == []
        assert_failed(protocol, 1009, PayloadTooBig)

    def test_eof_in_the_middle(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x2, bytes(LARGE_FRAME))[:1000]) == []
        protocol.receive_eof()
        assert isinstance(protocol.parser_exc, EOFError)
        assert protocol.events_received() == []

    def test_over_large_frame_max_is_buffered(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A frame longer than LARGE_FRAME_MAX (possible with max_size=None)
        # doesn't reserve its size on the header alone: it is buffered.
        monkeypatch.setattr(protocol_module, "LARGE_FRAME_MAX", LARGE_FRAME)
        payload = os.urandom(LARGE_FRAME + 1)
        wire = masked(0x2, payload)
        protocol = server()
        assert receive(protocol, wire[:100]) == []
        assert protocol._large is None
        assert receive(protocol, wire[100:]) == [payload]

    def test_traced_frames_are_buffered(self) -> None:
        records: list[bytes] = []
        protocol = server()
        protocol.tracer = lambda out, header, payload: records.append(header + payload)
        payload = os.urandom(LARGE_FRAME)
        wire = masked(0x2, payload)
        assert receive(protocol, wire[:100]) == []
        assert receive(protocol, wire[100:]) == [payload]
        assert records == [wire[: len(wire) - len(payload)] + payload]

    @pytest.mark.parametrize("side", [SERVER, CLIENT])
    def test_read_into_the_payload(self, side: Side) -> None:
        # What an I/O layer with a BufferedProtocol does: after the header,
        # read straight into the buffer, never past the frame's end.
        payload = os.urandom(5 * LARGE_FRAME + 3)
        wrap = masked if side is SERVER else frame
        wire = wrap(0x2, payload)
        protocol = Protocol(side, max_size=None)
        assert protocol.receive_large_buffer() is None
        assert receive(protocol, wire[:1000]) == []
        pos = 1000
        for size in itertools.cycle([1, 4093, 2, LARGE_FRAME, 3]):
            buffer = protocol.receive_large_buffer()
            if buffer is None:
                break
            assert len(buffer) <= len(wire) - pos
            piece = wire[pos : pos + min(size, len(buffer))]
            buffer[: len(piece)] = piece
            buffer.release()
            protocol.large_buffer_updated(len(piece))
            pos += len(piece)
        assert pos == len(wire)
        assert protocol.events_received() == [payload]
        assert receive(protocol, wrap(0x1, b"next")) == ["next"]

    def test_invalid_utf8_read_into_the_payload(self) -> None:
        payload = b"a" * (2 * LARGE_FRAME) + b"\xff" + b"b" * LARGE_FRAME
        wire = masked(0x1, payload)
        protocol = server()
        assert receive(protocol, wire[:100]) == []
        buffer = protocol.receive_large_buffer()
        assert buffer is not None
        end = len(wire) - LARGE_FRAME
        buffer[: end - 100] = wire[100:end]
        buffer.release()
        protocol.large_buffer_updated(end - 100)
        assert_failed(protocol, 1007)
        assert protocol.receive_large_buffer() is None

    def test_buffer_updated_without_a_large_frame(self) -> None:
        with pytest.raises(InvalidState, match="no large frame is being received"):
            server().large_buffer_updated(1)

    @settings(deadline=None, max_examples=30)
    @given(
        st.lists(
            st.tuples(st.booleans(), st.integers(LARGE_FRAME - 10, 3 * LARGE_FRAME), st.booleans()),
            min_size=1,
            max_size=3,
        ),
        st.data(),
    )
    def test_chunking_gives_the_same_events(
        self, sizes: list[tuple[bool, int, bool]], data: st.DataObject
    ) -> None:
        # Frames on both sides of LARGE_FRAME, some of them fragments (cut in
        # the middle of a character, with a Ping between them).
        items: list[tuple[str | bytes, list[float], bool]] = [
            (("é" * (size // 2)) if text else os.urandom(size), [0.5] if split else [], True)
            for text, size, split in sizes
        ]
        wire, expected, _ = encode_as_client(items)
        cuts = data.draw(cut_points(len(wire)))
        receiver = server(max_size=None)
        events = []
        for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            events += receive(receiver, wire[start:end])
        assert events == expected
        assert receiver.parser_exc is None

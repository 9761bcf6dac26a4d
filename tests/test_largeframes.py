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
from ws13.frames import Fragment, Frame, Opcode
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
        assert pieces(receiver, wire, cuts) == expected
        assert receiver.parser_exc is None


def streaming(side: Side = SERVER, **kwargs: object) -> Protocol:
    protocol = server(**kwargs) if side is SERVER else client(**kwargs)  # type: ignore[arg-type]
    protocol.stream_fragments = True
    protocol.stream_large_frames = True
    return protocol


def pieces(protocol: Protocol, wire: bytes, reads: list[int]) -> list[Event]:
    """Feed ``wire`` cut at ``reads``; the events of each read, in order."""
    events: list[Event] = []
    for start, end in itertools.pairwise([0, *reads, len(wire)]):
        events += receive(protocol, wire[start:end])
    return events


class TestSection5_4StreamedLargeFrames:
    """``stream_large_frames``: a large frame is handed out read by read, as
    if the peer had fragmented it (section 5.4 lets an intermediary do so)."""

    @pytest.mark.parametrize("side", [SERVER, CLIENT])
    def test_binary_read_by_read(self, side: Side) -> None:
        payload = os.urandom(3 * LARGE_FRAME)
        wire = masked(0x2, payload) if side is SERVER else frame(0x2, payload)
        head = len(wire) - len(payload)
        events = pieces(streaming(side), wire, [100, 20_000, 20_001])
        assert events == [
            Fragment(payload[: 100 - head], False),
            Fragment(payload[100 - head : 20_000 - head], False),
            Fragment(payload[20_000 - head : 20_001 - head], False),
            Fragment(payload[20_001 - head :], True),
        ]

    def test_text_with_characters_cut_between_reads(self) -> None:
        text = "é€😀" * LARGE_FRAME
        wire = masked(0x1, text.encode())
        events = pieces(streaming(), wire, list(range(1, len(wire), 4099)))
        assert all(type(event) is Fragment for event in events)
        assert "".join(event.data for event in events) == text  # type: ignore[union-attr, misc]
        assert [event.fin for event in events].count(True) == 1  # type: ignore[union-attr]

    def test_a_frame_in_one_read_is_one_message(self) -> None:
        payload = os.urandom(2 * LARGE_FRAME)
        assert pieces(streaming(), masked(0x2, payload), []) == [payload]

    def test_under_large_frame_is_whole(self) -> None:
        payload = os.urandom(LARGE_FRAME - 1)
        assert pieces(streaming(), masked(0x2, payload), [100]) == [payload]

    def test_needs_stream_fragments(self) -> None:
        protocol = streaming()
        protocol.stream_fragments = False
        payload = os.urandom(LARGE_FRAME)
        assert pieces(protocol, masked(0x2, payload), [100]) == [payload]

    def test_the_fragments_of_a_message(self) -> None:
        # A large non-final frame then a large final one: one message, pieces
        # of each, a single fin.
        first, last = os.urandom(LARGE_FRAME), os.urandom(LARGE_FRAME)
        wire = masked(0x2, first, fin=False) + masked(0x0, last)
        events = pieces(streaming(), wire, [5000, len(wire) - 5000])
        assert b"".join(event.data for event in events) == first + last  # type: ignore[union-attr, misc]
        assert [event.fin for event in events] == [False, False, False, True]  # type: ignore[union-attr]

    def test_messages_after_the_frame_in_the_same_read(self) -> None:
        payload = os.urandom(LARGE_FRAME)
        wire = masked(0x2, payload) + masked(0x1, b"next") + masked(0x9, b"ping")
        protocol = streaming()
        events = pieces(protocol, wire, [1000])
        assert events[:2] == [Fragment(payload[: 1000 - 8], False), Fragment(payload[992:], True)]
        assert events[2:] == ["next", Frame(Opcode.PING, b"ping")]
        assert protocol.data_to_send() == [Frame(Opcode.PONG, b"ping").serialize()]

    def test_a_ping_between_two_reads_of_the_frame_waits(self) -> None:
        # A control frame can't arrive inside a frame: what follows the
        # first read is still the frame's payload, even if it looks like a Ping.
        payload = masked(0x9, b"ping") + bytes(LARGE_FRAME)
        wire = masked(0x2, payload)
        events = pieces(streaming(), wire, [8, 9])
        assert events == [Fragment(payload[:1], False), Fragment(payload[1:], True)]

    def test_invalid_utf8_fails_with_1007_after_the_pieces_before(self) -> None:
        good = "a" * LARGE_FRAME
        wire = masked(0x1, good.encode() + b"\xff" + bytes(100))
        protocol = streaming()
        events = pieces(protocol, wire, [5000, len(good) + 5000])
        assert events == [Fragment(good[: 5000 - 8], False)]
        assert_failed(protocol, 1007)

    def test_over_max_size_fails_on_the_header(self) -> None:
        protocol = streaming(max_size=LARGE_FRAME)
        assert pieces(protocol, masked(0x2, bytes(LARGE_FRAME + 1))[:100], []) == []
        assert_failed(protocol, 1009, PayloadTooBig)

    def test_eof_in_the_middle(self) -> None:
        protocol = streaming()
        events = pieces(protocol, masked(0x2, bytes(LARGE_FRAME))[:1000], [])
        assert events == [Fragment(bytes(1000 - 8), False)]
        protocol.receive_eof()
        assert isinstance(protocol.parser_exc, EOFError)

    def test_compressed_pieces_are_inflated_as_they_arrive(self) -> None:
        # permessage-deflate (RFC 7692): each piece goes through the inflater.
        payload = os.urandom(3 * LARGE_FRAME)
        sender, receiver = client(max_size=None), streaming(max_size=len(payload))
        sender.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        receiver.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        sender.send_binary(payload)
        sender.send_binary(b"after")
        wire = b"".join(sender.data_to_send())
        assert wire[0] == 0xC2  # FIN, RSV1, binary: one compressed frame
        events = pieces(receiver, wire, list(range(7000, len(wire), 7000)))
        assert events[-1] == b"after"
        streamed = events[:-1]
        assert len(streamed) > 3
        assert b"".join(event.data for event in streamed) == payload  # type: ignore[union-attr, misc]
        assert [event.fin for event in streamed][-1] is True  # type: ignore[union-attr]

    def test_compressed_over_max_size_fails_with_1009_as_it_inflates(self) -> None:
        payload = b"compressible " * LARGE_FRAME
        sender, receiver = client(max_size=None), streaming(max_size=100_000)
        sender.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        receiver.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        sender.send_binary(os.urandom(LARGE_FRAME) + payload)  # random: a large frame
        wire = b"".join(sender.data_to_send())
        events = pieces(receiver, wire, list(range(1000, len(wire), 1000)))
        # Pieces came out, then the one that went past max_size failed.
        assert events
        assert all(type(event) is Fragment and not event.fin for event in events)
        assert sum(len(event.data) for event in events) <= 100_000  # type: ignore[union-attr, misc]
        assert_failed(receiver, 1009, PayloadTooBig)

    def test_traced_frames_are_whole(self) -> None:
        protocol = streaming()
        protocol.tracer = lambda out, header, payload: None
        payload = os.urandom(LARGE_FRAME)
        assert pieces(protocol, masked(0x2, payload), [100]) == [payload]

    def test_masking_key_cut_then_streamed_past_large_frame_max(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A read that ends inside the masking key waits for it, then streams,
        # also a frame over LARGE_FRAME_MAX (never gathered whole).
        monkeypatch.setattr(protocol_module, "LARGE_FRAME_MAX", LARGE_FRAME)
        payload = os.urandom(2 * LARGE_FRAME)
        wire = masked(0x2, payload)  # a 16-bit length: the key is bytes 4-7
        events = pieces(streaming(max_size=None), wire, [6, 5000, 20_000])
        assert [len(event.data) for event in events] == [5000 - 8, 15_000, len(wire) - 20_000]  # type: ignore[union-attr]
        assert b"".join(event.data for event in events) == payload  # type: ignore[union-attr, misc]

    def test_other_extensions_keep_frames_whole(self) -> None:
        # RFC 6455 section 5.4: the fragmentation of a message with reserved
        # bits this code doesn't know the meaning of can't change.
        from tests.extensions.test_base import Reverse

        payload = os.urandom(2 * LARGE_FRAME)
        protocol = streaming()
        protocol.set_extensions([Reverse()])
        events = pieces(protocol, masked(0x2, payload[::-1], rsv=0x20), [5000])
        assert events == [payload]

    def test_a_streamed_message_counts_once(self) -> None:
        protocol = streaming()
        protocol.receive_data(masked(0x2, bytes(LARGE_FRAME))[:5000])
        assert protocol.messages_received == 0
        protocol.receive_data(masked(0x2, bytes(LARGE_FRAME))[5000:])
        assert [type(event) for event in protocol.events_received()] == [Fragment, Fragment]
        assert protocol.messages_received == 1

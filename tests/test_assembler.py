"""Tests for ws13.assembler: messages from data frames, and streaming their fragments.

Bytes in, events out, by RFC 6455 section. A client-side protocol reads
unmasked frames (as a server sends them), a server-side one masked frames.
"""

from __future__ import annotations

import zlib

import pytest

from tests.test_protocol import assert_failed, client, frame, masked, server
from ws13.exceptions import PayloadTooBig
from ws13.extensions.permessage_deflate import PerMessageDeflate
from ws13.frames import CloseCode, Fragment, Frame, Opcode
from ws13.protocol import OPEN

OP_CONT, OP_TEXT, OP_BINARY, OP_PING = 0x0, 0x1, 0x2, 0x9


def streaming(side: str = "client", **kwargs: object):  # type: ignore[no-untyped-def]
    protocol = client(**kwargs) if side == "client" else server(**kwargs)
    protocol.stream_fragments = True
    return protocol


class TestSection5_4Reassembly:
    def test_fragments_make_one_message_by_default(self) -> None:
        protocol = client()
        protocol.receive_data(frame(OP_TEXT, b"he", fin=False) + frame(OP_CONT, b"llo"))
        assert protocol.events_received() == ["hello"]

    def test_a_character_cut_between_fragments(self) -> None:
        protocol = client()
        protocol.receive_data(frame(OP_TEXT, b"caf\xc3", fin=False))
        assert protocol.events_received() == []
        protocol.receive_data(frame(OP_CONT, b"\xa9"))
        assert protocol.events_received() == ["café"]


class TestSection5_4Streaming:
    def test_each_fragment_as_it_arrives(self) -> None:
        protocol = streaming()
        protocol.receive_data(frame(OP_BINARY, b"ab", fin=False))
        assert protocol.events_received() == [Fragment(b"ab", False)]
        protocol.receive_data(frame(OP_CONT, b"cd", fin=False))
        assert protocol.events_received() == [Fragment(b"cd", False)]
        protocol.receive_data(frame(OP_CONT, b"ef"))
        assert protocol.events_received() == [Fragment(b"ef", True)]
        # The next message starts afresh.
        protocol.receive_data(frame(OP_BINARY, b"whole"))
        assert protocol.events_received() == [b"whole"]

    def test_text_is_decoded_as_it_arrives(self) -> None:
        # A character cut between frames comes whole with the later piece.
        protocol = streaming()
        protocol.receive_data(frame(OP_TEXT, b"h\xc3", fin=False))
        protocol.receive_data(frame(OP_CONT, b"\xa9llo \xe2\x98", fin=False))
        protocol.receive_data(frame(OP_CONT, b"\x83"))
        assert protocol.events_received() == [
            Fragment("h", False),
            Fragment("éllo ", False),
            Fragment("☃", True),
        ]

    def test_control_frames_between_fragments(self) -> None:
        # Section 5.4: "Control frames MAY be injected in the middle of a
        # fragmented message"; the Pong answers at once.
        protocol = streaming("server")
        protocol.receive_data(
            masked(OP_BINARY, b"one", fin=False) + masked(OP_PING, b"?") + masked(OP_CONT, b"two")
        )
        assert protocol.events_received() == [
            Fragment(b"one", False),
            Frame(Opcode.PING, b"?"),
            Fragment(b"two", True),
        ]
        assert protocol.data_to_send() == [b"\x8a\x01?"]

    def test_a_message_in_one_frame_is_still_one_event(self) -> None:
        # Even when its frame arrives over several reads and is UTF-8
        # checked piece by piece as it comes (ws13.protocol).
        protocol = streaming()
        data = frame(OP_TEXT, "é".encode() * 100)
        for start in range(0, len(data), 7):
            protocol.receive_data(data[start : start + 7])
        assert protocol.events_received() == ["é" * 100]

    def test_a_frame_split_across_reads_is_one_fragment(self) -> None:
        protocol = streaming()
        data = frame(OP_TEXT, b"part", fin=False) + frame(OP_CONT, "é".encode() * 50)
        for start in range(0, len(data), 5):
            protocol.receive_data(data[start : start + 5])
        assert protocol.events_received() == [Fragment("part", False), Fragment("é" * 50, True)]

    def test_compressed_fragments(self) -> None:
        # RFC 7692 section 6.2: a compressed message's frames are one DEFLATE
        # stream; each fragment is handed out inflated.
        protocol = streaming()
        protocol.set_extensions([PerMessageDeflate(False, False, 15, 15)])
        compressor = zlib.compressobj(wbits=-15)
        first = compressor.compress(b"hello ") + compressor.flush(zlib.Z_SYNC_FLUSH)
        last = (compressor.compress(b"world") + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        protocol.receive_data(frame(OP_TEXT, first, fin=False, rsv=0x40) + frame(OP_CONT, last))
        assert protocol.events_received() == [Fragment("hello ", False), Fragment("world", True)]


class TestSection7_4StreamingErrors:
    def test_max_size_counts_the_fragments_handed_out(self) -> None:
        # Section 10.4: the limit applies to the message, streamed or not.
        protocol = streaming(max_size=10)
        protocol.receive_data(frame(OP_BINARY, b"123456", fin=False))
        assert protocol.events_received() == [Fragment(b"123456", False)]
        protocol.receive_data(frame(OP_CONT, b"78901"))
        assert protocol.events_received() == []
        assert_failed(protocol, CloseCode.MESSAGE_TOO_BIG, PayloadTooBig)

    @pytest.mark.parametrize(
        "pieces",
        [
            [b"ok", b"\xff"],  # invalid in a later fragment
            [b"ok", b"\xc3"],  # the message ends inside a character
        ],
    )
    def test_invalid_utf8_fails_with_1007(self, pieces: list[bytes]) -> None:
        # Section 8.1: invalid UTF-8 fails the connection, streamed or not.
        protocol = streaming()
        protocol.receive_data(frame(OP_TEXT, pieces[0], fin=False))
        assert protocol.events_received() == [Fragment("ok", False)]
        protocol.receive_data(frame(OP_CONT, pieces[1]))
        assert protocol.events_received() == []
        assert_failed(protocol, CloseCode.INVALID_DATA)

    def test_switching_streaming_off_between_messages(self) -> None:
        protocol = streaming()
        protocol.receive_data(frame(OP_BINARY, b"a", fin=False) + frame(OP_CONT, b"b"))
        protocol.stream_fragments = False
        protocol.receive_data(frame(OP_BINARY, b"c", fin=False) + frame(OP_CONT, b"d"))
        assert protocol.events_received() == [Fragment(b"a", False), Fragment(b"b", True), b"cd"]
        assert protocol.state is OPEN

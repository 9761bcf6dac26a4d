"""Tests for ws13.protocol: the sans-I/O state machine, bytes in and bytes out.

Server-side tests feed masked frames (as a client sends them); client-side
tests feed unmasked frames (as a server sends them). Byte strings come from
RFC 6455 section 5.7 wherever it has an example. ``Protocol``'s sending half
is its base class ``FrameWriter`` (ws13/writer.py); it is tested here through
``Protocol``, by RFC section, with the rest of the state machine.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rfc6455 import (
    BINARY_64K_HEADER,
    BINARY_256_HEADER,
    FRAGMENT_HEL,
    FRAGMENT_LO,
    MASK,
    MASKED_HELLO,
    MASKED_PONG,
    UNMASKED_HELLO,
    UNMASKED_PING,
)
from ws13.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from ws13.frames import Close, CloseCode, Frame, Opcode
from ws13.protocol import (
    CLIENT,
    CLOSED,
    CLOSING,
    CONNECTING,
    OPEN,
    SEND_EOF,
    SERVER,
    Event,
    Protocol,
    Side,
    State,
)
from ws13.utils import apply_mask


def frame(opcode: int, data: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A frame as a server sends it: unmasked. ``opcode`` may be a reserved one."""
    first = (0x80 if fin else 0) | rsv | opcode
    return _header(first, len(data), None) + data


def masked(opcode: int, data: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A frame as a client sends it: masked with the RFC 6455 section 5.7 key."""
    first = (0x80 if fin else 0) | rsv | opcode
    return _header(first, len(data), MASK) + apply_mask(data, MASK)


def _header(first: int, length: int, mask: bytes | None) -> bytes:
    # Written out here rather than imported, so that the tests don't trust the encoder.
    bit = 0x80 if mask else 0
    if length < 126:
        header = bytes((first, bit | length))
    elif length < 65536:
        header = bytes((first, bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, bit | 127)) + length.to_bytes(8, "big")
    return header + (mask or b"")


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


def sent_frames(protocol: Protocol) -> list[Frame | bytes]:
    """Decode what ``protocol`` wants to write: frames, and SEND_EOF as ``b""``.

    Checks on the way that a client masked every frame and a server none.
    """
    data = b"".join(w if w else b"\x00EOF" for w in protocol.data_to_send())
    result: list[Frame | bytes] = []
    while data:
        if data.startswith(b"\x00EOF"):
            result.append(SEND_EOF)
            data = data[4:]
            continue
        parsed = Frame.parse(data, mask=protocol.side is CLIENT)
        assert parsed is not None, "incomplete frame in data_to_send()"
        result.append(parsed[0])
        data = data[parsed[1] :]
    return result


def close_frame(code: int, reason: str = "") -> Frame:
    return Frame(Opcode.CLOSE, close_payload(code, reason))


def assert_failed(protocol: Protocol, code: int, exc_type: type[Exception] = ProtocolError) -> None:
    """``protocol`` failed the connection with ``code`` (RFC 6455 section 7.1.7)."""
    writes = sent_frames(protocol)
    sent = writes[0]
    assert isinstance(sent, Frame)
    assert sent.opcode is Opcode.CLOSE
    assert Close.parse(sent.data).code == code
    # A server closes the TCP connection at once; a client waits for the server.
    assert writes[1:] == ([SEND_EOF] if protocol.side is SERVER else [])
    assert protocol.state is CLOSING
    assert protocol.close_sent is not None
    assert protocol.close_sent.code == code
    assert protocol.close_rcvd is None
    assert protocol.close_rcvd_then_sent is False
    assert isinstance(protocol.parser_exc, exc_type)
    assert protocol.close_expected()


def server(**kwargs: object) -> Protocol:
    return Protocol(SERVER, **kwargs)  # type: ignore[arg-type]


def client(**kwargs: object) -> Protocol:
    return Protocol(CLIENT, **kwargs)  # type: ignore[arg-type]


def receive(protocol: Protocol, data: bytes | bytearray) -> list[Event]:
    protocol.receive_data(data)
    return protocol.events_received()


def receive_bytewise(protocol: Protocol, data: bytes) -> list[Event]:
    events = []
    for i in range(len(data)):
        protocol.receive_data(data[i : i + 1])
        events.extend(protocol.events_received())
    return events


class TestSection5_1Masking:
    def test_server_accepts_masked_frame(self) -> None:
        protocol = server()
        assert receive(protocol, MASKED_HELLO) == ["Hello"]
        assert protocol.data_to_send() == []

    def test_server_fails_unmasked_frame(self) -> None:
        # "a server MUST close the connection upon receiving a frame that is not masked"
        protocol = server()
        assert receive(protocol, UNMASKED_HELLO) == []
        assert protocol.data_to_send() == [
            b"\x88\x13\x03\xeaincorrect masking",
            SEND_EOF,
        ]
        protocol = server()
        receive(protocol, UNMASKED_HELLO)
        assert_failed(protocol, 1002)

    def test_server_fails_unmasked_control_frame(self) -> None:
        protocol = server()
        assert receive(protocol, UNMASKED_PING) == []
        assert_failed(protocol, 1002)

    def test_client_accepts_unmasked_frame(self) -> None:
        assert receive(client(), UNMASKED_HELLO) == ["Hello"]

    def test_client_fails_masked_frame(self) -> None:
        # "A client MUST close a connection if it detects a masked frame."
        protocol = client()
        assert receive(protocol, MASKED_HELLO) == []
        assert_failed(protocol, 1002)

    def test_unmasked_header_alone_is_enough_to_fail(self) -> None:
        protocol = server()
        assert receive(protocol, b"\x81\x05") == []
        assert_failed(protocol, 1002)

    def test_server_does_not_mask(self) -> None:
        protocol = server()
        protocol.send_text("Hello")
        assert protocol.data_to_send() == [UNMASKED_HELLO]

    def test_client_masks_every_frame_with_a_fresh_key(self) -> None:
        protocol = client()
        protocol.send_text("Hello")
        protocol.send_binary(b"\x00\x01")
        protocol.send_text("Hel", fin=False)
        protocol.send_continuation(b"lo", fin=True)
        protocol.send_ping(b"ping")
        protocol.send_pong(b"pong")
        protocol.send_binary(b"x" * 70000)
        protocol.send_close(1000, "bye")
        data = b"".join(protocol.data_to_send())
        keys, payloads = [], []
        while data:
            assert data[1] & 0x80, "client frame without MASK bit"
            length = data[1] & 0x7F
            head = 2
            if length == 126:
                length, head = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, head = int.from_bytes(data[2:10], "big"), 10
            key = data[head : head + 4]
            keys.append(key)
            payloads.append(apply_mask(data[head + 4 : head + 4 + length], key))
            data = data[head + 4 + length :]
        assert payloads == [
            b"Hello",
            b"\x00\x01",
            b"Hel",
            b"lo",
            b"ping",
            b"pong",
            b"x" * 70000,
            b"\x03\xe8bye",
        ]
        assert len(set(keys)) == len(keys)

    def test_client_masks_empty_frame(self) -> None:
        protocol = client()
        protocol.send_binary(b"")
        [data] = protocol.data_to_send()
        assert data[:2] == b"\x82\x80"
        assert len(data) == 6

    def test_client_pong_reply_is_masked(self) -> None:
        protocol = client()
        receive(protocol, UNMASKED_PING)
        assert sent_frames(protocol) == [Frame(Opcode.PONG, b"Hello")]


class TestSection5_2BaseFraming:
    @pytest.mark.parametrize(
        ("data", "event"),
        [
            (masked(0x1, b"caf\xc3\xa9"), "café"),
            (masked(0x2, b"\x00\xff"), b"\x00\xff"),
            (masked(0x1), ""),
            (masked(0x2), b""),
            (masked(0x9, b"ping"), Frame(Opcode.PING, b"ping")),
            (masked(0xA, b"pong"), Frame(Opcode.PONG, b"pong")),
            (masked(0x8, b"\x03\xe8"), Frame(Opcode.CLOSE, b"\x03\xe8")),
        ],
    )
    def test_every_opcode(self, data: bytes, event: Event) -> None:
        assert receive(server(), data) == [event]

    def test_continuation_opcode(self) -> None:
        data = masked(0x2, b"a", fin=False) + masked(0x0, b"b", fin=False) + masked(0x0, b"c")
        assert receive(server(), data) == [b"abc"]

    def test_text_is_str_and_binary_is_bytes(self) -> None:
        [text, binary] = receive(server(), masked(0x1, b"x") + masked(0x2, b"x"))
        assert type(text) is str
        assert type(binary) is bytes

    def test_several_frames_in_one_chunk(self) -> None:
        data = masked(0x1, b"a") + masked(0x2, b"b") + masked(0x1, b"c")
        assert receive(server(), data) == ["a", b"b", "c"]

    def test_bytearray_input(self) -> None:
        assert receive(server(), bytearray(MASKED_HELLO)) == ["Hello"]

    def test_empty_input(self) -> None:
        protocol = server()
        assert receive(protocol, b"") == []
        assert receive(protocol, MASKED_HELLO) == ["Hello"]

    @pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
    def test_rsv_bits_without_extension(self, rsv: int) -> None:
        # "MUST be 0 unless an extension is negotiated that defines meanings"
        protocol = server()
        assert receive(protocol, masked(0x1, b"Hello", rsv=rsv)) == []
        assert_failed(protocol, 1002)

    @pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
    def test_rsv_bits_on_control_frame(self, rsv: int) -> None:
        protocol = client()
        assert receive(protocol, frame(0x9, b"x", rsv=rsv)) == []
        assert_failed(protocol, 1002)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcodes(self, opcode: int) -> None:
        # "If an unknown opcode is received, the receiving endpoint MUST _Fail the
        # WebSocket Connection_."
        protocol = server()
        assert receive(protocol, masked(opcode, b"x")) == []
        assert_failed(protocol, 1002)

    @pytest.mark.parametrize("opcode", [3, 0xB])
    def test_reserved_opcode_in_fragmented_message(self, opcode: int) -> None:
        protocol = server()
        assert receive(protocol, masked(0x1, b"a", fin=False) + masked(opcode, b"b")) == []
        assert_failed(protocol, 1002)

    def test_64_bit_length_with_top_bit_set(self) -> None:
        # "the most significant bit MUST be 0"
        protocol = client()
        assert receive(protocol, bytes.fromhex("827f8000000000000005") + b"Hello") == []
        assert_failed(protocol, 1002)

    def test_64_bit_length_top_bit_on_server(self) -> None:
        protocol = server(max_size=None)
        assert receive(protocol, bytes.fromhex("82ff8000000000000000") + MASK) == []
        assert_failed(protocol, 1002)

    def test_rfc_256_bytes_binary(self) -> None:
        payload = bytes(range(256))
        assert receive(client(), BINARY_256_HEADER + payload) == [payload]

    def test_rfc_64k_binary(self) -> None:
        payload = bytes(range(256)) * 256
        assert receive(client(), BINARY_64K_HEADER + payload) == [payload]

    @pytest.mark.parametrize("split", [1, 3, 4, 9, 10, 100])
    def test_rfc_64k_binary_in_two_reads(self, split: int) -> None:
        # The extended length itself may arrive in pieces.
        protocol = client()
        data = BINARY_64K_HEADER + bytes(65536)
        assert receive(protocol, data[:split]) == []
        assert receive(protocol, data[split:]) == [bytes(65536)]

    def test_non_minimal_length_is_accepted(self) -> None:
        # Receivers aren't required to check minimal encoding; be liberal.
        assert receive(client(), bytes.fromhex("817e0005") + b"Hello") == ["Hello"]

    @pytest.mark.parametrize(
        ("length", "header"),
        [
            (0, "8200"),
            (125, "827d"),
            (126, "827e007e"),
            (65535, "827effff"),
            (65536, "827f0000000000010000"),
        ],
    )
    def test_send_uses_minimal_length(self, length: int, header: str) -> None:
        # "the minimal number of bytes MUST be used to encode the length"
        protocol = server()
        protocol.send_binary(b"\xab" * length)
        assert b"".join(protocol.data_to_send()) == bytes.fromhex(header) + b"\xab" * length

    @pytest.mark.parametrize("length", [125, 126, 65535, 65536])
    def test_client_send_uses_minimal_length(self, length: int) -> None:
        protocol = client()
        protocol.send_text("é" * (length // 2) + "x" * (length % 2))
        data = b"".join(protocol.data_to_send())
        if length < 126:
            assert data[1] == 0x80 | length
            assert len(data) == 6 + length
        elif length < 65536:
            assert data[1:4] == b"\xfe" + length.to_bytes(2, "big")
            assert len(data) == 8 + length
        else:
            assert data[1:10] == b"\xff" + length.to_bytes(8, "big")
            assert len(data) == 14 + length

    def test_rfc_256_and_64k_on_send(self) -> None:
        protocol = server()
        protocol.send_binary(bytes(range(256)))
        protocol.send_binary(bytes(65536))
        assert b"".join(protocol.data_to_send()) == (
            BINARY_256_HEADER + bytes(range(256)) + BINARY_64K_HEADER + bytes(65536)
        )

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_send_binary_accepts_bytes_like(self, kind: type) -> None:
        protocol = server()
        protocol.send_binary(kind(b"Hello"))
        assert protocol.data_to_send() == [b"\x82\x05Hello"]

    def test_send_text_accepts_utf8_bytes(self) -> None:
        protocol = server()
        protocol.send_text(b"Hello")
        assert protocol.data_to_send() == [UNMASKED_HELLO]

    def test_send_text_encodes_str(self) -> None:
        protocol = server()
        protocol.send_text("café")
        assert protocol.data_to_send() == [b"\x81\x05caf\xc3\xa9"]


class TestSection5_4Fragmentation:
    def test_rfc_fragmented_text(self) -> None:
        protocol = client()
        assert receive(protocol, FRAGMENT_HEL) == []
        assert receive(protocol, FRAGMENT_LO) == ["Hello"]

    def test_rfc_fragmented_text_masked(self) -> None:
        data = masked(0x1, b"Hel", fin=False) + masked(0x0, b"lo")
        assert receive(server(), data) == ["Hello"]

    def test_fragmented_binary(self) -> None:
        data = masked(0x2, b"\x01", fin=False) + masked(0x0, b"") + masked(0x2, b"\x02")
        assert receive(server(), data) == [b"\x01", b"\x02"]

    def test_empty_fragments(self) -> None:
        data = frame(0x1, fin=False) + frame(0x0, fin=False) + frame(0x0)
        assert receive(client(), data) == [""]

    def test_ping_interleaved(self) -> None:
        # "Control frames MAY be injected in the middle of a fragmented message."
        protocol = client()
        assert receive(protocol, FRAGMENT_HEL) == []
        assert receive(protocol, UNMASKED_PING) == [Frame(Opcode.PING, b"Hello")]
        # The pong goes out before the message is complete.
        assert sent_frames(protocol) == [Frame(Opcode.PONG, b"Hello")]
        assert receive(protocol, FRAGMENT_LO) == ["Hello"]
        assert protocol.data_to_send() == []

    def test_ping_interleaved_in_one_chunk(self) -> None:
        protocol = server()
        data = (
            masked(0x1, b"Hel", fin=False)
            + masked(0x9, b"p")
            + masked(0xA, b"q")
            + masked(0x0, b"lo")
        )
        assert receive(protocol, data) == [
            Frame(Opcode.PING, b"p"),
            Frame(Opcode.PONG, b"q"),
            "Hello",
        ]
        assert protocol.data_to_send() == [b"\x8a\x01p"]

    def test_continuation_without_start(self) -> None:
        protocol = client()
        assert receive(protocol, FRAGMENT_LO) == []
        assert_failed(protocol, 1002)

    def test_continuation_after_complete_message(self) -> None:
        protocol = client()
        assert receive(protocol, UNMASKED_HELLO + FRAGMENT_LO) == ["Hello"]
        assert_failed(protocol, 1002)

    @pytest.mark.parametrize("opcode", [0x1, 0x2])
    def test_new_data_frame_while_fragmented(self, opcode: int) -> None:
        # "the fragments of one message MUST NOT be interleaved between the fragments
        # of another message"
        protocol = server()
        data = masked(0x1, b"Hel", fin=False) + masked(opcode, b"lo")
        assert receive(protocol, data) == []
        assert_failed(protocol, 1002)

    def test_send_fragmented(self) -> None:
        protocol = server()
        protocol.send_text("Hel", fin=False)
        protocol.send_ping(b"Hello")
        protocol.send_continuation(b"lo", fin=True)
        assert protocol.data_to_send() == [FRAGMENT_HEL, UNMASKED_PING, FRAGMENT_LO]

    def test_send_fragmented_binary(self) -> None:
        protocol = server()
        protocol.send_binary(b"a", fin=False)
        protocol.send_continuation(b"b", fin=False)
        protocol.send_continuation(b"c", fin=True)
        protocol.send_binary(b"d")
        assert protocol.data_to_send() == [b"\x02\x01a", b"\x00\x01b", b"\x80\x01c", b"\x82\x01d"]

    def test_send_continuation_without_start(self) -> None:
        protocol = server()
        with pytest.raises(InvalidState, match="no fragmented message"):
            protocol.send_continuation(b"x", fin=True)
        protocol.send_text("a", fin=False)
        protocol.send_continuation(b"b", fin=True)
        with pytest.raises(InvalidState):
            protocol.send_continuation(b"x", fin=True)

    @pytest.mark.parametrize("method", ["send_text", "send_binary"])
    def test_send_new_message_while_fragmented(self, method: str) -> None:
        protocol = server()
        protocol.send_binary(b"a", fin=False)
        with pytest.raises(InvalidState, match="fragmented message is in progress"):
            getattr(protocol, method)(b"b")
        assert protocol.data_to_send() == [b"\x02\x01a"]


class TestSection5_5ControlFrames:
    @pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
    def test_control_frame_of_125_bytes(self, opcode: int) -> None:
        payload = b"\x03\xe8" + b"x" * 123 if opcode == 0x8 else b"x" * 125
        assert receive(server(), masked(opcode, payload)) == [Frame(Opcode(opcode), payload)]

    @pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
    def test_control_frame_too_long(self, opcode: int) -> None:
        # "All control frames MUST have a payload length of 125 bytes or less"
        protocol = server()
        # The header is enough: the 126-byte payload never arrives.
        assert receive(protocol, bytes([0x80 | opcode, 0xFE, 0, 126]) + MASK) == []
        assert_failed(protocol, 1002)

    @pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
    def test_fragmented_control_frame(self, opcode: int) -> None:
        # "... and MUST NOT be fragmented."
        protocol = client()
        assert receive(protocol, frame(opcode, b"\x03\xe8", fin=False)) == []
        assert_failed(protocol, 1002)


class TestSection5_5_1Close:
    def test_server_receives_close(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x8, close_payload(1000, "bye"))) == [
            close_frame(1000, "bye")
        ]
        # "the endpoint MUST send a Close frame in response ... typically echoing the
        # status code it received"; the server then closes the TCP connection.
        assert protocol.data_to_send() == [b"\x88\x02\x03\xe8", SEND_EOF]
        assert protocol.state is CLOSING
        assert protocol.close_rcvd == Close(1000, "bye")
        assert protocol.close_sent == Close(1000, "")
        assert protocol.close_rcvd_then_sent is True
        assert protocol.close_code is None
        assert protocol.close_reason is None
        assert protocol.close_expected()
        protocol.receive_eof()
        assert protocol.data_to_send() == []
        assert protocol.state is CLOSED
        assert protocol.close_code == 1000
        assert protocol.close_reason == "bye"
        assert protocol.parser_exc is None

    def test_server_starts_close(self) -> None:
        protocol = server()
        protocol.send_close(1001, "going")
        assert protocol.data_to_send() == [b"\x88\x07\x03\xe9going"]
        assert protocol.state is CLOSING
        assert protocol.close_sent == Close(1001, "going")
        assert protocol.close_rcvd_then_sent is False
        assert receive(protocol, masked(0x8, close_payload(1001))) == [close_frame(1001)]
        # No second Close frame; the server closes the TCP connection.
        assert protocol.data_to_send() == [SEND_EOF]
        assert protocol.state is CLOSING
        protocol.receive_eof()
        assert protocol.data_to_send() == []
        assert protocol.state is CLOSED
        assert protocol.close_code == 1001
        assert protocol.close_reason == ""
        assert protocol.close_rcvd_then_sent is False

    def test_client_receives_close(self) -> None:
        protocol = client()
        assert receive(protocol, frame(0x8, close_payload(1000))) == [close_frame(1000)]
        # The client answers, then waits for the server to close TCP.
        assert sent_frames(protocol) == [close_frame(1000)]
        assert protocol.state is CLOSING
        assert protocol.close_rcvd_then_sent is True
        protocol.receive_eof()
        assert protocol.data_to_send() == [SEND_EOF]
        assert protocol.state is CLOSED
        assert protocol.close_code == 1000
        assert protocol.parser_exc is None

    def test_client_starts_close(self) -> None:
        protocol = client()
        protocol.send_close(1000)
        assert sent_frames(protocol) == [close_frame(1000)]
        assert protocol.state is CLOSING
        assert receive(protocol, frame(0x8, close_payload(1000))) == [close_frame(1000)]
        assert protocol.data_to_send() == []
        assert protocol.state is CLOSING
        protocol.receive_eof()
        assert protocol.data_to_send() == [SEND_EOF]
        assert protocol.state is CLOSED
        assert protocol.close_code == 1000
        assert protocol.close_rcvd_then_sent is False

    def test_empty_close(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x8)) == [Frame(Opcode.CLOSE, b"")]
        # An empty Close is answered with an empty Close.
        assert protocol.data_to_send() == [b"\x88\x00", SEND_EOF]
        assert protocol.close_rcvd == Close(1005, "")
        assert protocol.close_sent == Close(1005, "")
        protocol.receive_eof()
        assert protocol.close_code == CloseCode.NO_STATUS_RCVD
        assert protocol.close_reason == ""

    def test_send_close_without_code(self) -> None:
        protocol = server()
        protocol.send_close()
        assert protocol.data_to_send() == [b"\x88\x00"]
        assert protocol.close_sent == Close(1005, "")

    def test_echo_keeps_code_not_reason(self) -> None:
        protocol = client()
        receive(protocol, frame(0x8, close_payload(4000, "custom reason")))
        assert sent_frames(protocol) == [close_frame(4000)]

    def test_reason_in_utf8(self) -> None:
        protocol = client()
        receive(protocol, frame(0x8, b"\x03\xe8caf\xc3\xa9"))
        assert protocol.close_rcvd == Close(1000, "café")

    def test_data_after_close_is_ignored(self) -> None:
        # "the endpoint ... MUST NOT send any more data frames" — and if it does,
        # they are ignored, including invalid ones.
        protocol = server()
        data = masked(0x8, close_payload(1000)) + masked(0x1, b"late") + UNMASKED_HELLO
        assert receive(protocol, data) == [close_frame(1000)]
        assert protocol.data_to_send() == [b"\x88\x02\x03\xe8", SEND_EOF]
        assert receive(protocol, masked(0x9, b"ping") + b"\xff\xff") == []
        assert protocol.data_to_send() == []
        assert protocol.parser_exc is None

    def test_data_after_our_close_is_still_received(self) -> None:
        # "... it MAY continue receiving data" after sending a Close frame.
        protocol = client()
        protocol.send_close(1000)
        protocol.data_to_send()
        assert receive(protocol, UNMASKED_HELLO) == ["Hello"]
        assert receive(protocol, UNMASKED_PING) == [Frame(Opcode.PING, b"Hello")]
        assert sent_frames(protocol) == [Frame(Opcode.PONG, b"Hello")]

    def test_close_in_the_middle_of_a_fragmented_message(self) -> None:
        protocol = client()
        assert receive(protocol, FRAGMENT_HEL + frame(0x8, close_payload(1001))) == [
            close_frame(1001)
        ]
        assert receive(protocol, FRAGMENT_LO) == []

    def test_one_byte_payload(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x8, b"\x03")) == []
        assert_failed(protocol, 1002)
        assert protocol.close_rcvd is None

    def test_invalid_utf8_reason(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x8, b"\x03\xe8\xff")) == []
        assert_failed(protocol, 1007)

    def test_truncated_utf8_reason(self) -> None:
        protocol = client()
        assert receive(protocol, frame(0x8, b"\x03\xe8caf\xc3")) == []
        assert_failed(protocol, 1007)

    def test_close_split_across_chunks(self) -> None:
        protocol = server()
        assert receive_bytewise(protocol, masked(0x8, close_payload(1000, "x"))) == [
            close_frame(1000, "x")
        ]


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]


class TestSection7_4StatusCodes:
    @pytest.mark.parametrize("code", [*VALID_CODES, 3000, 3999, 4000, 4999])
    def test_valid_code_received(self, code: int) -> None:
        protocol = server()
        assert receive(protocol, masked(0x8, close_payload(code, "r"))) == [close_frame(code, "r")]
        assert protocol.data_to_send() == [b"\x88\x02" + close_payload(code), SEND_EOF]
        protocol.receive_eof()
        assert protocol.close_code == code
        assert protocol.close_reason == "r"

    @pytest.mark.parametrize("code", INVALID_CODES)
    def test_invalid_code_received(self, code: int) -> None:
        protocol = server()
        assert receive(protocol, masked(0x8, close_payload(code))) == []
        assert_failed(protocol, 1002)

    @pytest.mark.parametrize("code", [*VALID_CODES, 3000, 4999])
    def test_valid_code_sent(self, code: int) -> None:
        protocol = server()
        protocol.send_close(code, "why")
        assert protocol.data_to_send() == [b"\x88\x05" + close_payload(code, "why")]

    @pytest.mark.parametrize("code", INVALID_CODES)
    def test_invalid_code_sent(self, code: int) -> None:
        protocol = server()
        with pytest.raises(ValueError, match="invalid close code"):
            protocol.send_close(code)
        assert protocol.data_to_send() == []
        assert protocol.state is OPEN

    def test_reason_without_code(self) -> None:
        with pytest.raises(ValueError, match="without a code"):
            server().send_close(reason="why")

    def test_reason_of_123_bytes(self) -> None:
        protocol = server()
        protocol.send_close(1000, "x" * 123)
        [data] = protocol.data_to_send()
        assert data[:2] == b"\x88\x7d"

    @pytest.mark.parametrize("reason", ["x" * 124, "é" * 62])
    def test_reason_too_long(self, reason: str) -> None:
        # The reason counts in UTF-8 bytes: 62 "é" are 124 bytes.
        protocol = server()
        with pytest.raises(ValueError, match="123 bytes"):
            protocol.send_close(1000, reason)
        assert protocol.state is OPEN

    def test_close_code_enum_accepted(self) -> None:
        protocol = client()
        protocol.send_close(CloseCode.GOING_AWAY)
        assert sent_frames(protocol) == [close_frame(1001)]

    @pytest.mark.parametrize(
        ("code", "ok"), [(1000, True), (1001, True), (1011, False), (4000, False)]
    )
    def test_close_exc_after_the_closing_handshake(self, code: int, ok: bool) -> None:
        # What the I/O layers raise once closed: OK for 1000 and 1001 both ways.
        protocol = server()
        receive(protocol, masked(0x8, close_payload(code, "bye")))
        protocol.receive_eof()
        exc = protocol.close_exc
        assert isinstance(exc, ConnectionClosedOK if ok else ConnectionClosedError)
        assert exc.rcvd == Close(code, "bye")
        assert exc.sent == Close(code, "")
        assert exc.rcvd_then_sent is True
        assert protocol.close_exc is not exc  # a new exception each time

    def test_close_exc_without_a_close_frame(self) -> None:
        protocol = server()
        protocol.receive_eof()
        exc = protocol.close_exc
        assert isinstance(exc, ConnectionClosedError)
        assert exc.rcvd is None
        assert exc.sent is None
        assert isinstance(exc.__cause__, EOFError)

    def test_close_exc_after_a_protocol_error(self) -> None:
        protocol = server()
        receive(protocol, frame(0x1, b"unmasked"))
        exc = protocol.close_exc
        assert isinstance(exc, ConnectionClosedError)
        assert exc.sent is not None
        assert exc.sent.code == 1002
        assert isinstance(exc.__cause__, ProtocolError)


class TestSection5_5_2Ping:
    def test_rfc_ping_answered_by_pong(self) -> None:
        # "the Pong frame ... MUST have identical "Application data" as found in
        # the message body of the Ping frame being replied to."
        protocol = client()
        assert receive(protocol, UNMASKED_PING) == [Frame(Opcode.PING, b"Hello")]
        [data] = protocol.data_to_send()
        assert data[:2] == b"\x8a\x85"
        assert apply_mask(data[6:], data[2:6]) == b"Hello"

    def test_server_pong_is_unmasked(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x9, b"Hello")) == [Frame(Opcode.PING, b"Hello")]
        assert protocol.data_to_send() == [b"\x8a\x05Hello"]

    @pytest.mark.parametrize("payload", [b"", b"\x00\xff", b"x" * 125])
    def test_payloads(self, payload: bytes) -> None:
        protocol = server()
        receive(protocol, masked(0x9, payload))
        assert protocol.data_to_send() == [bytes([0x8A, len(payload)]) + payload]

    def test_each_ping_answered(self) -> None:
        protocol = server()
        receive(protocol, masked(0x9, b"1") + masked(0x9, b"2"))
        assert protocol.data_to_send() == [b"\x8a\x011", b"\x8a\x012"]

    def test_ping_after_close_received_is_not_answered(self) -> None:
        protocol = client()
        receive(protocol, frame(0x8, close_payload(1000)) + UNMASKED_PING)
        assert sent_frames(protocol) == [close_frame(1000)]

    def test_send_ping(self) -> None:
        protocol = server()
        protocol.send_ping(b"Hello")
        protocol.send_ping()
        assert protocol.data_to_send() == [UNMASKED_PING, b"\x89\x00"]

    def test_send_ping_too_long(self) -> None:
        protocol = server()
        protocol.send_ping(b"x" * 125)
        with pytest.raises(ValueError, match="125 bytes"):
            protocol.send_ping(b"x" * 126)


class TestSection5_5_3Pong:
    def test_rfc_masked_pong(self) -> None:
        protocol = server()
        assert receive(protocol, MASKED_PONG) == [Frame(Opcode.PONG, b"Hello")]
        # "A response to an unsolicited Pong frame is not expected."
        assert protocol.data_to_send() == []
        assert protocol.state is OPEN

    def test_send_unsolicited_pong(self) -> None:
        protocol = client()
        protocol.send_pong(b"Hello")
        [data] = protocol.data_to_send()
        assert data[:2] == b"\x8a\x85"
        assert apply_mask(data[6:], data[2:6]) == b"Hello"

    def test_send_pong_too_long(self) -> None:
        with pytest.raises(ValueError, match="125 bytes"):
            server().send_pong(b"x" * 126)


INVALID_UTF8 = [
    pytest.param(b"\xff", id="0xff"),
    pytest.param(b"\x80", id="lone continuation"),
    pytest.param(b"\xc0\xaf", id="overlong 2 bytes"),
    pytest.param(b"\xe0\x80\xaf", id="overlong 3 bytes"),
    pytest.param(b"\xed\xa0\x80", id="surrogate"),
    pytest.param(b"\xf4\x90\x80\x80", id="above U+10FFFF"),
    pytest.param(b"\xf8\x88\x80\x80\x80", id="5 bytes"),
    pytest.param(b"\xc3\x28", id="bad continuation"),
]


class TestSection8_1Utf8:
    def test_valid_text(self) -> None:
        text = "κόσμε 🌍 Hello-µ@ßöäüàá-UTF-8!!"
        assert receive(server(), masked(0x1, text.encode())) == [text]

    @pytest.mark.parametrize("payload", INVALID_UTF8)
    def test_invalid_text(self, payload: bytes) -> None:
        # "When an endpoint is to interpret a byte stream as UTF-8 but finds that
        # the byte stream is not, in fact, a valid UTF-8 stream, that endpoint
        # MUST _Fail the WebSocket Connection_." 1007: "data within a message
        # that was not consistent with the type of the message"
        protocol = server()
        assert receive(protocol, masked(0x1, b"ok" + payload + b"ok")) == []
        assert_failed(protocol, 1007)

    def test_invalid_text_on_client(self) -> None:
        protocol = client()
        assert receive(protocol, frame(0x1, b"\xce\xba\xff")) == []
        assert_failed(protocol, 1007)

    def test_truncated_at_end_of_message(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x1, b"caf\xc3")) == []
        assert_failed(protocol, 1007)

    def test_truncated_at_end_of_fragmented_message(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x1, b"ok", fin=False) + masked(0x0, b"caf\xc3")) == []
        assert_failed(protocol, 1007)

    def test_binary_is_not_checked(self) -> None:
        assert receive(server(), masked(0x2, b"\xff\xfe")) == [b"\xff\xfe"]

    @pytest.mark.parametrize("split", [1, 2, 3])
    def test_valid_char_split_across_fragments(self, split: int) -> None:
        # A character may straddle two fragments: only the message must be valid UTF-8.
        encoded = "🌍".encode()
        data = masked(0x1, b"a" + encoded[:split], fin=False) + masked(0x0, encoded[split:] + b"b")
        assert receive(server(), data) == ["a🌍b"]

    def test_valid_char_split_across_three_fragments(self) -> None:
        encoded = "€".encode()
        data = (
            frame(0x1, encoded[:1], fin=False)
            + frame(0x0, encoded[1:2], fin=False)
            + frame(0x0, encoded[2:])
        )
        assert receive_bytewise(client(), data) == ["€"]

    def test_valid_char_split_across_fragments_fed_bytewise(self) -> None:
        encoded = "κόσμε🌍".encode()
        data = masked(0x1, encoded[:3], fin=False) + masked(0x0, encoded[3:])
        protocol = server()
        assert receive_bytewise(protocol, data) == ["κόσμε🌍"]
        assert protocol.data_to_send() == []

    @pytest.mark.parametrize("side", [SERVER, CLIENT])
    def test_fails_as_soon_as_invalid_byte_arrives(self, side: Side) -> None:
        # Autobahn 6.4.*: fail fast, in the middle of a frame whose end hasn't arrived.
        protocol = Protocol(side)
        payload = b"Hello\xffWorld, more bytes to come"
        data = masked(0x1, payload) if side is SERVER else frame(0x1, payload)
        invalid = len(data) - len(payload) + 5  # the index of b"\xff"
        for i in range(invalid):
            protocol.receive_data(data[i : i + 1])
            assert protocol.data_to_send() == []
            assert protocol.events_received() == []
        protocol.receive_data(data[invalid : invalid + 1])
        assert protocol.events_received() == []
        assert_failed(protocol, 1007)
        # The rest of the frame is ignored.
        protocol.receive_data(data[invalid + 1 :])
        assert protocol.data_to_send() == []
        assert protocol.events_received() == []

    @pytest.mark.parametrize(
        ("valid", "invalid"),
        [
            (b"\xce", b"\xff"),
            (b"\xf4", b"\x90"),
            (b"\xe0", b"\x80"),
            (b"\xed", b"\xa0"),
            (b"\xf0", b"\x8f"),
            (b"", b"\xf5"),
            (b"", b"\xc1"),
        ],
    )
    def test_fails_at_the_first_impossible_byte(self, valid: bytes, invalid: bytes) -> None:
        # "valid" is a possible start of a character, "invalid" can't continue it.
        protocol = server()
        data = masked(0x1, b"ab" + valid + invalid + b"\x80\x80 and more")
        end = 6 + 2 + len(valid)
        for i in range(end):
            protocol.receive_data(data[i : i + 1])
        assert protocol.data_to_send() == []
        protocol.receive_data(data[end : end + 1])
        assert_failed(protocol, 1007)

    def test_fails_as_soon_as_invalid_byte_arrives_in_continuation(self) -> None:
        protocol = server()
        first = masked(0x1, b"Hel", fin=False)
        second = masked(0x0, b"lo\xc3\x28 and more to come")
        assert receive(protocol, first) == []
        protocol.receive_data(second[:9])  # header, mask and "lo\xc3"
        assert protocol.data_to_send() == []
        protocol.receive_data(second[9:10])
        assert_failed(protocol, 1007)

    def test_surrogate_split_across_fragments(self) -> None:
        # ED A0-BF would start a UTF-16 surrogate: invalid from its second byte on.
        protocol = server()
        assert receive(protocol, masked(0x1, b"a\xed", fin=False)) == []
        assert protocol.data_to_send() == []
        assert receive(protocol, masked(0x0, b"\xa0", fin=False)) == []
        assert_failed(protocol, 1007)

    def test_highest_char_before_surrogates_split_across_fragments(self) -> None:
        # ED 9F BF is U+D7FF, valid.
        data = masked(0x1, b"\xed", fin=False) + masked(0x0, b"\x9f", fin=False)
        assert receive_bytewise(server(), data + masked(0x0, b"\xbf")) == ["\ud7ff"]

    def test_fails_across_fragment_boundary(self) -> None:
        # The first fragment ends with a valid lead byte; the second can't continue it.
        protocol = client()
        assert receive(protocol, frame(0x1, b"caf\xc3", fin=False)) == []
        assert protocol.data_to_send() == []
        assert receive(protocol, frame(0x0, b"\x28")) == []
        assert_failed(protocol, 1007)

    def test_fails_on_invalid_first_fragment(self) -> None:
        # No need to wait for the end of the message.
        protocol = client()
        assert receive(protocol, frame(0x1, b"\xff", fin=False)) == []
        assert_failed(protocol, 1007)

    def test_partial_frames_then_valid_rest(self) -> None:
        # The incremental check must not lose or repeat bytes.
        text = "κόσμε " * 50
        data = masked(0x1, text.encode())
        protocol = server()
        for chunk in (data[:10], data[10:11], data[11:200], data[200:201], data[201:]):
            protocol.receive_data(chunk)
        assert protocol.events_received() == [text]
        assert protocol.data_to_send() == []

    def test_partial_frame_followed_by_more_frames(self) -> None:
        protocol = server()
        data = masked(0x1, b"Hello", fin=False) + masked(0x0, b" world") + masked(0x2, b"x")
        protocol.receive_data(data[:9])
        protocol.receive_data(data[9:20])
        protocol.receive_data(data[20:])
        assert protocol.events_received() == ["Hello world", b"x"]


class TestSection10_4Limits:
    """max_size: "implementation-specific limits" on frame and message size."""

    def test_frame_at_limit(self) -> None:
        assert receive(server(max_size=5), MASKED_HELLO) == ["Hello"]

    def test_frame_too_big(self) -> None:
        protocol = server(max_size=4)
        assert receive(protocol, MASKED_HELLO) == []
        assert_failed(protocol, 1009, PayloadTooBig)
        message = str(protocol.parser_exc)
        assert "max_size=4" in message
        assert "larger max_size, or None" in message

    def test_frame_too_big_fails_on_the_header(self) -> None:
        # No need to buffer a huge frame to refuse it.
        protocol = client(max_size=65535)
        assert receive(protocol, BINARY_64K_HEADER) == []
        assert_failed(protocol, 1009, PayloadTooBig)

    def test_huge_length(self) -> None:
        protocol = client()
        assert receive(protocol, bytes.fromhex("827f7fffffffffffffff")) == []
        assert_failed(protocol, 1009, PayloadTooBig)

    def test_fragmented_message_at_limit(self) -> None:
        data = masked(0x1, b"Hel", fin=False) + masked(0x0, b"lo")
        assert receive(server(max_size=5), data) == ["Hello"]

    def test_fragmented_message_too_big(self) -> None:
        protocol = server(max_size=5)
        assert receive(protocol, masked(0x1, b"Hel", fin=False)) == []
        assert protocol.data_to_send() == []
        assert receive(protocol, masked(0x0, b"lo!")) == []
        assert_failed(protocol, 1009, PayloadTooBig)
        assert "at least 6 bytes" in str(protocol.parser_exc)

    def test_fragmented_text_too_big_fed_bytewise(self) -> None:
        protocol = server(max_size=5)
        data = masked(0x1, b"Hel", fin=False) + masked(0x0, b"lo!")
        assert receive_bytewise(protocol, data) == []
        assert_failed(protocol, 1009, PayloadTooBig)

    def test_limit_is_per_message(self) -> None:
        protocol = server(max_size=5)
        assert receive(protocol, MASKED_HELLO * 3) == ["Hello"] * 3

    def test_none_lifts_the_limit(self) -> None:
        payload = b"\x00" * (2**20 + 1)
        protocol = client()
        assert receive(protocol, frame(0x2, payload)) == []
        assert_failed(protocol, 1009, PayloadTooBig)
        assert receive(client(max_size=None), frame(0x2, payload)) == [payload]

    def test_default_limit_is_1_mib(self) -> None:
        assert server().max_size == 2**20
        payload = b"\x00" * 2**20
        assert receive(client(), frame(0x2, payload)) == [payload]

    def test_control_frames_dont_count(self) -> None:
        protocol = server(max_size=3)
        data = masked(0x1, b"He", fin=False) + masked(0x9, b"Hello") + masked(0x0, b"l")
        assert receive(protocol, data) == [Frame(Opcode.PING, b"Hello"), "Hel"]


class TestSection7_1_7FailTheConnection:
    def test_parser_exc_describes_the_error(self) -> None:
        protocol = server()
        receive(protocol, masked(0x3))
        assert isinstance(protocol.parser_exc, ProtocolError)
        assert "invalid opcode: 0x3" in str(protocol.parser_exc)

    def test_everything_after_failure_is_ignored(self) -> None:
        protocol = server()
        assert receive(protocol, masked(0x3) + MASKED_HELLO) == []
        protocol.data_to_send()
        assert receive(protocol, MASKED_HELLO + masked(0x9, b"x")) == []
        assert protocol.data_to_send() == []

    def test_events_before_the_error_are_kept(self) -> None:
        protocol = server()
        assert receive(protocol, MASKED_HELLO + masked(0x9, b"p") + masked(0x3)) == [
            "Hello",
            Frame(Opcode.PING, b"p"),
        ]
        [pong, close, eof] = protocol.data_to_send()
        assert pong == b"\x8a\x01p"
        assert close.startswith(b"\x88")
        assert eof == SEND_EOF

    def test_failure_while_closing_sends_no_second_close(self) -> None:
        protocol = server()
        protocol.send_close(1000)
        protocol.data_to_send()
        assert receive(protocol, UNMASKED_HELLO) == []
        assert protocol.data_to_send() == [SEND_EOF]
        assert protocol.state is CLOSING
        assert isinstance(protocol.parser_exc, ProtocolError)

    def test_client_failure_waits_for_server_eof(self) -> None:
        protocol = client()
        receive(protocol, MASKED_HELLO)
        assert not protocol.eof_sent
        protocol.receive_eof()
        assert protocol.data_to_send()[-1:] == [SEND_EOF]
        assert protocol.state is CLOSED
        assert protocol.close_code == CloseCode.ABNORMAL_CLOSURE
        assert isinstance(protocol.parser_exc, ProtocolError)

    def test_fail_with_1006_sends_no_close(self) -> None:
        protocol = server()
        protocol.fail(CloseCode.ABNORMAL_CLOSURE, "gone")
        assert protocol.data_to_send() == [SEND_EOF]
        assert protocol.state is CLOSING
        assert protocol.close_sent is None

    def test_fail_truncates_long_reason(self) -> None:
        protocol = server()
        protocol.fail(1011, "x" * 200)
        [close, _] = protocol.data_to_send()
        assert close[:2] == b"\x88\x7a"  # 2 + 120 bytes

    def test_fail_keeps_the_first_exception(self) -> None:
        protocol = server()
        protocol.parser_exc = exc = ValueError("first")
        protocol.fail(1011)
        assert protocol.parser_exc is exc


class TestSection7_1_5ClosedWithoutCloseFrame:
    @pytest.mark.parametrize("side", [SERVER, CLIENT])
    def test_eof_while_open(self, side: Side) -> None:
        protocol = Protocol(side)
        protocol.receive_eof()
        # "If _The WebSocket Connection is Closed_ and no Close control frame was
        # received by the endpoint ... _The WebSocket Connection Close Code_ is
        # considered to be 1006."
        assert protocol.state is CLOSED
        assert protocol.close_code == 1006
        assert protocol.close_reason == ""
        assert isinstance(protocol.parser_exc, EOFError)
        assert protocol.data_to_send() == [SEND_EOF]
        assert protocol.events_received() == []

    def test_eof_in_the_middle_of_a_frame(self) -> None:
        protocol = server()
        protocol.receive_data(MASKED_HELLO[:5])
        protocol.receive_eof()
        assert protocol.events_received() == []
        assert protocol.close_code == 1006

    def test_eof_twice(self) -> None:
        protocol = client()
        protocol.receive_eof()
        protocol.data_to_send()
        protocol.receive_eof()
        assert protocol.data_to_send() == []
        assert protocol.state is CLOSED

    def test_eof_after_failure_keeps_the_error(self) -> None:
        protocol = server()
        receive(protocol, UNMASKED_HELLO)
        protocol.data_to_send()
        protocol.receive_eof()
        assert protocol.data_to_send() == []
        assert isinstance(protocol.parser_exc, ProtocolError)

    def test_eof_while_closing(self) -> None:
        protocol = client()
        protocol.send_close(1000)
        protocol.data_to_send()
        protocol.receive_eof()
        assert protocol.data_to_send() == [SEND_EOF]
        assert protocol.state is CLOSED
        assert protocol.close_code == 1006
        assert protocol.parser_exc is None

    def test_send_eof_twice(self) -> None:
        protocol = server()
        protocol.send_eof()
        with pytest.raises(InvalidState, match="EOF"):
            protocol.send_eof()
        assert protocol.data_to_send() == [SEND_EOF]


SENDERS = [
    pytest.param(lambda p: p.send_text("x"), id="send_text"),
    pytest.param(lambda p: p.send_binary(b"x"), id="send_binary"),
    pytest.param(lambda p: p.send_continuation(b"x", fin=True), id="send_continuation"),
    pytest.param(lambda p: p.send_ping(b"x"), id="send_ping"),
    pytest.param(lambda p: p.send_pong(b"x"), id="send_pong"),
    pytest.param(lambda p: p.send_close(1000), id="send_close"),
]


class TestInvalidState:
    @pytest.mark.parametrize("send", SENDERS)
    def test_send_while_connecting(self, send: object) -> None:
        protocol = Protocol(SERVER, state=CONNECTING)
        with pytest.raises(InvalidState, match="CONNECTING"):
            send(protocol)  # type: ignore[operator]
        assert protocol.data_to_send() == []

    @pytest.mark.parametrize("send", SENDERS)
    def test_send_while_closing(self, send: object) -> None:
        protocol = client()
        protocol.send_text("a", fin=False)
        protocol.send_close(1000)
        protocol.data_to_send()
        with pytest.raises(InvalidState, match="CLOSING"):
            send(protocol)  # type: ignore[operator]
        assert protocol.data_to_send() == []

    @pytest.mark.parametrize("send", SENDERS)
    def test_send_when_closed(self, send: object) -> None:
        protocol = server()
        protocol.receive_eof()
        protocol.data_to_send()
        with pytest.raises(InvalidState, match="CLOSED"):
            send(protocol)  # type: ignore[operator]
        assert protocol.data_to_send() == []

    def test_invalid_state_is_an_assertion_error(self) -> None:
        protocol = server()
        protocol.send_close()
        with pytest.raises(AssertionError):
            protocol.send_text("x")


class TestState:
    def test_states(self) -> None:
        assert [int(s) for s in State] == [0, 1, 2, 3]
        assert tuple(State) == (CONNECTING, OPEN, CLOSING, CLOSED)
        assert (Side.SERVER, Side.CLIENT) == (SERVER, CLIENT)

    def test_initial_state(self) -> None:
        protocol = server()
        assert protocol.state is OPEN
        assert protocol.side is SERVER
        assert not protocol.close_expected()
        assert protocol.close_code is None
        assert protocol.close_reason is None
        assert protocol.close_rcvd is None
        assert protocol.close_sent is None
        assert protocol.close_rcvd_then_sent is None
        assert protocol.parser_exc is protocol.handshake_exc is None
        assert protocol.events_received() == []
        assert protocol.data_to_send() == []

    def test_events_and_writes_are_drained(self) -> None:
        protocol = server()
        receive(protocol, masked(0x9))
        assert protocol.events_received() == []
        assert protocol.data_to_send() == [b"\x8a\x00"]
        assert protocol.data_to_send() == []

    def test_state_changes_are_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="ws13.server")
        protocol = server()
        assert protocol.debug
        receive(protocol, MASKED_HELLO + masked(0x1, b"a", fin=False) + masked(0x0, b"b"))
        receive(protocol, masked(0x9, b"p"))
        protocol.send_ping(b"\x01")
        protocol.send_close(1000)
        protocol.receive_eof()
        messages = [record.getMessage() for record in caplog.records]
        assert "< TEXT 'Hello' [5 bytes]" in messages
        assert "< TEXT 'a' [1 bytes] [continued]" in messages
        assert "< CONT 62 [1 bytes]" in messages
        assert "< PING 70 [1 bytes]" in messages
        assert "> PONG 70 [1 bytes]" in messages
        assert "> PING 01 [1 bytes]" in messages
        assert "> CLOSE 1000 (OK) [2 bytes]" in messages
        assert "= connection is CLOSING" in messages
        assert "= connection is CLOSED" in messages
        assert all(record.name == "ws13.server" for record in caplog.records)

    def test_invalid_close_frame_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        # The frame is logged before it is checked; logging must not break on it.
        caplog.set_level(logging.DEBUG, logger="ws13.client")
        protocol = client()
        receive(protocol, frame(0x8, b"\x03\xe7"))
        assert "< CLOSE 03 e7 [2 bytes]" in [record.getMessage() for record in caplog.records]
        assert_failed(protocol, 1002)

    def test_custom_logger(self) -> None:
        logger = logging.getLogger("test.ws13.custom")
        assert server(logger=logger).logger is logger


# -- property tests: chunking never changes the result ---------------------------------

messages = st.lists(
    st.tuples(
        st.one_of(st.text(max_size=300), st.binary(max_size=300)),
        # Fragment boundaries, as fractions of the encoded length.
        st.lists(st.floats(min_value=0, max_value=1), max_size=4),
        # Whether to send a ping between fragments.
        st.booleans(),
    ),
    max_size=6,
)


@st.composite
def cut_points(draw: st.DrawFn, size: int) -> list[int]:
    cuts = draw(st.lists(st.integers(min_value=0, max_value=size), max_size=30))
    return sorted(set(cuts))


def encode_as_client(
    items: list[tuple[str | bytes, list[float], bool]],
) -> tuple[bytes, list[Event], list[bytes]]:
    """Serialize messages with a client Protocol; return bytes, expected events, pongs."""
    sender = client(max_size=None)
    events: list[Event] = []
    pongs: list[bytes] = []
    for n, (message, fractions, ping) in enumerate(items):
        encoded = message.encode() if isinstance(message, str) else message
        cuts = sorted({int(f * len(encoded)) for f in fractions})
        pieces = [encoded[i:j] for i, j in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
        for index, piece in enumerate(pieces):
            fin = index == len(pieces) - 1
            if index == 0:
                if isinstance(message, str):
                    sender.send_text(piece, fin=fin)
                else:
                    sender.send_binary(piece, fin=fin)
            else:
                sender.send_continuation(piece, fin=fin)
            if ping and not fin:
                payload = str(n).encode()
                sender.send_ping(payload)
                events.append(Frame(Opcode.PING, payload))
                pongs.append(b"\x8a" + bytes([len(payload)]) + payload)
        events.append(message)
    sender.send_close(1000)
    events.append(close_frame(1000))
    return b"".join(sender.data_to_send()), events, pongs


class TestChunking:
    @settings(deadline=None)
    @given(messages, st.data())
    def test_chunking_gives_the_same_events(
        self, items: list[tuple[str | bytes, list[float], bool]], data: st.DataObject
    ) -> None:
        wire, expected, pongs = encode_as_client(items)
        cuts = data.draw(cut_points(len(wire)))
        receiver = server()
        events = []
        for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            receiver.receive_data(wire[start:end])
            events.extend(receiver.events_received())
        assert events == expected
        assert receiver.data_to_send() == [*pongs, b"\x88\x02\x03\xe8", SEND_EOF]
        assert receiver.parser_exc is None

    @pytest.mark.parametrize("opcode", [0x1, 0x2])
    def test_large_frame_in_segments_completes_on_its_last_byte(self, opcode: int) -> None:
        # A 64 KiB frame in 1448-byte TCP segments (the reads a real network
        # gives), then a Ping whose first byte comes with the frame's last.
        payload = b"0123456789abcdef" * 4096
        frame_end = len(masked(opcode, payload))
        wire = masked(opcode, payload) + masked(0x9, b"hi")
        receiver = server(max_size=None)
        for start in range(0, frame_end - 1, 1448):
            assert receive(receiver, wire[start : min(start + 1448, frame_end - 1)]) == []
        message = payload.decode() if opcode == 0x1 else payload
        assert receive(receiver, wire[frame_end - 1 : frame_end + 1]) == [message]
        assert receive(receiver, wire[frame_end + 1 :]) == [Frame(Opcode.PING, b"hi")]
        assert sent_frames(receiver) == [Frame(Opcode.PONG, b"hi")]

    def test_bytewise_equals_one_chunk(self) -> None:
        wire = (
            FRAGMENT_HEL
            + UNMASKED_PING
            + FRAGMENT_LO
            + UNMASKED_HELLO
            + frame(0xA, b"Hello")
            + BINARY_256_HEADER
            + bytes(range(256))
            + frame(0x1, "κόσμε".encode(), fin=False)
            + frame(0x0, b"")
            + frame(0x8, close_payload(1000, "bye"))
        )
        whole = client()
        expected = receive(whole, wire)
        bytewise = client()
        assert receive_bytewise(bytewise, wire) == expected
        assert expected == [
            Frame(Opcode.PING, b"Hello"),
            "Hello",
            "Hello",
            Frame(Opcode.PONG, b"Hello"),
            bytes(range(256)),
            "κόσμε",
            close_frame(1000, "bye"),
        ]
        assert sent_frames(whole) == sent_frames(bytewise)


class TestFrameTracer:
    """``Protocol.tracer`` sees every frame on the wire (the frame inspector's feed)."""

    def test_both_directions_with_raw_headers(self) -> None:
        records: list[tuple[str, bool, bytes, bytes]] = []
        sender, receiver = client(), server()
        sender.tracer = lambda out, header, payload: records.append(("c", out, header, payload))
        receiver.tracer = lambda out, header, payload: records.append(("s", out, header, payload))
        sender.send_text("Hello")
        sender.send_binary(b"x" * 300)
        for data in sender.data_to_send():
            receiver.receive_data(data)
        receiver.send_text("Hi")
        assert [(side, out) for side, out, _, _ in records] == [
            ("c", True),
            ("c", True),
            ("s", False),
            ("s", False),
            ("s", True),
        ]
        # The client's headers carry MASK and the key; the server sees the same bytes.
        assert records[0][2] == records[2][2]
        assert records[0][2][:2] == b"\x81\x85"
        assert len(records[0][2]) == 6
        assert records[1][2][:4] == b"\x82\xfe\x01\x2c"  # 7+16-bit length: 300
        assert records[2][3] == b"Hello"  # unmasked
        assert records[4][2:] == (b"\x81\x02", b"Hi")

    def test_frame_split_across_reads_traced_once(self) -> None:
        records: list[bytes] = []
        receiver = server()
        receiver.tracer = lambda out, header, payload: records.append(payload)
        frame = masked(0x1, b"Hello")
        for i in range(len(frame)):
            receiver.receive_data(frame[i : i + 1])
        assert records == [b"Hello"]
        assert receiver.events_received() == ["Hello"]


class TestFreeIdleMemory:
    def test_without_extensions_it_changes_nothing(self) -> None:
        receiver = server()
        receiver.free_idle_memory()
        receiver.receive_data(masked(0x1, b"Hello"))
        assert receiver.events_received() == ["Hello"]

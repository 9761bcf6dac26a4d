"""Tests for ws13.frames: Frame, Close, Opcode, CloseCode and the header encoder."""

from __future__ import annotations

import pytest
from hypothesis import given
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
from ws13.exceptions import PayloadTooBig, ProtocolError
from ws13.frames import (
    CLOSE_CODE_EXPLANATIONS,
    Close,
    CloseCode,
    Frame,
    Opcode,
    encode_header,
    is_valid_close_code,
)


class TestSection5_2BaseFraming:
    def test_opcodes(self) -> None:
        assert [int(op) for op in Opcode] == [0x0, 0x1, 0x2, 0x8, 0x9, 0xA]
        assert Opcode.CONT.name == "CONT"

    @pytest.mark.parametrize("opcode", list(Opcode))
    def test_round_trip_every_opcode_unmasked(self, opcode: Opcode) -> None:
        frame = Frame(opcode, b"\x03\xe8" if opcode is Opcode.CLOSE else b"data")
        data = frame.serialize()
        assert data[0] == 0x80 | opcode
        assert Frame.parse(data, mask=False) == (frame, len(data))

    @pytest.mark.parametrize("opcode", list(Opcode))
    def test_round_trip_every_opcode_masked(self, opcode: Opcode) -> None:
        frame = Frame(opcode, b"\x03\xe8" if opcode is Opcode.CLOSE else b"data")
        data = frame.serialize(mask=MASK)
        assert data[1] & 0x80
        assert data[2:6] == MASK
        assert Frame.parse(data, mask=True) == (frame, len(data))

    @pytest.mark.parametrize(
        ("rsv1", "rsv2", "rsv3", "byte"),
        [
            (True, False, False, 0xC2),
            (False, True, False, 0xA2),
            (False, False, True, 0x92),
            (True, True, True, 0xF2),
        ],
    )
    def test_rsv_bits(self, rsv1: bool, rsv2: bool, rsv3: bool, byte: int) -> None:
        frame = Frame(Opcode.BINARY, b"x", rsv1=rsv1, rsv2=rsv2, rsv3=rsv3)
        data = frame.serialize()
        assert data[0] == byte
        # Whether RSV bits are allowed depends on extensions: Frame.parse reports them.
        assert Frame.parse(data, mask=False) == (frame, 3)

    def test_fin_bit(self) -> None:
        data = Frame(Opcode.TEXT, b"Hel", fin=False).serialize()
        assert data == FRAGMENT_HEL
        parsed = Frame.parse(data, mask=False)
        assert parsed is not None
        assert not parsed[0].fin

    @pytest.mark.parametrize(
        ("length", "header"),
        [
            (0, "8200"),
            (1, "8201"),
            (125, "827d"),
            (126, "827e007e"),
            (127, "827e007f"),
            (65535, "827effff"),
            (65536, "827f0000000000010000"),
            (2**32, "827f0000000100000000"),
        ],
    )
    def test_minimal_length_encoding(self, length: int, header: str) -> None:
        # "the minimal number of bytes MUST be used to encode the length"
        assert encode_header(0x82, length, None) == bytes.fromhex(header)
        masked = encode_header(0x82, length, MASK)
        expected = bytearray.fromhex(header)
        expected[1] |= 0x80
        assert masked == bytes(expected) + MASK

    @pytest.mark.parametrize(
        ("frame", "first_byte"),
        [
            (Frame(Opcode.TEXT, b""), 0x81),
            (Frame(Opcode.CONT, b"", fin=False), 0x00),
            (Frame(Opcode.BINARY, b"", rsv1=True), 0xC2),
            (Frame(Opcode.PING, b"", rsv2=True, rsv3=True), 0xB9),
        ],
    )
    def test_first_byte_is_fin_rsv_opcode(self, frame: Frame, first_byte: int) -> None:
        assert frame.first_byte == first_byte
        assert frame.serialize()[0] == first_byte

    @pytest.mark.parametrize("length", [125, 126, 65535, 65536])
    def test_serialize_length_boundaries(self, length: int) -> None:
        data = Frame(Opcode.BINARY, b"\x00" * length).serialize()
        header_size = 2 if length < 126 else 4 if length < 65536 else 10
        assert len(data) == header_size + length
        assert Frame.parse(data, mask=False) == (Frame(Opcode.BINARY, b"\x00" * length), len(data))

    def test_parse_needs_more_data(self) -> None:
        data = Frame(Opcode.BINARY, b"x" * 300).serialize(mask=MASK)
        for end in range(len(data)):
            assert Frame.parse(data[:end], mask=True) is None
        assert Frame.parse(data, mask=True) is not None

    def test_parse_needs_more_data_64_bit_length(self) -> None:
        data = Frame(Opcode.BINARY, b"x" * 65536).serialize()
        for end in [*range(14), 65545]:
            assert Frame.parse(data[:end], mask=False) is None
        assert Frame.parse(data, mask=False) is not None

    def test_parse_reports_bytes_used(self) -> None:
        assert Frame.parse(UNMASKED_HELLO + UNMASKED_PING, mask=False) == (
            Frame(Opcode.TEXT, b"Hello"),
            7,
        )

    def test_parse_accepts_bytearray(self) -> None:
        assert Frame.parse(bytearray(MASKED_HELLO), mask=True) == (
            Frame(Opcode.TEXT, b"Hello"),
            11,
        )

    def test_64_bit_length_with_top_bit_set(self) -> None:
        # "the most significant bit MUST be 0"
        data = bytes.fromhex("827f8000000000000000")
        with pytest.raises(ProtocolError, match="most significant bit"):
            Frame.parse(data, mask=False)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcodes(self, opcode: int) -> None:
        with pytest.raises(ProtocolError, match="invalid opcode"):
            Frame.parse(bytes([0x80 | opcode, 0]), mask=False)

    def test_unmasked_frame_where_masked_expected(self) -> None:
        with pytest.raises(ProtocolError, match="masking"):
            Frame.parse(UNMASKED_HELLO, mask=True)

    def test_masked_frame_where_unmasked_expected(self) -> None:
        with pytest.raises(ProtocolError, match="masking"):
            Frame.parse(MASKED_HELLO, mask=False)

    def test_max_size(self) -> None:
        assert Frame.parse(UNMASKED_HELLO, mask=False, max_size=5) is not None
        with pytest.raises(PayloadTooBig, match="max_size=4"):
            Frame.parse(UNMASKED_HELLO, mask=False, max_size=4)

    def test_max_size_checked_before_payload_arrives(self) -> None:
        with pytest.raises(PayloadTooBig):
            Frame.parse(BINARY_64K_HEADER, mask=False, max_size=65535)

    @given(
        st.sampled_from([Opcode.CONT, Opcode.TEXT, Opcode.BINARY]),
        st.binary(max_size=70000),
        st.booleans(),
        st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
    )
    def test_round_trip_property(
        self, opcode: Opcode, payload: bytes, fin: bool, mask: bytes | None
    ) -> None:
        frame = Frame(opcode, payload, fin)
        data = frame.serialize(mask=mask)
        assert Frame.parse(data, mask=mask is not None) == (frame, len(data))


class TestSection5_5ControlFrames:
    def test_control_frame_of_125_bytes(self) -> None:
        data = Frame(Opcode.PING, b"x" * 125).serialize()
        assert Frame.parse(data, mask=False) == (Frame(Opcode.PING, b"x" * 125), 127)

    @pytest.mark.parametrize("opcode", [Opcode.CLOSE, Opcode.PING, Opcode.PONG])
    def test_control_frame_too_long(self, opcode: Opcode) -> None:
        # "All control frames MUST have a payload length of 125 bytes or less"
        data = bytes([0x80 | opcode, 126, 0, 126]) + b"\x03\xe8" + b"x" * 124
        with pytest.raises(ProtocolError, match="control frame"):
            Frame.parse(data, mask=False)

    @pytest.mark.parametrize("opcode", [Opcode.CLOSE, Opcode.PING, Opcode.PONG])
    def test_fragmented_control_frame(self, opcode: Opcode) -> None:
        # "... and MUST NOT be fragmented."
        with pytest.raises(ProtocolError, match="fragmented"):
            Frame.parse(bytes([opcode, 0]), mask=False)


class TestSection5_7Examples:
    def test_single_frame_unmasked_text(self) -> None:
        assert Frame(Opcode.TEXT, b"Hello").serialize() == UNMASKED_HELLO
        assert Frame.parse(UNMASKED_HELLO, mask=False) == (Frame(Opcode.TEXT, b"Hello"), 7)

    def test_single_frame_masked_text(self) -> None:
        assert Frame(Opcode.TEXT, b"Hello").serialize(mask=MASK) == MASKED_HELLO
        assert Frame.parse(MASKED_HELLO, mask=True) == (Frame(Opcode.TEXT, b"Hello"), 11)

    def test_fragmented_unmasked_text(self) -> None:
        assert Frame(Opcode.TEXT, b"Hel", fin=False).serialize() == FRAGMENT_HEL
        assert Frame(Opcode.CONT, b"lo").serialize() == FRAGMENT_LO
        assert Frame.parse(FRAGMENT_HEL + FRAGMENT_LO, mask=False) == (
            Frame(Opcode.TEXT, b"Hel", fin=False),
            5,
        )
        assert Frame.parse(FRAGMENT_LO, mask=False) == (Frame(Opcode.CONT, b"lo"), 4)

    def test_unmasked_ping_and_masked_pong(self) -> None:
        assert Frame(Opcode.PING, b"Hello").serialize() == UNMASKED_PING
        assert Frame(Opcode.PONG, b"Hello").serialize(mask=MASK) == MASKED_PONG
        assert Frame.parse(UNMASKED_PING, mask=False) == (Frame(Opcode.PING, b"Hello"), 7)
        assert Frame.parse(MASKED_PONG, mask=True) == (Frame(Opcode.PONG, b"Hello"), 11)

    def test_256_bytes_binary_16_bit_length(self) -> None:
        payload = bytes(range(256))
        assert Frame(Opcode.BINARY, payload).serialize() == BINARY_256_HEADER + payload
        assert Frame.parse(BINARY_256_HEADER + payload, mask=False) == (
            Frame(Opcode.BINARY, payload),
            260,
        )

    def test_64k_binary_64_bit_length(self) -> None:
        payload = bytes(range(256)) * 256
        assert Frame(Opcode.BINARY, payload).serialize() == BINARY_64K_HEADER + payload
        assert Frame.parse(BINARY_64K_HEADER + payload, mask=False) == (
            Frame(Opcode.BINARY, payload),
            65546,
        )


class TestFrameStr:
    def test_text(self) -> None:
        assert str(Frame(Opcode.TEXT, b"Hello")) == "TEXT 'Hello' [5 bytes]"

    def test_text_invalid_utf8(self) -> None:
        assert str(Frame(Opcode.TEXT, b"\xff\xfe")) == "TEXT ff fe [2 bytes]"

    def test_continued(self) -> None:
        assert str(Frame(Opcode.TEXT, b"Hel", fin=False)) == "TEXT 'Hel' [3 bytes] [continued]"

    def test_binary(self) -> None:
        assert str(Frame(Opcode.BINARY, b"\x01\x02")) == "BINARY 01 02 [2 bytes]"

    def test_long_binary_is_truncated(self) -> None:
        text = str(Frame(Opcode.BINARY, b"\x00" * 100))
        assert text == "BINARY " + " ".join(["00"] * 75) + "... [100 bytes]"

    def test_ping(self) -> None:
        assert str(Frame(Opcode.PING, b"")) == "PING  [0 bytes]"

    def test_close(self) -> None:
        frame = Frame(Opcode.CLOSE, Close(1000, "bye").serialize())
        assert str(frame) == "CLOSE 1000 (OK) bye [5 bytes]"

    def test_close_empty(self) -> None:
        assert (
            str(Frame(Opcode.CLOSE, b"")) == "CLOSE 1005 (no status received [internal]) [0 bytes]"
        )

    def test_close_one_byte(self) -> None:
        assert str(Frame(Opcode.CLOSE, b"\x03")) == "CLOSE 03 [1 bytes]"

    @pytest.mark.parametrize("payload", [b"\x03\xe7", b"\x03\xe8\xff", b"\x00\x00"])
    def test_close_invalid_payload_does_not_raise(self, payload: bytes) -> None:
        # Frames are logged before they are checked: __str__ must never raise.
        assert (
            str(Frame(Opcode.CLOSE, payload)) == f"CLOSE {payload.hex(' ')} [{len(payload)} bytes]"
        )


class TestSection5_5_1Close:
    def test_empty_payload_is_1005(self) -> None:
        assert Close.parse(b"") == Close(CloseCode.NO_STATUS_RCVD, "")

    def test_code_only(self) -> None:
        assert Close.parse(b"\x03\xe8") == Close(1000, "")

    def test_code_and_reason(self) -> None:
        assert Close.parse(b"\x03\xe9caf\xc3\xa9") == Close(1001, "café")

    def test_one_byte_payload(self) -> None:
        with pytest.raises(ProtocolError, match="1 byte"):
            Close.parse(b"\x03")

    def test_invalid_utf8_reason(self) -> None:
        with pytest.raises(UnicodeDecodeError):
            Close.parse(b"\x03\xe8\xff")

    def test_serialize(self) -> None:
        assert Close(1000, "").serialize() == b"\x03\xe8"
        assert Close(1001, "café").serialize() == b"\x03\xe9caf\xc3\xa9"
        assert Close(4999, "x").serialize() == b"\x13\x87x"

    def test_serialize_1005_is_empty(self) -> None:
        assert Close(CloseCode.NO_STATUS_RCVD, "").serialize() == b""

    @pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4999])
    def test_round_trip(self, code: int) -> None:
        close = Close(code, "reason")
        assert Close.parse(close.serialize()) == close

    @pytest.mark.parametrize(
        ("close", "text"),
        [
            (Close(1000, ""), "1000 (OK)"),
            (Close(1001, "bye"), "1001 (going away) bye"),
            (Close(1005, ""), "1005 (no status received [internal])"),
            (Close(3000, ""), "3000 (registered)"),
            (Close(4000, "x"), "4000 (private use) x"),
            (Close(2000, ""), "2000 (unknown)"),
        ],
    )
    def test_str(self, close: Close, text: str) -> None:
        assert str(close) == text


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]


class TestSection7_4StatusCodes:
    def test_close_code_values(self) -> None:
        assert CloseCode.NORMAL_CLOSURE == 1000
        assert CloseCode.PROTOCOL_ERROR == 1002
        assert CloseCode.NO_STATUS_RCVD == 1005
        assert CloseCode.ABNORMAL_CLOSURE == 1006
        assert CloseCode.INVALID_DATA == 1007
        assert CloseCode.MESSAGE_TOO_BIG == 1009
        assert CloseCode.INTERNAL_ERROR == 1011
        assert CloseCode.TLS_HANDSHAKE == 1015

    def test_every_close_code_is_explained(self) -> None:
        assert set(CLOSE_CODE_EXPLANATIONS) == {int(code) for code in CloseCode}

    @pytest.mark.parametrize("code", VALID_CODES)
    def test_valid_codes(self, code: int) -> None:
        assert is_valid_close_code(code)
        assert Close.parse(code.to_bytes(2, "big")) == Close(code, "")

    @pytest.mark.parametrize("code", INVALID_CODES)
    def test_invalid_codes(self, code: int) -> None:
        assert not is_valid_close_code(code)
        with pytest.raises(ProtocolError, match="invalid close code"):
            Close.parse(code.to_bytes(2, "big"))

    def test_whole_range(self) -> None:
        valid = {code for code in range(65536) if is_valid_close_code(code)}
        assert valid == set(VALID_CODES[:-2]) | set(range(3000, 5000))

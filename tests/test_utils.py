"""Tests for ws13.utils (and the ws13._accel selector): keys, masking, UTF-8."""

from __future__ import annotations

import base64
import itertools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ws13 import utils
from ws13.utils import MaskKeys, accept_key, generate_key

try:
    from ws13._speedups import MaskKeys as c_mask_keys
    from ws13._speedups import apply_mask as c_apply_mask
    from ws13._speedups import encode_text as c_encode_text
    from ws13._speedups import utf8_check as c_utf8_check
except ImportError:  # built without a C compiler: only the pure-Python tests run
    c_apply_mask = c_utf8_check = c_encode_text = c_mask_keys = None


def reference_mask(data: bytes, mask: bytes) -> bytes:
    """RFC 6455 section 5.3, literally: j = i MOD 4; transformed-octet-i = original-octet-i XOR
    masking-key-octet-j."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class TestSection1_3AcceptKey:
    def test_rfc_vector(self) -> None:
        # RFC 6455 section 1.3.
        assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def test_rfc_6455_section_4_2_2_guid(self) -> None:
        assert utils.GUID == b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class TestSection4_1Nonce:
    def test_key_is_16_random_bytes_base64(self) -> None:
        key = generate_key()
        assert len(base64.b64decode(key, validate=True)) == 16
        assert len(key) == 24

    def test_key_is_fresh(self) -> None:
        # "The nonce MUST be selected randomly for each connection."
        assert len({generate_key() for _ in range(20)}) == 20


class TestSection5_3Masking:
    """apply_mask; the subclass below runs the same tests on the C twin."""

    apply_mask = staticmethod(utils.apply_mask)

    def test_rfc_5_7_masked_hello(self) -> None:
        mask = bytes.fromhex("37fa213d")
        assert self.apply_mask(bytes.fromhex("7f9f4d5158"), mask) == b"Hello"
        assert self.apply_mask(b"Hello", mask) == bytes.fromhex("7f9f4d5158")

    def test_empty(self) -> None:
        assert self.apply_mask(b"", b"abcd") == b""

    @pytest.mark.parametrize("length", [*range(20), 63, 64, 65, 127, 4096, 4099, 65537])
    def test_lengths(self, length: int) -> None:
        data = os.urandom(length)
        mask = os.urandom(4)
        result = self.apply_mask(data, mask)
        assert type(result) is bytes
        assert result == reference_mask(data, mask)

    def test_involution(self) -> None:
        data = os.urandom(1000)
        mask = os.urandom(4)
        assert self.apply_mask(self.apply_mask(data, mask), mask) == data

    def test_zero_mask_is_identity(self) -> None:
        assert self.apply_mask(b"payload", b"\x00\x00\x00\x00") == b"payload"

    def test_leading_zero_bytes_kept(self) -> None:
        # The pure-Python version goes through int.from_bytes: zeros must survive.
        assert self.apply_mask(b"\x00" * 9, b"\x00\x00\x00\x00") == b"\x00" * 9
        assert self.apply_mask(b"abcd", b"abcd") == b"\x00" * 4

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_bytes_like_data(self, kind: type) -> None:
        data = bytes(range(11))
        mask = b"\x01\x02\x03\x04"
        assert self.apply_mask(kind(data), mask) == reference_mask(data, mask)

    def test_bytearray_mask(self) -> None:
        assert self.apply_mask(b"abcdef", bytearray(b"\x01\x02\x03\x04")) == reference_mask(
            b"abcdef", b"\x01\x02\x03\x04"
        )

    def test_memoryview_slice(self) -> None:
        view = memoryview(b"xxHelloxx")[2:7]
        mask = bytes.fromhex("37fa213d")
        assert self.apply_mask(view, mask) == bytes.fromhex("7f9f4d5158")

    @pytest.mark.parametrize("mask", [b"", b"abc", b"abcde"])
    def test_mask_must_be_4_bytes(self, mask: bytes) -> None:
        with pytest.raises(ValueError, match="4 bytes"):
            self.apply_mask(b"data", mask)

    # The subclass runs this test with another apply_mask on purpose.
    @settings(suppress_health_check=[HealthCheck.differing_executors])
    @given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
    def test_matches_reference(self, data: bytes, mask: bytes) -> None:
        assert self.apply_mask(data, mask) == reference_mask(data, mask)


if c_apply_mask is not None:

    class TestSection5_3MaskingSpeedups(TestSection5_3Masking):
        apply_mask = staticmethod(c_apply_mask)


class TestSection5_3MaskKeys:
    MaskKeys: Any = MaskKeys

    def test_keys_are_4_bytes(self) -> None:
        keys = self.MaskKeys()
        keys_ = [keys.next() for _ in range(3000)]
        assert all(type(key) is bytes and len(key) == 4 for key in keys_)

    def test_keys_are_fresh_across_pool_refills(self) -> None:
        keys = self.MaskKeys()
        # 2048 keys span two 4 KiB pools; 32-bit collisions are vanishingly rare.
        values = [keys.next() for _ in range(2048)]
        assert len(set(values)) > 2040
        assert values[0] != values[1024]

    def test_independent_instances(self) -> None:
        assert self.MaskKeys().next() != self.MaskKeys().next()

    def test_keys_come_from_os_urandom(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The pool is read from os.urandom when the first key is asked for.
        monkeypatch.setattr(os, "urandom", lambda n: bytes(range(4)) * (n // 4))
        keys = self.MaskKeys()
        assert keys.next() == b"\x00\x01\x02\x03"

    def test_takes_no_arguments(self) -> None:
        with pytest.raises(TypeError):
            self.MaskKeys(4)


if c_mask_keys is not None:

    class TestSection5_3MaskKeysSpeedups(TestSection5_3MaskKeys):
        MaskKeys = c_mask_keys


# RFC 3629 section 4: the valid byte sequences, at the edges of their ranges.
VALID_UTF8 = [
    "",
    "ascii only",
    "\x7f\x80",
    "\u07ff\u0800",
    "\ud7ff\ue000",
    "\uffff\U00010000",
    "\U0010ffff",
    "caf\u00e9 \u20ac \U0001f600 " * 20,
]

# Invalid sequences, each cut just after the byte that makes it invalid: a
# validator must fail there, before any later byte arrives.
INVALID_UTF8 = [
    b"\x80",  # a continuation byte with no lead byte
    b"\xbf",
    b"\xc0",  # C0, C1: only overlong two-byte forms
    b"\xc1",
    b"\xf5",  # F5-FF: beyond U+10FFFF or never used
    b"\xff",
    b"\xc3\x41",  # a lead byte followed by ASCII
    b"\xe0\x80",  # overlong three-byte form
    b"\xe0\x9f",
    b"\xed\xa0",  # UTF-16 surrogates D800-DFFF
    b"\xed\xbf",
    b"\xf0\x80",  # overlong four-byte form
    b"\xf0\x8f",
    b"\xf4\x90",  # above U+10FFFF
    b"\xe2\x82\x41",  # third byte not a continuation
    b"\xf0\x90\x80\xc0",
]


def first_bad_byte(data: bytes) -> int | None:
    """The index of the byte where ``data`` stops being a prefix of valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            return None
        return exc.end if exc.reason == "invalid continuation byte" else exc.start
    return None


class TestRFC3629Utf8Check:
    utf8_check = staticmethod(utils.utf8_check)

    def feed(self, pieces: list[bytes]) -> list[int]:
        states, state = [], 0
        for piece in pieces:
            state = self.utf8_check(piece, state)
            states.append(state)
            if state < 0:
                break
        return states

    @pytest.mark.parametrize("text", VALID_UTF8)
    def test_valid(self, text: str) -> None:
        assert self.utf8_check(text.encode()) == 0

    @pytest.mark.parametrize("text", VALID_UTF8)
    def test_valid_split_anywhere(self, text: str) -> None:
        data = text.encode()
        for cut in range(len(data) + 1):
            assert self.feed([data[:cut], data[cut:]])[-1] == 0
        assert self.feed([bytes((b,)) for b in data])[-1:] in ([], [0])

    @pytest.mark.parametrize("data", INVALID_UTF8)
    def test_invalid_fails_at_the_bad_byte(self, data: bytes) -> None:
        assert self.utf8_check(data) == -1
        assert self.utf8_check(b"ok " + data + b" more") == -1
        # Byte by byte: valid (maybe incomplete) until the last byte, then -1.
        states = self.feed([bytes((b,)) for b in data])
        assert states[-1] == -1
        assert len(states) == len(data)

    @pytest.mark.parametrize("char", ["\u00e9", "\u20ac", "\U0001f600"])
    def test_incomplete_character(self, char: str) -> None:
        data = char.encode()
        state = self.utf8_check(b"abc" + data[:-1])
        assert state > 0
        assert state & 0xFF == len(data) - 1
        assert self.utf8_check(data[-1:], state) == 0
        assert self.utf8_check(b"x", state) == -1

    def test_bytes_like(self) -> None:
        data = "\u20ac".encode()
        assert self.utf8_check(bytearray(data)) == 0
        assert self.utf8_check(memoryview(b"x" + data)[1:]) == 0

    @pytest.mark.parametrize("state", [-1, 5, 0x300, 0x4101, 0xC3 << 8 | 2, 1 << 40])
    def test_state_must_be_one_it_returns(self, state: int) -> None:
        with pytest.raises(ValueError, match="invalid UTF-8 state"):
            self.utf8_check(b"", state)

    def test_state_is_positional(self) -> None:
        # As in the C twin, which takes no keyword arguments.
        with pytest.raises(TypeError):
            self.utf8_check(b"", state=0)  # type: ignore[misc]

    # The subclass runs this test with another utf8_check on purpose.
    @settings(suppress_health_check=[HealthCheck.differing_executors])
    @given(
        st.one_of(
            st.binary(max_size=64),
            st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
        ),
        st.lists(st.integers(min_value=0, max_value=64), max_size=4),
    )
    def test_matches_python_decoder(self, data: bytes, cuts: list[int]) -> None:
        bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
        pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
        states = self.feed(pieces)
        bad = first_bad_byte(data)
        if bad is None:
            valid = states[-1:] in ([], [0])
            assert valid == (data.decode("utf-8", "ignore").encode() == data)
        else:
            # The piece that holds the first bad byte is the one that fails.
            failed = len(states) - 1
            assert states[-1] == -1
            assert bounds[failed] <= bad < bounds[failed + 1]


if c_utf8_check is not None:

    class TestRFC3629Utf8CheckSpeedups(TestRFC3629Utf8Check):
        utf8_check = staticmethod(c_utf8_check)

        @settings(suppress_health_check=[HealthCheck.differing_executors])
        @given(st.binary(max_size=64), st.integers(min_value=0, max_value=64))
        def test_same_states_as_python(self, data: bytes, cut: int) -> None:
            first = utils.utf8_check(data[:cut])
            assert c_utf8_check(data[:cut]) == first
            if first >= 0:
                assert c_utf8_check(data[cut:], first) == utils.utf8_check(data[cut:], first)

        def test_long_input_releases_the_gil(self) -> None:
            # Past 256 KiB the scan runs without the GIL; same result.
            data = ("x" * 99 + "\u20ac").encode() * 3000
            assert c_utf8_check(data) == 0
            assert c_utf8_check(data + b"\xff") == -1

        def test_arguments(self) -> None:
            with pytest.raises(TypeError):
                c_utf8_check("text")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="1 or 2 arguments"):
                c_utf8_check()  # type: ignore[call-arg]
            with pytest.raises(TypeError, match="no keyword arguments"):
                c_utf8_check(b"", state=0)  # type: ignore[call-arg]


# Latin-1 texts around the C loop's 16-character blocks: all ASCII, one
# character above U+007F at each place in and between blocks, all above.
ENCODE_TEXTS = [
    "",
    "plain ASCII",
    "x" * 16,
    "x" * 15 + "\u00e9",
    "\u00e9" + "x" * 16,
    "x" * 16 + "\u00ff" + "y" * 16,
    "\u0080" * 33,
    '{"tags": ["a", "b", "\u00fcn\u00efcode"]}' * 30,
    "\u00a0\u00df\u00e7" * 7,
    "caf\u00e9 \u20ac",  # beyond Latin-1: CPython's encoder
    "\u65e5\u672c\u8a9e",
    "emoji \U0001f600",
]


class TestRFC3629Section3EncodeText:
    """UTF-8 of a text message's str, as ``str.encode`` makes it."""

    encode_text = staticmethod(utils.encode_text)

    @pytest.mark.parametrize("text", ENCODE_TEXTS)
    def test_same_bytes_as_str_encode(self, text: str) -> None:
        assert self.encode_text(text) == text.encode("utf-8")

    @settings(suppress_health_check=[HealthCheck.differing_executors])
    @given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=80))
    def test_any_latin1_text(self, text: str) -> None:
        assert self.encode_text(text) == text.encode("utf-8")

    def test_lone_surrogate_is_an_error(self) -> None:
        with pytest.raises(UnicodeEncodeError, match="surrogates not allowed"):
            self.encode_text("a\ud800b")

    def test_only_str(self) -> None:
        with pytest.raises(TypeError):
            self.encode_text(b"bytes")  # type: ignore[arg-type]


if c_encode_text is not None:

    class TestRFC3629Section3EncodeTextSpeedups(TestRFC3629Section3EncodeText):
        encode_text = staticmethod(c_encode_text)

        def test_str_subclass(self) -> None:
            class Text(str):
                pass

            assert c_encode_text(Text("\u00e9t\u00e9")) == "\u00e9t\u00e9".encode()


class TestPayloadBuffer:
    """A large frame's payload unmasked read by read (RFC 6455 section 5.3)."""

    PayloadBuffer: Any = utils.PayloadBuffer

    @pytest.mark.parametrize("mask", [b"", b"\x37\xfa\x21\x3d"])
    def test_pieces_of_every_alignment_unmask_to_the_payload(self, mask: bytes) -> None:
        # Every piece starts at another offset modulo 4: the key must rotate.
        payload = os.urandom(1000)
        wire = reference_mask(payload, mask) if mask else payload
        buffer = self.PayloadBuffer(len(payload), mask)
        pos = 0
        for size in itertools.cycle([1, 2, 3, 5, 7, 64, 333]):
            assert buffer.remaining == len(payload) - pos
            if pos == len(wire):
                break
            # Each piece comes after 3 bytes of something else.
            end = min(pos + size, len(wire))
            assert buffer.feed(b"xyz" + wire[pos:end], 3) == 3 + end - pos
            pos = end
        assert buffer.take() == payload

    def test_feed_stops_at_the_payload_end(self) -> None:
        # What follows the payload in a read is the next frame's: not taken.
        buffer = self.PayloadBuffer(5, b"")
        assert buffer.feed(b"hel", 0) == 3
        assert buffer.feed(bytearray(b"lo, next frame"), 0) == 2
        assert buffer.remaining == 0
        assert buffer.feed(b"more", 1) == 1
        assert buffer.take() == b"hello"

    def test_takes_any_bytes_like(self) -> None:
        buffer = self.PayloadBuffer(6, b"\x00\x00\x00\x00")
        buffer.feed(b"ab", 0)
        buffer.feed(bytearray(b"cd"), 0)
        buffer.feed(memoryview(b"_ef")[1:], 0)
        assert buffer.take() == b"abcdef"

    def test_take_returns_bytes_once_complete_and_only_once(self) -> None:
        buffer = self.PayloadBuffer(4, b"")
        buffer.feed(b"abc", 0)
        with pytest.raises(ValueError, match="payload incomplete: 3 of 4 bytes"):
            buffer.take()
        buffer.feed(b"d", 0)
        taken = buffer.take()
        assert type(taken) is bytes
        assert taken == b"abcd"
        for call in (buffer.take, lambda: buffer.feed(b"x", 0), lambda: buffer.check_utf8(0)):
            with pytest.raises(ValueError, match="payload already taken"):
                call()

    def test_empty_payload(self) -> None:
        buffer = self.PayloadBuffer(0, b"\x01\x02\x03\x04")
        assert buffer.remaining == 0
        assert buffer.feed(b"abc", 1) == 1
        assert buffer.take() == b""

    @pytest.mark.parametrize("split", range(1, 8))
    def test_check_utf8_resumes_across_feeds(self, split: int) -> None:
        # A 4-byte character cut anywhere: each check sees only the new bytes.
        encoded = "a🌍€b".encode()
        mask = b"\x01\x02\x03\x04"
        wire = reference_mask(encoded, mask)
        buffer = self.PayloadBuffer(len(encoded), mask)
        buffer.feed(wire[:split], 0)
        state = buffer.check_utf8(0)
        assert state >= 0
        buffer.feed(wire[split:], 0)
        assert buffer.check_utf8(state) == 0
        assert buffer.check_utf8(0) == 0  # nothing new to check
        assert buffer.take() == encoded

    def test_check_utf8_fails_at_the_first_invalid_byte(self) -> None:
        buffer = self.PayloadBuffer(10, b"")
        buffer.feed(b"ok\xff", 0)
        assert buffer.check_utf8(0) == -1

    def test_check_utf8_rejects_a_state_it_cannot_have_returned(self) -> None:
        buffer = self.PayloadBuffer(10, b"")
        buffer.feed(b"ok", 0)
        for state in (-1, 0xFF, 2**70):
            with pytest.raises(ValueError, match="invalid UTF-8 state"):
                buffer.check_utf8(state)

    @pytest.mark.parametrize("mask", [b"", b"\x37\xfa\x21\x3d"])
    def test_receive_buffer_then_written(self, mask: bytes) -> None:
        # A transport reads into receive_buffer(); written() unmasks in place.
        payload = os.urandom(1001)
        wire = reference_mask(payload, mask) if mask else payload
        buffer = self.PayloadBuffer(len(payload), mask)
        assert buffer.feed(wire[:3], 0) == 3
        pos = 3
        for size in itertools.cycle([1, 2, 3, 5, 7, 64, 333]):
            if pos == len(wire):
                break
            view = buffer.receive_buffer()
            assert 0 < len(view) <= buffer.remaining
            piece = wire[pos : pos + min(size, len(view))]
            view[: len(piece)] = piece
            view.release()
            buffer.written(len(piece))
            pos += len(piece)
        assert buffer.remaining == 0
        assert buffer.take() == payload

    def test_written_out_of_range(self) -> None:
        buffer = self.PayloadBuffer(10, b"")
        buffer.receive_buffer().release()
        for nbytes in (-1, 11):
            with pytest.raises(ValueError, match="nbytes out of range"):
                buffer.written(nbytes)
        assert buffer.remaining == 10

    def test_no_receive_buffer_once_taken(self) -> None:
        buffer = self.PayloadBuffer(0, b"")
        buffer.take()
        with pytest.raises((ValueError, BufferError), match="payload already taken"):
            buffer.receive_buffer()

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            ((4, b"abc"), "mask must contain 0 or 4 bytes"),
            ((4, b"abcde"), "mask must contain 0 or 4 bytes"),
            ((-1, b""), "size must be >= 0"),
        ],
    )
    def test_bad_arguments(self, args: tuple[int, bytes], error: str) -> None:
        with pytest.raises(ValueError, match=error):
            self.PayloadBuffer(*args)

    @pytest.mark.parametrize("start", [-1, 4])
    def test_start_out_of_range(self, start: int) -> None:
        buffer = self.PayloadBuffer(10, b"")
        with pytest.raises(ValueError, match="start out of range"):
            buffer.feed(b"abc", start)
        assert buffer.remaining == 10


if c_mask_keys is not None:
    from ws13._speedups import PayloadBuffer as c_payload_buffer

    class TestPayloadBufferSpeedups(TestPayloadBuffer):
        PayloadBuffer = c_payload_buffer

"""Tests for ws13.utils (and the ws13._accel selector): keys and masking."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ws13 import utils
from ws13.utils import MaskKeys, accept_key, generate_key

try:
    from ws13._speedups import apply_mask as c_apply_mask
except ImportError:  # built without a C compiler: only the pure-Python tests run
    c_apply_mask = None


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
    def test_keys_are_4_bytes(self) -> None:
        keys = MaskKeys()
        assert all(len(keys.next()) == 4 for _ in range(3000))

    def test_keys_are_fresh_across_pool_refills(self) -> None:
        keys = MaskKeys()
        # 2048 keys span two 4 KiB pools; 32-bit collisions are vanishingly rare.
        values = [keys.next() for _ in range(2048)]
        assert len(set(values)) > 2040
        assert values[0] != values[1024]

    def test_independent_instances(self) -> None:
        assert MaskKeys().next() != MaskKeys().next()

"""Tests for the frame dissector, ``ws13.cli.trace``: bytes in, fields out."""

from __future__ import annotations

import unittest
import zlib
from typing import Any

from ws13.cli.trace import (
    PREVIEW,
    Dissector,
    escape,
    format_frame,
    format_frame_line,
    format_handshake,
    handshake_record,
    hexdump,
)
from ws13.frames import encode_header
from ws13.headers import Headers
from ws13.http11 import Request, Response

MASK = bytes.fromhex("37fa213d")


def deflate(compressor: Any, data: bytes) -> bytes:
    """Compress one message as permessage-deflate does (RFC 7692 section 7.2.1)."""
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class DissectorTests(unittest.TestCase):
    def test_masked_text_frame(self) -> None:
        # RFC 6455 section 5.7: a masked "Hello" from a client.
        header = encode_header(0x81, 5, MASK)
        record = Dissector().frame(True, header, b"Hello")
        self.assertEqual(header.hex(), "818537fa213d")
        self.assertEqual(
            {k: record[k] for k in ("type", "from", "fin", "rsv1", "rsv2", "rsv3", "opcode")},
            {
                "type": "frame",
                "from": "client",
                "fin": True,
                "rsv1": False,
                "rsv2": False,
                "rsv3": False,
                "opcode": 1,
            },
        )
        self.assertEqual(record["opcode_name"], "TEXT")
        self.assertEqual((record["mask"], record["masking_key"]), (True, "37fa213d"))
        self.assertEqual((record["length"], record["length_encoding"]), (5, "7"))
        self.assertEqual(record["length_code"], 5)
        self.assertEqual(record["payload_hex"], b"Hello".hex())
        self.assertEqual(record["payload_text"], "Hello")
        self.assertFalse(record["truncated"])
        self.assertNotIn("inflated_length", record)

    def test_unmasked_server_frame(self) -> None:
        record = Dissector().frame(False, encode_header(0x82, 3, None), b"\x00\x01\xff")
        self.assertEqual(record["from"], "server")
        self.assertEqual((record["mask"], record["masking_key"]), (False, None))
        self.assertEqual(record["opcode_name"], "BINARY")
        self.assertIsNone(record["payload_text"])

    def test_length_encodings(self) -> None:
        for length, encoding, code in [
            (0, "7", 0),
            (125, "7", 125),
            (126, "7+16", 126),
            (65535, "7+16", 126),
            (65536, "7+64", 127),
        ]:
            with self.subTest(length=length):
                payload = b"a" * length
                record = Dissector().frame(True, encode_header(0x81, length, MASK), payload)
                self.assertEqual(record["length"], length)
                self.assertEqual(record["length_encoding"], encoding)
                self.assertEqual(record["length_code"], code)
                self.assertEqual(record["truncated"], length > PREVIEW)
                self.assertEqual(len(record["payload_hex"]), 2 * min(length, PREVIEW))

    def test_control_frames(self) -> None:
        record = Dissector().frame(False, encode_header(0x88, 6, None), b"\x0f\xa0bye!")
        self.assertEqual((record["opcode_name"], record["close_code"]), ("CLOSE", 4000))
        self.assertEqual(record["close_reason"], "bye!")
        self.assertIsNone(record["payload_text"])
        bad = Dissector().frame(False, encode_header(0x88, 1, None), b"\x03")
        self.assertNotIn("close_code", bad)
        ping = Dissector().frame(True, encode_header(0x89, 2, MASK), b"hi")
        self.assertEqual((ping["opcode_name"], ping["payload_text"]), ("PING", "hi"))
        reserved = Dissector().frame(False, encode_header(0x83, 0, None), b"")
        self.assertEqual(reserved["opcode_name"], "RESERVED")

    def test_text_preview_cut_inside_a_character(self) -> None:
        payload = "é" * PREVIEW  # 2 bytes each: the preview ends on a boundary
        data = ("a" + payload).encode()
        record = Dissector().frame(False, encode_header(0x81, len(data), None), data)
        self.assertEqual(record["payload_text"], "a" + "é" * ((PREVIEW - 1) // 2))
        invalid = Dissector().frame(False, encode_header(0x81, 2, None), b"\xff\xfe")
        self.assertIsNone(invalid["payload_text"])

    def test_compressed_messages_are_inflated(self) -> None:
        compressor = zlib.compressobj(wbits=-12)
        dissector = Dissector()
        for text in ["Hello, ws13! " * 20, "Hello again, ws13! " * 20]:
            data = deflate(compressor, text.encode())
            record = dissector.frame(False, encode_header(0xC1, len(data), None), data)
            self.assertTrue(record["rsv1"])
            self.assertEqual(record["length"], len(data))
            self.assertEqual(record["inflated_length"], len(text))
            self.assertEqual(record["inflated_text"], text[:PREVIEW])
        # Frames after a compressed message aren't inflated.
        plain = dissector.frame(False, encode_header(0x81, 2, None), b"hi")
        self.assertNotIn("inflated_length", plain)

    def test_compressed_fragments(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        first = compressor.compress(b"frag") + compressor.flush(zlib.Z_SYNC_FLUSH)
        last = deflate(compressor, b"mented")
        dissector = Dissector()
        one = dissector.frame(True, encode_header(0x41, len(first), MASK), first)
        two = dissector.frame(True, encode_header(0x80, len(last), MASK), last)
        self.assertEqual((one["rsv1"], one["fin"], one["inflated_text"]), (True, False, "frag"))
        self.assertEqual((two["rsv1"], two["opcode_name"]), (False, "CONT"))
        self.assertEqual(two["inflated_text"], "mented")

    def test_each_direction_has_its_own_inflater(self) -> None:
        client, server = zlib.compressobj(wbits=-15), zlib.compressobj(wbits=-15)
        dissector = Dissector()
        for text in ["one", "two"]:
            for sender, compressor in [(True, client), (False, server)]:
                data = deflate(compressor, (text * 50).encode())
                record = dissector.frame(sender, encode_header(0xC2, len(data), None), data)
                self.assertEqual(bytes.fromhex(record["inflated_hex"]), (text * 50).encode())

    def test_bad_deflate_data(self) -> None:
        dissector = Dissector()
        record = dissector.frame(False, encode_header(0xC1, 4, None), b"\xff\xff\xff\xff")
        self.assertIn("cannot inflate", record["inflated_error"])
        # That direction stays marked, the other one still works.
        again = dissector.frame(False, encode_header(0xC1, 1, None), b"\x00")
        self.assertIn("inflated_error", again)
        data = deflate(zlib.compressobj(wbits=-15), b"fine")
        other = dissector.frame(True, encode_header(0xC1, len(data), MASK), data)
        self.assertEqual(other["inflated_text"], "fine")

    def test_skipped_compressed_frame_stops_inflating(self) -> None:
        compressor = zlib.compressobj(wbits=-15)
        dissector = Dissector()
        first = deflate(compressor, b"one " * 50)
        dissector.skip(False, encode_header(0xC1, len(first), None))
        # Uncompressed and control frames skipped change nothing.
        dissector.skip(False, encode_header(0x89, 0, None))
        second = deflate(compressor, b"two " * 50)
        record = dissector.frame(False, encode_header(0xC1, len(second), None), second)
        self.assertIn("cannot inflate", record["inflated_error"])
        # The other direction still inflates.
        data = deflate(zlib.compressobj(wbits=-15), b"fine")
        dissector.skip(True, encode_header(0x81, 2, MASK))
        other = dissector.frame(True, encode_header(0xC1, len(data), MASK), data)
        self.assertEqual(other["inflated_text"], "fine")


class HandshakeTests(unittest.TestCase):
    def test_accept_computed(self) -> None:
        # RFC 6455 section 1.3's example.
        request = Request(
            "/chat", Headers([("Host", "server.example.com"), ("Sec-WebSocket-Key", KEY)])
        )
        response = Response(101, "Switching Protocols", Headers([("Sec-WebSocket-Accept", ACCEPT)]))
        record = handshake_record(request, response)
        self.assertEqual(record["request"]["line"], "GET /chat HTTP/1.1")
        self.assertEqual(record["request"]["headers"][0], ["Host", "server.example.com"])
        self.assertEqual(record["response"]["line"], "HTTP/1.1 101 Switching Protocols")
        self.assertEqual((record["accept_expected"], record["accept_ok"]), (ACCEPT, True))
        text = format_handshake(record)
        self.assertIn("> GET /chat HTTP/1.1", text)
        self.assertIn("< HTTP/1.1 101 Switching Protocols", text)
        self.assertIn(
            f"= Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) = {ACCEPT} (matches)", text
        )

    def test_accept_mismatch_and_missing_parts(self) -> None:
        request = Request("/", Headers([("Sec-WebSocket-Key", KEY)]))
        response = Response(101, "Switching Protocols", Headers([("Sec-WebSocket-Accept", "x")]))
        self.assertIn("(MISMATCH)", format_handshake(handshake_record(request, response)))
        self.assertFalse(handshake_record(request, response)["accept_ok"])
        self.assertNotIn("accept_ok", handshake_record(request, None))
        self.assertEqual(handshake_record(None, None), {"type": "handshake"})


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class FormatTests(unittest.TestCase):
    def test_escape(self) -> None:
        self.assertEqual(escape("red \x1b[31m bell \x07"), "red \\x1b[31m bell \\x07")
        self.assertEqual(escape("a\tb\nc\rd\x7f\x9b"), "a\\tb\\nc\\rd\\x7f\\x9b")
        self.assertEqual(escape("héllo ☃"), "héllo ☃")

    def test_hexdump(self) -> None:
        lines = hexdump(b"Hello, ws13!\x00\x01\x02\x03\xffmore")
        self.assertEqual(
            lines,
            [
                "0000  48 65 6c 6c 6f 2c 20 77 73 31 33 21 00 01 02 03  Hello, ws13!....",
                "0010  ff 6d 6f 72 65                                   .more",
            ],
        )

    def test_format_frame(self) -> None:
        header = encode_header(0x81, 5, MASK)
        text = format_frame(Dissector().frame(True, header, b"Hello"), True)
        self.assertEqual(
            text.splitlines(),
            [
                "> TEXT frame sent, 5 bytes payload",
                "    FIN=1 RSV1=0 RSV2=0 RSV3=0 opcode=0x1 (TEXT)",
                "    MASK=1 masking-key=37fa213d",
                "    payload length=5 (7-bit encoding, 7-bit field=5)",
                "    header: 81 85 37 fa 21 3d",
                "    payload:",
                "      0000  48 65 6c 6c 6f                                   Hello",
            ],
        )

    def test_format_frame_compressed_and_close(self) -> None:
        data = deflate(zlib.compressobj(wbits=-15), b"x" * 300)
        record = Dissector().frame(False, encode_header(0xC1, len(data), None), data)
        text = format_frame(record, False)
        self.assertIn("< TEXT frame received", text)
        self.assertIn("payload (compressed):", text)
        self.assertIn("inflated: 300 bytes", text)
        close = Dissector().frame(False, encode_header(0x88, 2, None), b"\x03\xe8")
        self.assertIn("close code=1000 reason=''", format_frame(close, False))

    def test_format_frame_line(self) -> None:
        dissector = Dissector()
        line = format_frame_line(
            dissector.frame(True, encode_header(0x81, 3, MASK), b"\x1b[m"), False
        )
        self.assertEqual(line, "< TEXT fin=1 rsv=000 mask=1 len=3 (7) '\\x1b[m'")
        binary = dissector.frame(False, encode_header(0x82, 2, None), b"\x00\xff")
        self.assertEqual(
            format_frame_line(binary, True), "> BINARY fin=1 rsv=000 mask=0 len=2 (7) 00 ff"
        )
        close = dissector.frame(False, encode_header(0x88, 2, None), b"\x03\xe8")
        self.assertIn("code=1000 reason=''", format_frame_line(close, True))
        big = dissector.frame(False, encode_header(0x81, 1000, None), b"a" * 1000)
        self.assertTrue(format_frame_line(big, True).endswith(" ..."))

"""Tests for ``ws13.pcap``: the pcapng bytes, block by block, and rotation."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import unittest

from tests.tshark import tshark, tshark_fields
from ws13.pcap import MSS_IPV4, PcapWriter, TcpFlow, secrets_block
from ws13.version import __version__

NOW = 1_765_000_000_000_000  # microseconds


def blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of each block; checks both length fields and alignment."""
    result = []
    offset = 0
    while offset < len(data):
        kind, length = struct.unpack_from("<II", data, offset)
        assert length % 4 == 0, length
        (trailer,) = struct.unpack_from("<I", data, offset + length - 4)
        assert trailer == length
        result.append((kind, data[offset + 8 : offset + length - 4]))
        offset += length
    assert offset == len(data)
    return result


class WriterTests(unittest.TestCase):
    def test_section_interface_and_packet_blocks(self) -> None:
        file = io.BytesIO()
        writer = PcapWriter(file)
        flow = TcpFlow(writer, ("127.0.0.1", 50000), ("127.0.0.1", 8765), NOW, "hello")
        flow.sent(True, b"GET", NOW + 1)
        found = blocks(file.getvalue())
        self.assertEqual([kind for kind, _ in found], [0x0A0D0D0A, 1] + [6] * 5)
        shb = found[0][1]
        self.assertEqual(struct.unpack_from("<IHHq", shb), (0x1A2B3C4D, 1, 0, -1))
        self.assertIn(f"ws13 {__version__}".encode(), shb)
        self.assertEqual(struct.unpack("<HHI", found[1][1]), (1, 0, 0))  # Ethernet
        # The SYN: interface 0, the timestamp in microseconds, 62 bytes
        # (Ethernet 14 + IPv4 20 + TCP 20 + MSS and window scale options 8),
        # then the comment option.
        syn = found[2][1]
        interface, high, low, captured, length = struct.unpack_from("<IIIII", syn)
        self.assertEqual((interface, (high << 32) + low, captured, length), (0, NOW, 62, 62))
        self.assertEqual(syn[20 + 64 :], struct.pack("<HH", 1, 5) + b"hello\0\0\0" + b"\0" * 4)
        data = found[5][1]
        self.assertEqual(struct.unpack_from("<I", data, 12)[0], 54 + 3)
        self.assertEqual(data[20 + 54 : 20 + 57], b"GET")

    def test_decryption_secrets_block(self) -> None:
        lines = b"CLIENT_RANDOM 00 11\n"  # 20 bytes: padded to 20, then 21 to 24
        for keylog, padded in ((lines, lines), (lines + b"X", lines + b"X\0\0\0")):
            ((kind, body),) = blocks(secrets_block(keylog))
            self.assertEqual(kind, 0x0000000A)
            self.assertEqual(body, struct.pack("<II", 0x544C534B, len(keylog)) + padded)

    def test_segments_checksums_and_numbers_read_by_tshark(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "flow.pcapng")
            writer = PcapWriter(path)
            flow = TcpFlow(writer, ("10.0.0.1", 50000), ("10.0.0.2", 80), NOW)
            flow.sent(True, b"x" * (MSS_IPV4 * 20 + 1), NOW + 10)
            flow.sent(False, b"y" * 10, NOW + 20)
            flow.finish(True, NOW + 30)
            flow.finish(False, NOW + 40)
            rows = tshark_fields(
                path,
                "tcp",
                "tcp.len",
                "tcp.seq",
                "tcp.ack",
                "tcp.flags.str",
            )
            # Validate checksums: Wireshark doesn't by default.
            checked = tshark(
                path,
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
                "-Y",
                "tcp.checksum.status != 1 || ip.checksum.status != 1",  # 1: good
            )
            self.assertEqual(tshark(path, "-Y", "tcp.analysis.flags"), "")
        self.assertEqual(checked, "")
        lengths = [int(row[0]) for row in rows]
        self.assertEqual(max(lengths), MSS_IPV4)
        self.assertEqual(sum(lengths), MSS_IPV4 * 20 + 1 + 10)
        # Two ACKs for the 21 segments: after the 16th and the last.
        self.assertEqual(lengths[3:27], [MSS_IPV4] * 16 + [0] + [MSS_IPV4] * 4 + [1, 0, 10])
        self.assertEqual(rows[0][1:3], ["0", "0"])  # the SYN (relative numbers)
        # The client's last ACK: after its SYN, data and FIN; the server's SYN,
        # 10 bytes and FIN.
        self.assertEqual(rows[-1][1:4], [str(1 + MSS_IPV4 * 20 + 1 + 1), "12", "·······A····"])

    def test_rotation_keeps_the_bound(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "cap.pcapng")
            writer = PcapWriter(path, max_size=20_000, files=3)
            for port in range(50000, 50020):
                flow = TcpFlow(writer, ("127.0.0.1", port), ("127.0.0.1", 80), NOW)
                flow.sent(True, b"z" * 3000, NOW + 1)
                flow.finish(True, NOW + 2)
                flow.finish(False, NOW + 3)
            names = sorted(os.listdir(directory))
            self.assertEqual(names, ["cap.pcapng", "cap.pcapng.1", "cap.pcapng.2"])
            for name in names:
                full = os.path.join(directory, name)
                self.assertLessEqual(os.path.getsize(full), 20_000)
                # Each file stands alone: a header, whole connections.
                self.assertEqual(tshark(full, "-Y", "tcp.analysis.flags"), "")
                self.assertNotEqual(tshark(full, "-Y", "tcp.flags.syn == 1"), "")

    def test_one_file_is_truncated(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "cap.pcapng")
            writer = PcapWriter(path, max_size=5_000, files=1)
            for port in range(50000, 50005):
                TcpFlow(writer, ("::1", port), ("::1", 80), NOW).sent(False, b"a" * 2000, NOW)
            self.assertEqual(os.listdir(directory), ["cap.pcapng"])
            self.assertLessEqual(os.path.getsize(path), 5_000)

    def test_a_file_object_stops_at_max_size(self) -> None:
        file = io.BytesIO()
        writer = PcapWriter(file, max_size=2_000)
        with self.assertLogs("ws13.pcap", "INFO"):
            for port in range(50000, 50010):
                TcpFlow(writer, ("127.0.0.1", port), ("127.0.0.1", 80), NOW)
        self.assertTrue(writer.failed)
        self.assertLessEqual(len(file.getvalue()), 2_000)
        blocks(file.getvalue())  # whole blocks only

    def test_bad_arguments(self) -> None:
        with self.assertRaises(ValueError):
            PcapWriter(io.BytesIO(), files=0)
        with self.assertRaises(ValueError):
            PcapWriter(io.BytesIO(), max_size=0)
        with self.assertRaises(FileNotFoundError):
            PcapWriter("/nonexistent/dir/cap.pcapng")

    def test_dual_stack_and_ipv4_mapped_addresses(self) -> None:
        file = io.BytesIO()
        writer = PcapWriter(file)
        flow = TcpFlow(writer, ("::ffff:127.0.0.1", 50000), ("127.0.0.1", 80), NOW)
        self.assertFalse(flow.v6)
        flow = TcpFlow(writer, ("127.0.0.1", 50000), ("::1", 80), NOW)
        self.assertTrue(flow.v6)

"""Write pcapng captures that Wireshark and tshark read as live captures.

ws13 sees every byte of its connections, on both sides of TLS, so it can
write a capture itself, without capture privileges (root, ``CAP_NET_RAW``)
or TLS keys. Pure standard library (``struct``); no I/O framework: the
asyncio layer (``ws13.asyncio.capture``) feeds it.

``PcapWriter`` writes the file: a Section Header Block, one Ethernet
Interface Description Block, then an Enhanced Packet Block per packet
(microsecond timestamps, the pcapng default), optionally with a comment.
It is bounded: past ``max_size`` bytes the file is rotated (``FILE`` becomes
``FILE.1``, ``FILE.1`` becomes ``FILE.2``... and the oldest beyond
``files`` is deleted), so the captures never take more than about
``max_size * files`` bytes. A path is opened (appending) for each write and
closed after it: the file can be read while the program runs, nothing
needs closing, and a file rotated away by hand is simply started again.
A write error later on logs one warning and stops the capture; it never
fails the connection.

``TcpFlow`` makes the packets of one TCP connection from the bytes each
side sent: Ethernet, IPv4 or IPv6 on the connection's real addresses and
ports, SYN / SYN-ACK / ACK first, segments of at most ``MSS_IPV4`` (1460)
or ``MSS_IPV6`` (1440) bytes, what fits Ethernet's 1500-byte MTU (the MSS
the SYN advertises), sequence and acknowledgement numbers that follow the
bytes, an ACK from the receiver after each write (and every
``ACK_EVERY`` segments of a long one), FIN (or RST for an abort) at the end.
"""

from __future__ import annotations

import array
import ipaddress
import logging
import os
import random
import struct
import sys
from typing import IO, Protocol

__all__ = [
    "ACK_EVERY",
    "DEFAULT_FILES",
    "DEFAULT_MAX_SIZE",
    "MSS_IPV4",
    "MSS_IPV6",
    "PacketSink",
    "PcapWriter",
    "TcpFlow",
    "secrets_block",
]

logger = logging.getLogger("ws13.pcap")

#: The largest TCP payload per packet: Ethernet's 1500-byte MTU less the
#: IPv4 (20) and TCP (20) headers, or IPv6's 40-byte header.
MSS_IPV4 = 1460
MSS_IPV6 = 1440
#: The receiver acknowledges at least every this many segments of one write.
ACK_EVERY = 16
#: Rotation defaults: 100 MB per file, 2 files kept (``FILE`` and ``FILE.1``).
DEFAULT_MAX_SIZE = 100 * 2**20
DEFAULT_FILES = 2

_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_LINKTYPE_ETHERNET = 1
_SNAPLEN = 0  # no limit
_OPT_COMMENT = 1
_OPT_SHB_USERAPPL = 4
#: The Decryption Secrets Block's secrets type for a TLS key log ("TLSK").
_SECRETS_TLS = 0x544C534B

_FIN, _SYN, _RST, _PSH, _ACK = 0x01, 0x02, 0x04, 0x08, 0x10
#: Window scale shift the SYNs advertise, with the window field at 0xFFFF:
#: an 8 MiB window, so no packet looks like it fills the window.
_WSCALE = 7
_CLIENT_MAC = bytes.fromhex("020000000001")
_SERVER_MAC = bytes.fromhex("020000000002")


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _options(options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    return b"".join(_option(code, value) for code, value in options) + b"\0\0\0\0"


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def section_header() -> bytes:
    """A Section Header Block then the one Ethernet Interface Description Block."""
    from .version import __version__ as version

    shb = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + _options(
        [(_OPT_SHB_USERAPPL, f"ws13 {version}".encode())]
    )
    idb = struct.pack("<HHI", _LINKTYPE_ETHERNET, 0, _SNAPLEN)
    return _block(0x0A0D0D0A, shb) + _block(0x00000001, idb)


def secrets_block(keylog: bytes) -> bytes:
    """A Decryption Secrets Block holding TLS key-log lines (NSS format)."""
    body = struct.pack("<II", _SECRETS_TLS, len(keylog)) + _pad(keylog)
    return _block(0x0000000A, body)


def packet_block(timestamp_us: int, packet: bytes, comment: str | None = None) -> bytes:
    """An Enhanced Packet Block on interface 0."""
    body = struct.pack(
        "<IIIII", 0, timestamp_us >> 32, timestamp_us & 0xFFFFFFFF, len(packet), len(packet)
    )
    options = [] if comment is None else [(_OPT_COMMENT, comment.encode())]
    return _block(0x00000006, body + _pad(packet) + _options(options))


class PacketSink(Protocol):
    """Where a ``TcpFlow`` writes: a ``PcapWriter``, or something holding packets for one."""

    @property
    def failed(self) -> bool: ...

    def write_packets(self, blocks: list[bytes]) -> None: ...


class PcapWriter:
    """A pcapng file that connections append packets to, bounded by rotation.

    Args:
        path: the file to write (created or truncated now), or an open
            binary file object (then not rotated: writing stops at
            ``max_size``, ``files`` is ignored; each write is flushed;
            closing it is up to you).
        max_size: rotate once the file holds this many bytes (default 100 MiB).
        files: how many files rotation keeps, ``FILE`` included (default 2;
            1 truncates ``FILE`` instead).

    Raises OSError at once if ``path`` can't be opened for writing, ValueError
    for a ``max_size`` or ``files`` below 1.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | IO[bytes],
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        files: int = DEFAULT_FILES,
    ) -> None:
        if max_size < 1 or files < 1:
            raise ValueError(f"max_size and files must be at least 1, not {max_size}, {files}")
        self.max_size = max_size
        self.files = files
        self.failed = False
        self._header = section_header()
        self._file: IO[bytes] | None = None
        self._size = 0
        if isinstance(path, (str, os.PathLike)):
            self.path: str | None = os.fspath(path)
            with open(self.path, "wb") as file:  # OSError now, not mid-run
                file.write(self._header)
            self._size = len(self._header)
        else:
            self.path = None
            self._file = path
            self._write(self._header)

    def write_packets(self, blocks: list[bytes]) -> None:
        """Append the blocks and flush; rotate first if they would pass ``max_size``."""
        data = b"".join(blocks)
        if self._size + len(data) > self.max_size and not self.failed:
            if self.path is None:
                self.failed = True
                logger.info("capture stopped: %d bytes is its max_size", self.max_size)
                return
            if self._size > len(self._header):
                self._rotate()
        self._write(data)

    def _write(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            if self._file is None:
                assert self.path is not None
                with open(self.path, "ab") as file:
                    file.write(data)
            else:
                self._file.write(data)
                self._file.flush()
        except (OSError, ValueError) as exc:
            self.failed = True
            logger.warning("capture stopped: can't write %s: %s", self.path or "the file", exc)
            return
        self._size += len(data)

    def _rotate(self) -> None:
        assert self.path is not None
        try:
            for n in range(self.files - 1, 0, -1):
                older = self.path if n == 1 else f"{self.path}.{n - 1}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{n}")
            with open(self.path, "wb"):
                pass  # files=1: truncated
        except OSError as exc:
            self.failed = True
            logger.warning("capture stopped: can't rotate %s: %s", self.path, exc)
            return
        self._size = 0
        self._write(self._header)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    words = array.array("H", data)
    if sys.byteorder == "little":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class _Side:
    """One end of a TCP flow: its address, port and next sequence number."""

    __slots__ = ("fin", "ip", "mac", "port", "seq")

    def __init__(self, ip: bytes, port: int, mac: bytes) -> None:
        self.ip = ip
        self.port = port
        self.mac = mac
        self.seq = random.getrandbits(32)
        self.fin = False


class TcpFlow:
    """The synthetic packets of one TCP connection, written to a ``PcapWriter``.

    ``client`` and ``server`` are ``(host, port)`` socket addresses, both
    IPv4 or both IPv6 (IPv4-mapped IPv6 addresses count as IPv4). ``comment``
    goes on the SYN (e.g. "TLS: shown decrypted"). The handshake packets are
    written at once. Every method takes ``now``, the time in microseconds
    since the epoch (the I/O layer has the clock).
    """

    def __init__(
        self,
        writer: PacketSink,
        client: tuple[str, int],
        server: tuple[str, int],
        now: int,
        comment: str | None = None,
    ) -> None:
        self.writer = writer
        client_ip = _address(client[0])
        server_ip = _address(server[0])
        if len(client_ip) != len(server_ip):
            # A dual-stack socket: both ends as IPv6.
            client_ip = _ipv6(client_ip)
            server_ip = _ipv6(server_ip)
        self.v6 = len(client_ip) == 16
        self.mss = MSS_IPV6 if self.v6 else MSS_IPV4
        self.client = _Side(client_ip, client[1], _CLIENT_MAC)
        self.server = _Side(server_ip, server[1], _SERVER_MAC)
        self._ip_id = 0
        c, s = self.client, self.server
        syn_options = struct.pack("!BBH", 2, 4, self.mss) + struct.pack("!BBBB", 1, 3, 3, _WSCALE)
        blocks = [
            packet_block(now, self._packet(c, s, _SYN, b"", syn_options, ack=0), comment),
        ]
        c.seq += 1
        blocks.append(packet_block(now, self._packet(s, c, _SYN | _ACK, b"", syn_options)))
        s.seq += 1
        blocks.append(packet_block(now, self._packet(c, s, _ACK, b"")))
        self.writer.write_packets(blocks)

    def sent(self, from_client: bool, data: bytes | bytearray | memoryview, now: int) -> None:
        """``data`` went from one side to the other: its segments, then the ACK."""
        if not data:
            return
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        if src.fin or self.writer.failed:
            return  # nothing can follow a FIN
        view = memoryview(data).cast("B")
        mss = self.mss
        blocks = []
        for count, start in enumerate(range(0, len(view), mss), 1):
            segment = bytes(view[start : start + mss])
            last = start + mss >= len(view)
            blocks.append(
                packet_block(now, self._packet(src, dst, _ACK | (_PSH if last else 0), segment))
            )
            src.seq = (src.seq + len(segment)) & 0xFFFFFFFF
            if last or count % ACK_EVERY == 0:
                blocks.append(packet_block(now, self._packet(dst, src, _ACK, b"")))
        self.writer.write_packets(blocks)

    def finish(self, from_client: bool, now: int) -> None:
        """One side closed its end (FIN), acknowledged by the other."""
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        if src.fin:
            return
        blocks = [packet_block(now, self._packet(src, dst, _FIN | _ACK, b""))]
        src.seq = (src.seq + 1) & 0xFFFFFFFF
        src.fin = True
        blocks.append(packet_block(now, self._packet(dst, src, _ACK, b"")))
        self.writer.write_packets(blocks)

    def reset(self, from_client: bool, now: int) -> None:
        """One side aborted the connection (RST); nothing follows."""
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        if src.fin and dst.fin:
            return
        self.writer.write_packets([packet_block(now, self._packet(src, dst, _RST | _ACK, b""))])
        src.fin = dst.fin = True

    def _packet(
        self,
        src: _Side,
        dst: _Side,
        flags: int,
        payload: bytes,
        options: bytes = b"",
        ack: int | None = None,
    ) -> bytes:
        ack_number = dst.seq if ack is None else ack
        offset = (20 + len(options)) // 4
        if not flags & _ACK:
            ack_number = 0
        tcp = (
            struct.pack(
                "!HHIIBBHHH",
                src.port,
                dst.port,
                src.seq,
                ack_number,
                offset << 4,
                flags,
                0xFFFF,
                0,
                0,
            )
            + options
        )
        segment_length = len(tcp) + len(payload)
        if self.v6:
            pseudo = src.ip + dst.ip + struct.pack("!IxxxB", segment_length, 6)
        else:
            pseudo = src.ip + dst.ip + struct.pack("!xBH", 6, segment_length)
        checksum = _checksum(pseudo + tcp + payload)
        tcp = tcp[:16] + struct.pack("!H", checksum) + tcp[18:]
        if self.v6:
            ip = struct.pack("!IHBB", 6 << 28, segment_length, 6, 64) + src.ip + dst.ip
            ethertype = 0x86DD
        else:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            header = (
                struct.pack(
                    "!BBHHHBBH", 0x45, 0, 20 + segment_length, self._ip_id, 0x4000, 64, 6, 0
                )
                + src.ip
                + dst.ip
            )
            ip = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
            ethertype = 0x0800
        return dst.mac + src.mac + struct.pack("!H", ethertype) + ip + tcp + payload


def _address(host: str) -> bytes:
    address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.packed
    return address.packed


def _ipv6(packed: bytes) -> bytes:
    if len(packed) == 16:
        return packed
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + packed).packed

"""Tests for ``pcap_tls=True`` of ``connect()`` and ``serve()``: TLS records and keys."""

from __future__ import annotations

import os
import ssl
import tempfile
import unittest

from tests.asyncio.helpers import tls_contexts
from tests.tshark import tshark, tshark_fields
from ws13.asyncio.client import connect
from ws13.asyncio.server import ServerConnection, serve
from ws13.asyncio.tlscapture import RELAY_COMMENT

#: Above LARGE_READ (256 KiB): the rest is read by the large frame reader.
LARGE = 300_000


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


class TLSCaptureTests(unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.directory = directory.name

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    async def test_pcap_tls_is_decrypted_by_tshark_from_the_file_alone(self) -> None:
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            with self.subTest(version=version):
                client, served = self.path(f"c{version}.pcapng"), self.path(f"s{version}.pcapng")
                server_context, client_context = tls_contexts()
                client_context.maximum_version = version
                async with serve(
                    echo, "127.0.0.1", 0, ssl=server_context, pcap=served, pcap_tls=True
                ) as server:
                    url = f"wss://127.0.0.1:{server.port}/"
                    async with connect(url, ssl=client_context, pcap=client, pcap_tls=True) as ws:
                        await ws.send("hidden words")
                        self.assertEqual(await ws.recv(), "hidden words")
                        self.assertEqual(ws.remote_address, "")  # the socketpair's
                        await ws.send(b"\x00" * LARGE, compress=False)
                        self.assertEqual(len(await ws.recv()), LARGE)
                name = "TLSv1.3" if version is ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
                for path in (client, served):
                    with open(path, "rb") as file:
                        self.assertNotIn(b"hidden words", file.read())  # encrypted on disk
                    self.assertIn(name, tshark(path, "-Y", "tls"))
                    self.assertEqual(
                        tshark_fields(path, "frame.comment", "frame.comment"), [[RELAY_COMMENT]]
                    )
                    # No -o tls.keylog_file: the keys are in the file.
                    self.assertEqual(
                        tshark_fields(
                            path,
                            "websocket",
                            "websocket.opcode",
                            "websocket.payload_length",
                            "websocket.payload.text",
                        ),
                        [
                            ["1", "12", "hidden words"],
                            ["1", "12", "hidden words"],
                            ["2", "127", ""],
                            ["2", "126", ""],  # the echo is compressed
                            ["8", "2", ""],
                            ["8", "2", ""],
                        ],
                    )
                    self.assertEqual(tshark(path, "-Y", "tcp.analysis.flags"), "")

    async def test_pcap_tls_failed_handshake_is_captured(self) -> None:
        served = self.path("server.pcapng")
        server_context, client_context = tls_contexts()
        _, untrusting = tls_contexts()  # trusts another CA
        async with serve(
            echo, "127.0.0.1", 0, ssl=server_context, pcap=served, pcap_tls=True
        ) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            with self.assertRaises(ssl.SSLCertVerificationError):
                async with connect(url, ssl=untrusting, pcap=self.path("c.pcapng"), pcap_tls=True):
                    pass
            # The server still serves.
            async with connect(url, ssl=client_context) as ws:
                await ws.send("still")
                self.assertEqual(await ws.recv(), "still")
        self.assertIn("Client Hello", tshark(served, "-Y", "tls"))

    async def test_pcap_tls_needs_pcap_tls_and_a_direct_connection(self) -> None:
        server_context, _ = tls_contexts()
        with self.assertRaises(ValueError):
            serve(echo, "127.0.0.1", 0, ssl=server_context, pcap_tls=True)
        with self.assertRaises(ValueError):
            serve(echo, "127.0.0.1", 0, pcap=self.path("s.pcapng"), pcap_tls=True)
        for kwargs in ({"unix": True}, {"proxy": "http://127.0.0.1:1"}):
            with self.assertRaises(ValueError):
                connect("wss://127.0.0.1/", pcap=self.path("c.pcapng"), pcap_tls=True, **kwargs)
        with self.assertRaises(ValueError):
            connect("ws://127.0.0.1/", pcap=self.path("c.pcapng"), pcap_tls=True)
        with self.assertRaises(ValueError):
            connect("wss://127.0.0.1/", pcap_tls=True)

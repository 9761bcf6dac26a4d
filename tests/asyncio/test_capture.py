"""Tests for ``pcap=`` of ``connect()`` and ``serve()``: captures read by real tshark."""

from __future__ import annotations

import asyncio
import os
import tempfile
import unittest
from collections.abc import AsyncIterator

from tests.asyncio.helpers import tls_contexts
from tests.tshark import tshark, tshark_fields, websocket_frames
from ws13.asyncio.capture import TLS_COMMENT, start_capture
from ws13.asyncio.client import connect
from ws13.asyncio.server import ServerConnection, serve
from ws13.http11 import Request
from ws13.pcap import MSS_IPV4, MSS_IPV6, PcapWriter

#: Above LARGE_READ (256 KiB): the rest is read by the large frame reader.
LARGE = 300_000
FRAME_FIELDS = (
    "websocket.fin",
    "websocket.opcode",
    "websocket.mask",
    "websocket.payload_length",
    "websocket.payload_length_ext_16",
    "websocket.payload_length_ext_64",
    "websocket.masking_key",
)


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


class CaptureTests(unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.directory = directory.name

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    async def echo_once(self, port: int, message: str) -> None:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send(message)
            self.assertEqual(await ws.recv(), message)

    async def scripted(self, host: str, client_pcap: str, server_pcap: str) -> None:
        """The lab's exercise: 7-, 16- and 64-bit lengths, fragments around a
        ping, a compressed echo, a close with a reason."""
        async with serve(echo, host, 0, pcap=server_pcap) as server:
            url = f"ws://[{host}]:{server.port}/" if ":" in host else f"ws://{host}:{server.port}/"
            async with connect(url, pcap=client_pcap, ping_interval=None) as ws:
                await ws.send("hello", compress=False)
                await ws.recv()
                await ws.send(b"\x01" * 200, compress=False)
                await ws.recv()
                await ws.send(os.urandom(LARGE), compress=False)
                await ws.recv()

                async def fragments() -> AsyncIterator[str]:
                    # A frame goes out once the next item comes (the last
                    # one has FIN set): the ping goes after "frag1 ".
                    yield "frag1 "
                    yield "frag2 "
                    await ws.ping(b"p1")  # returns once the pong came
                    yield "end"

                await ws.send(fragments(), compress=False)
                self.assertEqual(await ws.recv(), "frag1 frag2 end")
                await ws.send("compress me " * 20, compress=False)
                await ws.recv()
                await ws.close(1001, "bye")

    def check_scripted(self, path: str, mss: int) -> None:
        frames = websocket_frames(path)

        def row(frame: dict[str, str]) -> list[str]:
            return [frame.get(field, "") for field in FRAME_FIELDS]

        client = [row(frame) for frame in frames if frame["websocket.mask"] == "1"]
        keys = [frame.pop() for frame in client]
        self.assertEqual(
            client,
            [
                ["1", "1", "1", "5", "", ""],
                ["1", "2", "1", "126", "200", ""],
                ["1", "2", "1", "127", "", str(LARGE)],
                ["0", "1", "1", "6", "", ""],
                ["1", "9", "1", "2", "", ""],
                ["0", "0", "1", "6", "", ""],
                ["1", "0", "1", "3", "", ""],
                ["1", "1", "1", "126", "240", ""],
                ["1", "8", "1", "5", "", ""],
            ],
        )
        self.assertTrue(all(len(key.replace(":", "")) == 8 for key in keys), keys)
        # The server's side: unmasked, the pong between the fragments, the
        # long text compressed, which tshark inflates.
        server = [
            (f["websocket.opcode"], f["websocket.rsv"], f.get("websocket.payload.text", ""))
            for f in frames
            if f["websocket.mask"] == "0"
        ]
        self.assertEqual(
            server[3:],
            [
                ("10", "0x00", ""),
                ("1", "0x00", "frag1 frag2 end"),
                ("1", "0x04", "compress me " * 20),
                ("8", "0x00", ""),
            ],
        )
        closes = [
            (f["websocket.payload.close.status_code"], f.get("websocket.payload.close.reason"))
            for f in frames
            if f["websocket.opcode"] == "8"
        ]
        self.assertEqual(closes, [("1001", "bye"), ("1001", None)])
        http = tshark_fields(
            path, "http", "http.request.method", "http.response.code", "http.upgrade"
        )
        self.assertEqual(http, [["GET", "", "websocket"], ["", "101", "websocket"]])
        flags = tshark_fields(path, "tcp", "tcp.flags.str")
        self.assertEqual(flags[0][0][-2:], "S·")
        self.assertIn("F", flags[-2][0])
        self.assertEqual(tshark(path, "-Y", "tcp.analysis.flags"), "")
        self.assertEqual(tshark(path, "-Y", f"tcp.len > {mss}"), "")
        self.assertNotEqual(tshark(path, "-Y", f"tcp.len == {mss}"), "")

    async def test_ipv4_both_sides(self) -> None:
        client, server = self.path("client.pcapng"), self.path("server.pcapng")
        await self.scripted("127.0.0.1", client, server)
        self.check_scripted(client, MSS_IPV4)

        # The server's capture is the same connection seen from the other
        # end (segmented as its reads came): the same frames.
        def keys(path: str) -> list[str]:
            rows = tshark_fields(path, "websocket.mask == 1", "websocket.masking_key")
            return ",".join(row[0] for row in rows).split(",")

        self.assertEqual(len(keys(client)), 9)
        self.assertEqual(keys(server), keys(client))
        self.assertEqual(tshark(server, "-Y", "tcp.analysis.flags"), "")
        self.assertNotEqual(tshark(client, "-Y", "ip.src == 127.0.0.1"), "")

    async def test_ipv6(self) -> None:
        client, server = self.path("client.pcapng"), self.path("server.pcapng")
        await self.scripted("::1", client, server)
        self.check_scripted(server, MSS_IPV6)
        self.assertNotEqual(tshark(server, "-Y", "ipv6.src == ::1"), "")

    async def test_concurrent_connections_are_separate_streams(self) -> None:
        path = self.path("server.pcapng")
        async with serve(echo, "127.0.0.1", 0, pcap=path) as server:

            async def talk(n: int) -> None:
                async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    for i in range(3):
                        await ws.send(f"client {n} message {i}")
                        await ws.recv()
                        await asyncio.sleep(0)

            await asyncio.gather(*(talk(n) for n in range(3)))
        rows = tshark_fields(path, "websocket.mask == 1", "tcp.stream", "websocket.payload.text")
        streams: dict[str, list[str]] = {}
        for stream, text in rows:
            if text:
                streams.setdefault(stream, []).append(text)
        self.assertEqual(
            sorted(streams.values()),
            [[f"client {n} message {i}" for i in range(3)] for n in range(3)],
        )
        self.assertEqual(tshark(path, "-Y", "tcp.analysis.flags"), "")

    async def test_wss_is_shown_decrypted_with_a_comment(self) -> None:
        client, served = self.path("client.pcapng"), self.path("server.pcapng")
        server_context, client_context = tls_contexts()
        async with serve(echo, "127.0.0.1", 0, ssl=server_context, pcap=served) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            async with connect(url, ssl=client_context, pcap=client) as ws:
                await ws.send("secret")
                self.assertEqual(await ws.recv(), "secret")
        for path in (client, served):
            comments = tshark_fields(path, "frame.comment", "frame.comment")
            self.assertEqual(comments, [[TLS_COMMENT]])
            self.assertEqual(
                tshark_fields(path, "websocket", "websocket.payload.text")[:2],
                [["secret"], ["secret"]],
            )
            self.assertEqual(tshark(path, "-Y", "tcp.analysis.flags"), "")

    async def test_writer_object_and_file_object(self) -> None:
        path = self.path("shared.pcapng")
        with open(path, "wb") as file:
            writer = PcapWriter(file)
            async with serve(echo, "127.0.0.1", 0, pcap=writer) as server:
                await self.echo_once(server.port, "file")
        texts = tshark_fields(path, "websocket.payload.text", "websocket.payload.text")
        self.assertEqual(texts, [["file"]] * 2)

    async def test_start_capture_from_process_request(self) -> None:
        path = self.path("chosen.pcapng")
        writer = PcapWriter(path)

        def process_request(connection: ServerConnection, request: Request) -> None:
            if request.path == "/watched":
                start_capture(connection, writer, client=False, received=request.serialize())

        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            for path_ in ("/", "/watched", "/"):
                async with connect(f"ws://127.0.0.1:{server.port}{path_}") as ws:
                    await ws.send(path_)
                    await ws.recv()
        http = tshark_fields(path, "http", "http.request.uri", "http.response.code")
        self.assertEqual(http, [["/watched", ""], ["", "101"]])
        texts = tshark_fields(path, "websocket.payload.text", "websocket.payload.text")
        self.assertEqual(texts, [["/watched"]] * 2)
        self.assertEqual(tshark(path, "-Y", "tcp.analysis.flags"), "")

    async def test_unwritable_path_fails_at_once(self) -> None:
        missing = self.path("missing/x.pcapng")
        with self.assertRaises(FileNotFoundError):
            serve(echo, "127.0.0.1", 0, pcap=missing)
        with self.assertRaises(FileNotFoundError):
            connect("ws://127.0.0.1:1/", pcap=missing)

    async def test_write_error_stops_capture_not_connection(self) -> None:
        path = self.path("server.pcapng")
        writer = PcapWriter(path)
        async with (
            serve(echo, "127.0.0.1", 0, pcap=writer) as server,
            connect(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await ws.send("before")
            await ws.recv()
            os.unlink(path)
            os.mkdir(path)  # the next open() fails: IsADirectoryError
            with self.assertLogs("ws13.pcap", "WARNING") as logs:
                await ws.send("after")
                self.assertEqual(await ws.recv(), "after")
        self.assertEqual(len(logs.records), 1)
        self.assertTrue(writer.failed)

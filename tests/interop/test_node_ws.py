"""Interoperability with Node's ``ws`` package, both ways, with permessage-deflate.

Their client (``node/client.mjs``) talks to our server and our client to their
server (``node/server.mjs``) over loopback: text and binary messages up to
1 MiB echoed unchanged, permessage-deflate negotiated, close codes and reasons
seen by each side. The pinned ``ws`` is installed with ``npm ci`` into
``tests/interop/node/node_modules`` the first time (kept for later runs).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import unittest
from collections.abc import Awaitable
from typing import Any

from ws13.asyncio import connect, serve
from ws13.asyncio.server import Server, ServerConnection
from ws13.exceptions import ConnectionClosedError

from ..utils import MS
from .echo import RecordingEcho, stop_server

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
TIMEOUT = 60_000 * MS
MAX_SIZE = 16 * 2**20
#: Sizes of the echoed messages; node/client.mjs has its own list.
SIZES = [0, 10, 1000, 100 * 2**10, 2**20]
#: perMessageDeflate options for Node (all four RFC 7692 parameters), and what
#: the ws13 end's PerMessageDeflate must then hold, as a client and as a server.
NEGOTIATED = {
    "serverNoContextTakeover": True,
    "clientNoContextTakeover": True,
    "serverMaxWindowBits": 10,
    "clientMaxWindowBits": 9,
}
CLIENT_SIDE_PARAMETERS = {
    "remote_no_context_takeover": True,
    "local_no_context_takeover": True,
    "remote_max_window_bits": 10,
    "local_max_window_bits": 9,
}
SERVER_SIDE_PARAMETERS = {
    "remote_no_context_takeover": True,
    "local_no_context_takeover": True,
    "remote_max_window_bits": 9,
    "local_max_window_bits": 10,
}


async def wait(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, TIMEOUT)


@functools.cache
def install_ws() -> None:
    """``npm ci`` in tests/interop/node unless the locked ``ws`` is already there."""
    with open(os.path.join(NODE_DIR, "package-lock.json")) as lock:
        locked = json.load(lock)["packages"]["node_modules/ws"]["version"]
    try:
        with open(os.path.join(NODE_DIR, "node_modules", "ws", "package.json")) as installed:
            if json.load(installed)["version"] == locked:
                return
    except (OSError, ValueError, KeyError):
        pass
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm ci failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def parameters(extension: Any) -> dict[str, Any]:
    """The negotiated parameters of a ws13 PerMessageDeflate."""
    return {name: getattr(extension, name) for name in CLIENT_SIDE_PARAMETERS}


def text(size: int) -> str:
    """Compressible text of ``size`` code points with multi-byte UTF-8 characters."""
    words = ["héllo", "wörld", "☃", "ws13", "deflate", "Ω", "interop", "ünïcode", "𝄞"]
    return " ".join(words[i % len(words)] for i in range(size // 3 + 1))[:size]


def pattern(size: int) -> bytes:
    """Compressible bytes: a 251-byte cycle, as patternBytes() in node/data.mjs."""
    cycle = bytes((i * 7) % 251 for i in range(251))
    return (cycle * (size // 251 + 1))[:size]


def messages() -> list[str | bytes]:
    result: list[str | bytes] = []
    for size in SIZES:
        result += [text(size), os.urandom(size), pattern(size)]
    return result


class TheirClientOurServerTests(RecordingEcho, unittest.IsolatedAsyncioTestCase):
    """node client.mjs (ws.WebSocket) → ws13.asyncio.serve."""

    @classmethod
    def setUpClass(cls) -> None:
        install_ws()

    async def asyncSetUp(self) -> None:
        self.start_recording()
        server: Server = await serve(self.handler, "127.0.0.1", 0, max_size=MAX_SIZE)
        self.addAsyncCleanup(stop_server, server, TIMEOUT)
        self.url = f"ws://127.0.0.1:{server.port}/"

    async def run_client(self, mode: str, options: Any = True) -> dict[str, Any]:
        """Run node/client.mjs in ``mode`` with these perMessageDeflate options."""
        process = await asyncio.create_subprocess_exec(
            "node",
            os.path.join(NODE_DIR, "client.mjs"),
            self.url,
            mode,
            json.dumps(options),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            stdout, stderr = await wait(process.communicate())
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        self.assertEqual(process.returncode, 0, stderr.decode(errors="replace"))
        result: dict[str, Any] = json.loads(stdout)
        return result

    async def server_connection(self) -> ServerConnection:
        """The only server-side connection, once closed."""
        self.assertEqual(len(self.connections), 1)
        await wait(self.connections[0].wait_closed())
        return self.connections[0]

    def check_echoes(self, result: dict[str, Any]) -> None:
        self.assertEqual(result["extensions"], "permessage-deflate")
        expected = []
        for size in SIZES:
            for kind in ["text", "random binary", "pattern binary"]:
                echo = result["results"].pop(0)
                self.assertEqual((echo["kind"], echo["size"]), (kind, size))
                self.assertTrue(echo["equal"], echo)
                self.assertEqual(echo["binary"], kind != "text", echo)
                expected.append(("str" if kind == "text" else "bytes", echo["bytes"]))
        self.assertEqual(result["results"], [])
        # The server received each message whole, as the right type.
        self.assertEqual(self.received, expected)
        # ws13 echoes the code of a Close frame, not its reason (RFC 6455 5.5.1).
        self.assertEqual(result["closed"], {"code": 1000, "reason": ""})

    async def test_echo_with_permessage_deflate(self) -> None:
        self.check_echoes(await self.run_client("echo"))
        connection = await self.server_connection()
        self.assertEqual(
            [extension.name for extension in connection.protocol.extensions],
            ["permessage-deflate"],
        )
        self.assertEqual((connection.close_code, connection.close_reason), (1000, "done"))

    async def test_echo_with_negotiated_parameters(self) -> None:
        self.check_echoes(await self.run_client("echo", NEGOTIATED))
        connection = await self.server_connection()
        [extension] = connection.protocol.extensions
        self.assertEqual(parameters(extension), SERVER_SIDE_PARAMETERS)

    async def test_their_client_sees_close_code_from_our_server(self) -> None:
        result = await self.run_client("close-from-server")
        self.assertEqual(result["closed"], {"code": 4000, "reason": "bye"})
        connection = await self.server_connection()
        self.assertEqual(connection.close_code, 4000)

    async def test_our_server_sees_close_code_from_their_client(self) -> None:
        result = await self.run_client("close-from-client")
        self.assertEqual(result["results"], ["hello"])
        self.assertEqual(result["closed"], {"code": 4001, "reason": ""})
        connection = await self.server_connection()
        self.assertEqual((connection.close_code, connection.close_reason), (4001, "see you ☃"))


class OurClientTheirServerTests(unittest.IsolatedAsyncioTestCase):
    """ws13.asyncio.connect → node server.mjs (ws.WebSocketServer)."""

    @classmethod
    def setUpClass(cls) -> None:
        install_ws()

    async def start(self, options: Any = True) -> str:
        """Start node/server.mjs with these perMessageDeflate options; return its URL."""
        self.process = await asyncio.create_subprocess_exec(
            "node",
            os.path.join(NODE_DIR, "server.mjs"),
            json.dumps(options),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        self.addAsyncCleanup(self.stop)
        listening = await self.event()
        self.assertEqual(listening["event"], "listening")
        return f"ws://127.0.0.1:{listening['port']}/"

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await wait(self.process.wait())

    async def event(self) -> dict[str, Any]:
        """The next JSON line the Node server printed."""
        assert self.process.stdout is not None
        line = await wait(self.process.stdout.readline())
        self.assertTrue(line, "the Node server exited")
        event: dict[str, Any] = json.loads(line)
        return event

    async def echo_round_trips(self, url: str) -> list[Any]:
        """Echo messages(); return the negotiated extensions."""
        async with connect(url, max_size=MAX_SIZE) as ws:
            extensions = ws.protocol.extensions
            opened = await self.event()
            self.assertEqual(opened["event"], "open")
            self.assertEqual(opened["extensions"], "permessage-deflate")
            self.assertIn("permessage-deflate", opened["offer"])
            for message in messages():
                await ws.send(message)
                echo = await wait(ws.recv())
                self.assertEqual(type(echo), type(message))
                self.assertTrue(echo == message, f"{type(message).__name__} of {len(message)}")
        self.assertEqual(ws.close_code, 1000)
        self.assertEqual(await self.event(), {"event": "close", "code": 1000, "reason": ""})
        return extensions

    async def test_echo_with_permessage_deflate(self) -> None:
        extensions = await self.echo_round_trips(await self.start())
        self.assertEqual([extension.name for extension in extensions], ["permessage-deflate"])

    async def test_echo_with_negotiated_parameters(self) -> None:
        [extension] = await self.echo_round_trips(await self.start(NEGOTIATED))
        self.assertEqual(parameters(extension), CLIENT_SIDE_PARAMETERS)

    async def test_their_server_sees_close_code_from_our_client(self) -> None:
        async with connect(await self.start()) as ws:
            await ws.send("hello")
            self.assertEqual(await wait(ws.recv()), "hello")
            await wait(ws.close(4001, "see you ☃"))
        self.assertEqual(ws.close_code, 4001)
        self.assertEqual((await self.event())["event"], "open")
        self.assertEqual(
            await self.event(), {"event": "close", "code": 4001, "reason": "see you ☃"}
        )

    async def test_our_client_sees_close_code_from_their_server(self) -> None:
        async with connect(await self.start()) as ws:
            await ws.send("close 4002")
            with self.assertRaises(ConnectionClosedError):
                await wait(ws.recv())
        self.assertEqual((ws.close_code, ws.close_reason), (4002, "bye from node"))
        self.assertEqual((await self.event())["event"], "open")
        self.assertEqual(await self.event(), {"event": "close", "code": 4002, "reason": ""})

"""Helpers for the hub tests: a real redis-server, hub servers and raw hub peers."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, ClassVar

from tests.cli.helpers import ENV, WS13
from tests.utils import MS, free_port
from ws13.asyncio import connect, serve
from ws13.asyncio.client import ClientConnection
from ws13.asyncio.server import Server
from ws13.hub import SUBPROTOCOL, Hub

__all__ = [
    "TIMEOUT",
    "HubTestCase",
    "RedisServer",
    "WithRedis",
    "node_health",
    "recv_json",
    "redis_ping",
    "serve_nodes",
    "wait_until",
]

TIMEOUT = 20_000 * MS


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it is true; raise TimeoutError after ``TIMEOUT``."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if predicate():
                return
            await asyncio.sleep(5 * MS)


def redis_ping(port: int) -> bool:
    """Whether a Redis answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A real ``redis-server`` on a free loopback port, in a temporary directory.

    No persistence: a restart loses every key, as a Redis without a disk
    would (the hub must notice through epochs). ``stop()`` kills it (SIGKILL
    by default, like a crash); ``start()`` starts it again on the same port.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ws13-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: apt-get install redis-server")
        self.binary = binary

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.dir,
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        while not redis_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server didn't start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class WithRedis:
    """A mixin for a test case class: one real ``redis-server`` (``cls.redis``)
    for its tests, started before the first and removed after the last. Put it
    first among the bases."""

    redis: ClassVar[RedisServer]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        cls.redis = RedisServer()
        cls.redis.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.redis.close()
        super().tearDownClass()  # type: ignore[misc]


def node_health(port: int) -> tuple[int, dict[str, Any]]:
    """The status and JSON of a node's /health; ``(0, {})`` while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


async def serve_nodes(test: unittest.TestCase, backplane: str, count: int = 2) -> list[int]:
    """Start ``count`` ``ws13 serve --redis BACKPLANE`` processes (stopped at the
    test's cleanup); return their ports once each /health says 200."""
    ports = [free_port() for _ in range(count)]
    for port in ports:
        node = subprocess.Popen(
            [*WS13, "serve", "--port", str(port), "--redis", backplane, "--hub-ticker", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        test.addCleanup(_stop, node)
    async with asyncio.timeout(TIMEOUT):
        for port in ports:
            while (await asyncio.to_thread(node_health, port))[0] != 200:  # noqa: ASYNC110 - a process
                await asyncio.sleep(0.05)
    return ports


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def recv_json(connection: ClientConnection) -> Any:
    """The next message of ``connection``, parsed as JSON (within TIMEOUT)."""
    return json.loads(await asyncio.wait_for(connection.recv(), TIMEOUT))


class HubTestCase(unittest.IsolatedAsyncioTestCase):
    """Start hubs on loopback servers and clean everything up after the test."""

    async def start_hub(self, hub: Hub | None = None, **kwargs: Any) -> tuple[Hub, Server]:
        hub = hub if hub is not None else Hub(**kwargs)
        await hub.start()
        server = await serve(
            hub.handler,
            "127.0.0.1",
            0,
            process_request=hub.process_request,
            subprotocols=[SUBPROTOCOL],
        )
        self.addAsyncCleanup(self._stop, hub, server)
        return hub, server

    async def _stop(self, hub: Hub, server: Server) -> None:
        server.close()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)
        await asyncio.wait_for(hub.aclose(), TIMEOUT)

    def url(self, server: Server, path: str = "/hub") -> str:
        return f"ws://127.0.0.1:{server.port}{path}"

    async def raw(self, server: Server, path: str = "/hub", **kwargs: Any) -> ClientConnection:
        """A plain WebSocket connection to the hub, past its welcome."""
        ws = await asyncio.wait_for(
            connect(self.url(server, path), subprotocols=[SUBPROTOCOL], **kwargs), TIMEOUT
        )
        self.addAsyncCleanup(self._close, ws)
        welcome = await recv_json(ws)
        assert welcome["op"] == "welcome", welcome
        return ws

    async def slow_client(self, server: Server) -> ClientConnection:
        """A client that reads nothing after the welcome, with a tiny receive buffer."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        # No keepalive: a client that doesn't read never sees the pong.
        ws = await connect(
            self.url(server), sock=sock, max_queue=1, compression=None, ping_interval=None
        )
        self.addAsyncCleanup(self._close, ws)
        await recv_json(ws)
        return ws

    async def _close(self, ws: ClientConnection) -> None:
        await asyncio.wait_for(ws.close(), TIMEOUT)

    async def request(self, ws: ClientConnection, **request: Any) -> Any:
        """Send a request; return the reply or error (pushes before it are skipped)."""
        await ws.send(json.dumps(request))
        while True:
            reply = await recv_json(ws)
            if reply["op"] in ("reply", "error"):
                return reply

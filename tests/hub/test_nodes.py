"""Two hub nodes (``ws13 serve --redis``, as processes) sharing channels through a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import unittest
from typing import Any

from tests.cli.helpers import ENV, WS13
from tests.utils import free_port, memory_kib
from ws13.asyncio import connect
from ws13.hub import SUBPROTOCOL
from ws13.hub.client import Client, Gap, Message

from .helpers import TIMEOUT, RedisServer, WithRedis, node_health, recv_json, serve_nodes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Node:
    """A hub node process on a fixed port, so that it can be restarted there."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/hub"

    def start(self) -> None:
        # No publish rate limit: the tests publish thousands of messages as
        # fast as the nodes take them.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hub.node", "--port", str(self.port),
             "--redis", self.redis_url, "--hub-ticker", "0", "--hub-publish-rate", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(f"node didn't start: {line!r}")

    def kill(self) -> None:
        """SIGKILL, like a crash: nothing is cleaned up."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            finally:
                self.kill()

    def health(self) -> tuple[int, dict[str, Any]]:
        return node_health(self.port)


class TwoNodesTests(WithRedis, unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        if self.redis.process is None:
            self.redis.start()
        self.a, self.b = Node(self.redis.url), Node(self.redis.url)
        for node in (self.a, self.b):
            await asyncio.to_thread(node.start)
            self.addCleanup(node.stop)

    async def client(self, *urls: str) -> Client:
        client = Client(list(urls), backoff_min=0.05, backoff_max=0.5)
        await asyncio.wait_for(client.connect(), TIMEOUT)
        self.addAsyncCleanup(client.close)
        return client

    async def test_publish_on_a_reaches_b(self) -> None:
        on_a, on_b = await self.client(self.a.url), await self.client(self.b.url)
        subscription = await on_b.subscribe("chat:x")
        reply = await on_a.publish("chat:x", {"text": "hello from A"})
        item = await asyncio.wait_for(subscription.get(), TIMEOUT)
        assert isinstance(item, Message)
        self.assertEqual((item.offset, item.data), (reply["offset"], {"text": "hello from A"}))
        # History and presence are shared too.
        history = await on_a.history("chat:x")
        self.assertEqual([m["data"] for m in history["messages"]], [{"text": "hello from A"}])
        members = await on_a.presence("chat:x")
        self.assertEqual([m["client"] for m in members], [on_b.client_id])

    async def test_node_killed_mid_stream_then_client_recovers_exactly_once(self) -> None:
        publisher = await self.client(self.a.url)
        # The subscriber fails over between the nodes: B first, then A.
        subscriber = await self.client(self.b.url, self.a.url)
        subscription = await subscriber.subscribe("chat:stream")
        received: list[Message | Gap] = []
        total = 300

        async def collect() -> None:
            async for item in subscription:
                received.append(item)
                if isinstance(item, Message) and item.data == total - 1:
                    return

        collecting = asyncio.ensure_future(collect())
        for i in range(total):
            await publisher.publish("chat:stream", i)
            if i == 100:
                await asyncio.to_thread(self.b.kill)
            if i == 200:
                await asyncio.to_thread(self.b.start)
            await asyncio.sleep(0.002)
        await asyncio.wait_for(collecting, TIMEOUT)
        self.assertTrue(all(isinstance(item, Message) for item in received), received[:3])
        self.assertEqual([m.data for m in received if isinstance(m, Message)], list(range(total)))
        self.assertEqual(
            [m.offset for m in received if isinstance(m, Message)], list(range(1, total + 1))
        )
        self.assertGreaterEqual(subscriber.connections, 2)

    async def test_redis_restart_degrades_then_both_nodes_recover(self) -> None:
        on_a, on_b = await self.client(self.a.url), await self.client(self.b.url)
        sub_a = await on_a.subscribe("chat:r")
        sub_b = await on_b.subscribe("chat:r")
        await on_a.publish("chat:r", "before")
        for sub in (sub_a, sub_b):
            item = await asyncio.wait_for(sub.get(), TIMEOUT)
            self.assertEqual(getattr(item, "data", None), "before")
        self.assertEqual((await asyncio.to_thread(self.a.health))[0], 200)

        self.redis.stop()
        try:
            for node in (self.a, self.b):
                await self.wait_health(node, 503, "degraded")
            with self.assertRaises(Exception) as caught:
                await on_a.publish("chat:r", "during")
            self.assertEqual(getattr(caught.exception, "code", None), 503)
        finally:
            self.redis.start()

        for node in (self.a, self.b):
            await self.wait_health(node, 200, "ok")
        await on_b.publish("chat:r", "after")
        for sub in (sub_a, sub_b):
            # Redis lost the channel's history: a Gap (new epoch), then the message.
            gap = await asyncio.wait_for(sub.get(), TIMEOUT)
            self.assertIsInstance(gap, Gap)
            item = await asyncio.wait_for(sub.get(), TIMEOUT)
            self.assertEqual(getattr(item, "data", None), "after")

    async def wait_health(self, node: Node, code: int, status: str) -> None:
        """Poll the node's /health until it answers ``code`` with ``status``."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                answer, health = await asyncio.to_thread(node.health)
                if (answer, health["status"]) == (code, status):
                    return
                await asyncio.sleep(0.05)

    async def test_slow_client_on_drop_oldest_channel_keeps_its_connection(self) -> None:
        assert self.b.process is not None
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", self.b.port))
        sock.setblocking(False)
        slow = await connect(
            self.b.url,
            sock=sock,
            max_queue=1,
            compression=None,
            ping_interval=None,
            subprotocols=[SUBPROTOCOL],
        )
        self.addAsyncCleanup(slow.close)
        await recv_json(slow)
        await slow.send(json.dumps({"op": "subscribe", "id": 1, "channel": "ticker"}))
        self.assertEqual((await recv_json(slow))["op"], "reply")
        publisher = await self.client(self.a.url)
        payload = "x" * 20_000
        await publisher.publish("ticker", {"i": -1, "p": payload})
        baseline = memory_kib(self.b.process.pid)
        total = 3000  # 60 MB through node B to a client that reads nothing
        for i in range(total):
            await publisher.publish("ticker", {"i": i, "p": payload})
        grown = memory_kib(self.b.process.pid) - baseline
        self.assertLess(grown, 30_000, f"node B grew by {grown} KiB")
        # The slow client is still connected and gets the latest message in the end.
        last = -2
        async with asyncio.timeout(TIMEOUT):
            while last != total - 1:
                push = await recv_json(slow)
                last = push["data"]["i"]
        _, health = await asyncio.to_thread(self.b.health)
        self.assertEqual(health["hub"]["connections"], 1)


class ServeSubPubTests(unittest.IsolatedAsyncioTestCase):
    """The commands a user types: ``ws13 sub`` on one ``ws13 serve --redis`` node sees
    ``ws13 pub`` on another."""

    async def asyncSetUp(self) -> None:
        redis = RedisServer()
        redis.start()
        self.addCleanup(redis.close)
        self.ports = await serve_nodes(self, redis.url)

    async def ws13(self, *args: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *WS13, *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )  # fmt: skip
        # Never leave it running when the test fails.
        self.addCleanup(lambda: process.returncode is None and process.kill())
        return process

    async def test_sub_on_one_node_sees_pub_on_the_other(self) -> None:
        url_a, url_b = (f"ws://127.0.0.1:{port}/hub" for port in self.ports)
        channel = "chat:cli"  # ws13 serve keeps presence on chat:* channels
        sub = await self.ws13("sub", url_a, channel, "--count", "3")
        # The subscriber is live once it shows in the channel's presence
        # (the hub adds it after the subscribe reply); asked on node B.
        async with Client(url_b) as observer:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    if await observer.presence(channel):
                        break
                    await asyncio.sleep(0.05)
        pub = await self.ws13("pub", url_b, channel)
        _, stderr = await asyncio.wait_for(pub.communicate(b"one\ntwo\nthree\n"), TIMEOUT)
        self.assertEqual((pub.returncode, stderr.decode()), (0, ""))
        stdout, stderr = await asyncio.wait_for(sub.communicate(b""), TIMEOUT)
        self.assertEqual((sub.returncode, stderr.decode()), (0, ""))
        lines = [json.loads(line) for line in stdout.decode().splitlines()]
        self.assertEqual([line["data"] for line in lines], ["one", "two", "three"])
        self.assertEqual([line["offset"] for line in lines], [1, 2, 3])
        self.assertEqual({line["channel"] for line in lines}, {channel})
        self.assertEqual(len({line["epoch"] for line in lines}), 1)

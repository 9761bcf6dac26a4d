"""Tests for the frame inspector of ``ws13 serve`` (``/inspect``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import unittest
from typing import Any

from tests.cli.helpers import ENV, TIMEOUT, wait_for_port
from tests.utils import free_port
from ws13.asyncio import connect
from ws13.cli.inspector import Inspector
from ws13.exceptions import ConnectionClosed, InvalidStatus


class InspectorTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.port = free_port()
        self.server = subprocess.Popen(
            [sys.executable, "-m", "ws13", "serve", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        self.addCleanup(self.stop)
        await asyncio.to_thread(wait_for_port, self.port, self.server)

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=TIMEOUT)

    async def records(self, inspector: Any, count: int) -> list[dict[str, Any]]:
        return [json.loads(await asyncio.wait_for(inspector.recv(), TIMEOUT)) for _ in range(count)]

    async def test_records(self) -> None:
        base = f"ws://127.0.0.1:{self.port}"
        async with connect(base + "/inspect") as inspector:
            (hello,) = await self.records(inspector, 1)
            self.assertEqual(hello["type"], "hello")
            self.assertEqual((hello["preview"], hello["queue_limit"]), (256, 512))
            async with connect(f"{base}/echo?inspect={hello['id']}", compression=None) as ws:
                await ws.send("hi")
                self.assertEqual(await ws.recv(), "hi")
            opened, handshake, sent, echoed, close_in, close_out, closed = await self.records(
                inspector, 7
            )
        self.assertEqual(opened["type"], "open")
        self.assertEqual(opened["path"], f"/echo?inspect={hello['id']}")
        self.assertEqual(opened["conn"], 1)
        self.assertEqual(handshake["type"], "handshake")
        self.assertTrue(handshake["accept_ok"])
        self.assertEqual((sent["from"], sent["mask"], sent["payload_text"]), ("client", True, "hi"))
        self.assertEqual(
            (echoed["from"], echoed["mask"], echoed["payload_text"]), ("server", False, "hi")
        )
        self.assertEqual((close_in["opcode_name"], close_in["close_code"]), ("CLOSE", 1000))
        self.assertEqual((close_out["from"], close_out["close_code"]), ("server", 1000))
        self.assertEqual((closed["type"], closed["code"]), ("close", 1000))
        for record in (sent, echoed, close_in, close_out):
            self.assertEqual(record["conn"], 1)

    async def test_inspector_gone(self) -> None:
        base = f"ws://127.0.0.1:{self.port}"
        async with connect(base + "/inspect") as inspector:
            (hello,) = await self.records(inspector, 1)
        # Its id is no longer valid.
        with self.assertRaises(InvalidStatus) as raised:
            await connect(f"{base}/echo?inspect={hello['id']}")
        self.assertEqual(raised.exception.status, 400)


class FakeConnection:
    """Stands in for the inspector's WebSocket: records what is sent, closes after ``limit``."""

    def __init__(self, limit: int) -> None:
        self.sent: list[dict[str, Any]] = []
        self.limit = limit
        self.full = asyncio.Event()

    async def send(self, message: str) -> None:
        if len(self.sent) >= self.limit:
            raise ConnectionClosed(None, None)
        self.sent.append(json.loads(message))
        if len(self.sent) == self.limit:
            self.full.set()


class SlowInspectorTests(unittest.IsolatedAsyncioTestCase):
    async def test_full_queue_drops_and_counts(self) -> None:
        inspector = Inspector("abc", limit=3)
        for i in range(10):
            inspector.push({"type": "frame", "n": i})
        self.assertEqual(inspector.dropped, 7)
        connection = FakeConnection(limit=4)
        running = asyncio.ensure_future(inspector.run(connection))  # type: ignore[arg-type]
        await asyncio.wait_for(connection.full.wait(), TIMEOUT)
        # The next record finds the connection closed: run() ends.
        inspector.push({"type": "frame", "n": 10})
        await asyncio.wait_for(running, TIMEOUT)
        self.assertEqual(
            connection.sent,
            [
                {"type": "hello", "id": "abc", "preview": 256, "queue_limit": 3},
                {"type": "frame", "n": 0, "dropped": 7},
                {"type": "frame", "n": 1},
                {"type": "frame", "n": 2},
            ],
        )
        # Closed: pushing does nothing.
        inspector.push({"type": "frame"})
        self.assertTrue(inspector.closed)

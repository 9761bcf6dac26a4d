"""A hub connection's outbound queue: write coalescing, ordering, the publish rate limit."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from typing import Any

from ws13.asyncio.client import ClientConnection
from ws13.exceptions import ConnectionClosed
from ws13.hub import ChannelOptions, Hub, Policy, Session
from ws13.hub.backplanes.local import LocalBackplane
from ws13.hub.backplanes.localowner import serve_owner
from ws13.hub.cli import add_serve_arguments, start_hub
from ws13.hub.client import Client

from .helpers import HubTestCase, recv_json


def session_of(hub: Hub, ws: ClientConnection) -> Session:
    """The hub's session for the client connection ``ws``."""
    (session,) = (
        s for s in hub.sessions if s.transport.connection.remote_address == ws.local_address
    )
    return session


def record_writes(session: Session) -> list[bytes]:
    """Every ``transport.write`` to ``session``'s socket from now on."""
    transport: Any = session.transport.connection.transport
    writes: list[bytes] = []
    write = transport.write

    def recording(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    transport.write = recording
    return writes


class CoalescingTests(HubTestCase):
    async def test_publishes_in_one_iteration_reach_a_subscriber_in_one_write(self) -> None:
        hub, server = await self.start_hub()
        ws = await self.raw(server)
        await self.request(ws, op="subscribe", id=1, channel="ticker")
        writes = record_writes(session_of(hub, ws))
        for i in range(5):  # the in-memory backplane doesn't yield: one iteration
            await hub.publish("ticker", i)
        pushes = [await recv_json(ws) for _ in range(5)]
        self.assertEqual([p["data"] for p in pushes], [0, 1, 2, 3, 4])
        self.assertEqual([p["offset"] for p in pushes], [1, 2, 3, 4, 5])
        self.assertEqual(len(writes), 1)
        self.assertEqual(writes[0].count(b'"op":"message"'), 5)

    async def test_one_flush_callback_per_iteration_for_all_subscribers(self) -> None:
        hub, server = await self.start_hub()
        clients = [await self.raw(server) for _ in range(3)]
        for ws in clients:
            await self.request(ws, op="subscribe", channel="c")
        loop: Any = asyncio.get_running_loop()
        call_soon = loop.call_soon
        flushes = []

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            if callback == hub.flusher._flush:
                flushes.append(callback)
            return call_soon(callback, *args, **kwargs)

        loop.call_soon = counting
        try:
            for i in range(4):
                await hub.publish("c", i)
        finally:
            del loop.call_soon
        self.assertEqual(len(flushes), 1)
        for ws in clients:
            self.assertEqual([(await recv_json(ws))["data"] for _ in range(4)], [0, 1, 2, 3])

    async def test_after_a_long_flush_the_next_one_waits_and_batches(self) -> None:
        # After a flush that took long (thousands of subscribers), publishes of
        # the following iterations leave together, one write per subscriber.
        hub, server = await self.start_hub()
        ws = await self.raw(server)
        await self.request(ws, op="subscribe", id=1, channel="ticker")
        writes = record_writes(session_of(hub, ws))
        hub.flusher._next = asyncio.get_running_loop().time() + 0.05
        for i in range(3):
            await hub.publish("ticker", i)
            await asyncio.sleep(0)  # a new loop iteration each time
        self.assertEqual([(await recv_json(ws))["data"] for _ in range(3)], [0, 1, 2])
        self.assertEqual(len(writes), 1)
        # A short flush doesn't delay the next one.
        self.assertEqual(hub.flusher._next, 0.0)

    async def test_replies_and_pushes_keep_their_order(self) -> None:
        _, server = await self.start_hub()
        ws = await self.raw(server)
        await self.request(ws, op="subscribe", id=0, channel="echo")
        # Pipelined: the hub handles them back to back, each publish pushing
        # the message to this very connection before replying.
        for i in range(1, 6):
            await ws.send(json.dumps({"op": "publish", "id": i, "channel": "echo", "data": i}))
        received = [await recv_json(ws) for _ in range(10)]
        expected = []
        for i in range(1, 6):
            expected += [("message", i), ("reply", i)]
        self.assertEqual(
            [(m["op"], m["data"] if m["op"] == "message" else m["id"]) for m in received],
            expected,
        )

    async def test_history_replay_larger_than_the_queue_is_not_dropped(self) -> None:
        # The subscribe reply and 600 replayed messages are produced in one
        # iteration: more than max_queue, yet the socket takes them all, so
        # neither policy applies.
        hub, server = await self.start_hub(
            channels={
                "chat": ChannelOptions(history_size=1000, policy=Policy.DISCONNECT),
                "tick": ChannelOptions(history_size=1000, policy=Policy.DROP_OLDEST),
            },
            max_queue=256,
        )
        for name in ("chat", "tick"):
            for i in range(600):
                await hub.publish(name, i)
        ws = await self.raw(server)
        for name in ("chat", "tick"):
            reply = await self.request(ws, op="subscribe", channel=name, history=600)
            self.assertEqual(reply["result"]["offset"], 0)
            data = [(await recv_json(ws))["data"] for _ in range(600)]
            self.assertEqual(data, list(range(600)))
        statistics = hub.statistics()
        self.assertEqual(
            (statistics.get("dropped", 0), statistics.get("slow_disconnects", 0)), (0, 0)
        )

    async def test_the_error_that_crosses_max_errors_arrives_before_the_close(self) -> None:
        _, server = await self.start_hub(max_errors=2)
        ws = await self.raw(server)
        for _ in range(3):
            await ws.send("garbage")
        codes = []
        with self.assertRaises(ConnectionClosed):
            while True:
                codes.append((await recv_json(ws))["code"])
        self.assertEqual(codes, [400, 400, 400])
        self.assertEqual(ws.close_code, 1008)


class PipelinedPublishTests(HubTestCase):
    """Publishes through a backplane in another process don't wait for each other."""

    async def start_local_hub(self, **kwargs: Any) -> tuple[Hub, Any]:
        directory = tempfile.mkdtemp(prefix="ws13-local-")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "owner.sock")
        owner = await serve_owner(path)

        async def close_owner() -> None:
            owner.close()
            await owner.wait_closed()

        self.addAsyncCleanup(close_owner)
        return await self.start_hub(Hub(LocalBackplane(path), **kwargs))

    async def test_publishes_in_flight_together_reply_in_order(self) -> None:
        hub, server = await self.start_local_hub(publish_rate=0)
        ws = await self.raw(server)
        await self.request(ws, op="subscribe", id=0, channel="c")
        for i in range(1, 101):  # more than MAX_PIPELINED
            await ws.send(json.dumps({"op": "publish", "id": i, "channel": "c", "data": i}))
        await ws.send(json.dumps({"op": "history", "id": 101, "channel": "c", "limit": 100}))
        received = [await recv_json(ws) for _ in range(201)]
        replies = [m for m in received if m["op"] == "reply"]
        self.assertEqual([r["id"] for r in replies], list(range(1, 102)))
        self.assertEqual([r["result"]["offset"] for r in replies[:100]], list(range(1, 101)))
        # The history request waited for the publishes before it.
        history = replies[100]["result"]["messages"]
        self.assertEqual([m["data"] for m in history], list(range(1, 101)))
        pushes = [m["data"] for m in received if m["op"] == "message"]
        self.assertEqual(pushes, list(range(1, 101)))
        self.assertEqual(hub.statistics()["published"], 100)

    async def test_a_refusal_is_answered_after_the_publishes_before_it(self) -> None:
        _, server = await self.start_local_hub(publish_rate=10, publish_burst=3, max_errors=100)
        ws = await self.raw(server)
        for i in range(5):
            await ws.send(json.dumps({"op": "publish", "id": i, "channel": "c", "data": i}))
        replies = [await recv_json(ws) for _ in range(5)]
        expected = [("reply", 0), ("reply", 1), ("reply", 2), ("error", 3), ("error", 4)]
        self.assertEqual([(r["op"], r["id"]) for r in replies], expected)


class RateLimitTests(HubTestCase):
    async def test_over_the_limit_gets_429_with_retry_after(self) -> None:
        hub, server = await self.start_hub(publish_rate=10, publish_burst=3, max_errors=100)
        ws = await self.raw(server)
        for i in range(5):
            await ws.send(json.dumps({"op": "publish", "id": i, "channel": "c", "data": i}))
        replies = [await recv_json(ws) for _ in range(5)]
        self.assertEqual([r["op"] for r in replies], ["reply"] * 3 + ["error"] * 2)
        self.assertEqual({r["code"] for r in replies[3:]}, {429})
        self.assertIn("rate limit", replies[3]["message"])
        # The rate too, for clients to pace by.
        self.assertEqual({r["rate"] for r in replies[3:]}, {hub.publish_rate})
        # Each refusal costs a token too: the second waits longer.
        self.assertGreater(replies[3]["retry_after"], 0)
        self.assertGreater(replies[4]["retry_after"], replies[3]["retry_after"])
        self.assertEqual(len(await hub.history("c")), 3)  # refused ones weren't stored
        await asyncio.sleep(replies[4]["retry_after"] / 1000)
        reply = await self.request(ws, op="publish", id=9, channel="c", data=9)
        self.assertEqual((reply["op"], reply["result"]["offset"]), ("reply", 4))

    async def test_python_publishes_are_not_limited(self) -> None:
        hub, _ = await self.start_hub(publish_rate=1, publish_burst=1)
        for i in range(50):
            await hub.publish("c", i)
        self.assertEqual(len(await hub.history("c")), 50)

    async def test_ignoring_refusals_closes_with_1008(self) -> None:
        _, server = await self.start_hub(publish_rate=1, publish_burst=2, max_errors=5)
        ws = await self.raw(server)
        bystander = await self.raw(server)
        codes = []
        with self.assertRaises(ConnectionClosed):
            for i in range(50):
                await ws.send(json.dumps({"op": "publish", "id": i, "channel": "c", "data": i}))
            while True:
                codes.append((await recv_json(ws)).get("code"))
        self.assertEqual(ws.close_code, 1008)
        self.assertIn("rate limit", ws.close_reason)
        self.assertEqual(codes[:2], [None, None])
        self.assertEqual(set(codes[2:]), {429})
        self.assertLessEqual(len(codes), 2 + 6)
        self.assertEqual((await self.request(bystander, op="ping", id=1))["op"], "reply")

    async def test_client_waits_and_retries(self) -> None:
        hub, server = await self.start_hub(publish_rate=50, publish_burst=2)
        async with Client(self.url(server)) as client:
            started = time.monotonic()
            offsets = [(await client.publish("c", i))["offset"] for i in range(7)]
            elapsed = time.monotonic() - started
        self.assertEqual(offsets, list(range(1, 8)))
        self.assertGreaterEqual(elapsed, 0.09)  # 5 publishes beyond the burst at 50/s
        self.assertEqual([e.data for e in await hub.history("c")], [str(i) for i in range(7)])

    async def test_ws13_serve_option(self) -> None:
        parser = argparse.ArgumentParser()
        add_serve_arguments(parser)
        for argv, rate, burst in (([], 100, 200), (["--hub-publish-rate", "5"], 5, 10)):
            hub = await start_hub(parser.parse_args(["--hub-ticker", "0", *argv]))
            await hub.aclose()
            self.assertEqual((hub.publish_rate, hub.publish_burst), (rate, burst))
        hub = await start_hub(parser.parse_args(["--hub-ticker", "0", "--hub-publish-rate", "0"]))
        await hub.aclose()
        self.assertEqual(hub.publish_rate, 0)
        with self.assertRaises(ValueError):
            await start_hub(parser.parse_args(["--hub-publish-rate", "-1"]))

    def test_bad_arguments(self) -> None:
        with self.assertRaises(ValueError):
            Hub(publish_rate=-1)
        with self.assertRaises(ValueError):
            Hub(publish_burst=0)

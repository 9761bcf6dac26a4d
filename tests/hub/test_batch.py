"""A channel's batch: one shared buffer per flush for its idle subscribers, in order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ws13.asyncio.client import ClientConnection
from ws13.hub import ChannelOptions, Hub, Policy, Session

from .helpers import HubTestCase, recv_json, wait_until


def session_of(hub: Hub, ws: ClientConnection) -> Session:
    """The hub's session for the client connection ``ws``."""
    (session,) = (
        s for s in hub.sessions if s.transport.connection.remote_address == ws.local_address
    )
    return session


def record_writes(session: Session) -> list[Any]:
    """Every buffer written to ``session``'s socket from now on (the objects themselves)."""
    transport: Any = session.transport.connection.transport
    writes: list[Any] = []
    write = transport.write

    def recording(data: Any) -> None:
        writes.append(data)
        write(data)

    transport.write = recording
    return writes


async def data_of(ws: ClientConnection, count: int) -> list[Any]:
    """The ``data`` of the next ``count`` pushes (messages only)."""
    return [(await recv_json(ws))["data"] for _ in range(count)]


class SharedBufferTests(HubTestCase):
    async def test_every_idle_subscriber_gets_the_same_buffer_in_one_write(self) -> None:
        hub, server = await self.start_hub()
        clients = [await self.raw(server) for _ in range(3)]
        for ws in clients:
            await self.request(ws, op="subscribe", channel="ticker")
        writes = [record_writes(session_of(hub, ws)) for ws in clients]
        for i in range(4):  # the in-memory backplane doesn't yield: one flush
            await hub.publish("ticker", i)
        for ws in clients:
            self.assertEqual(await data_of(ws, 4), [0, 1, 2, 3])
        self.assertEqual([len(w) for w in writes], [1, 1, 1])
        # Joined once: one object for all, not a copy per subscriber.
        self.assertIs(writes[0][0], writes[1][0])
        self.assertIs(writes[0][0], writes[2][0])
        self.assertEqual(hub.statistics()["delivered"], 12)

    async def test_a_subscriber_live_mid_batch_gets_only_what_follows(self) -> None:
        hub, server = await self.start_hub()
        first = await self.raw(server)
        await self.request(first, op="subscribe", channel="ticker")
        # Hold the flush back, as after a long one, so that the batch spans
        # the second subscriber's subscribe.
        hub.flusher._next = asyncio.get_running_loop().time() + 0.5
        await hub.publish("ticker", 0)
        second = await self.raw(server)
        await second.send(json.dumps({"op": "subscribe", "id": 1, "channel": "ticker"}))
        channel = hub._channels["ticker"]
        await wait_until(lambda: len(channel.batch.sessions) == 2)
        await hub.publish("ticker", 1)
        self.assertEqual(await data_of(first, 2), [0, 1])
        reply = await recv_json(second)
        self.assertEqual((reply["op"], reply["result"]["offset"]), ("reply", 1))
        self.assertEqual(await data_of(second, 1), [1])

    async def test_replies_between_batched_messages_keep_their_place(self) -> None:
        hub, server = await self.start_hub()
        ws = await self.raw(server)
        await self.request(ws, op="subscribe", channel="c")
        hub.flusher._next = asyncio.get_running_loop().time() + 0.2
        await hub.publish("c", "before")
        await ws.send(json.dumps({"op": "ping", "id": 7}))
        session = session_of(hub, ws)
        await wait_until(lambda: session.queued > 0)  # the reply, with the message before it
        await hub.publish("c", "after")
        received = [await recv_json(ws) for _ in range(3)]
        self.assertEqual([m.get("data", m.get("id")) for m in received], ["before", 7, "after"])


class SeveralChannelsTests(HubTestCase):
    async def test_messages_of_several_channels_keep_their_order(self) -> None:
        hub, server = await self.start_hub()
        ws = await self.raw(server)
        for name in ("a", "b"):
            await self.request(ws, op="subscribe", channel=name)
        for i in range(6):
            await hub.publish("ab"[i % 2], i)
        received = [await recv_json(ws) for _ in range(6)]
        self.assertEqual([(m["channel"], m["data"]) for m in received],
                         [("a", 0), ("b", 1), ("a", 2), ("b", 3), ("a", 4), ("b", 5)])  # fmt: skip

    async def test_after_unsubscribing_the_other_channel_shares_again(self) -> None:
        hub, server = await self.start_hub()
        ws = await self.raw(server)
        for name in ("a", "b"):
            await self.request(ws, op="subscribe", channel=name)
        session = session_of(hub, ws)
        channel = hub._channels["a"]
        self.assertNotIn(session, channel.batch.sessions)
        hub.flusher._next = asyncio.get_running_loop().time() + 0.2
        await hub.publish("a", 0)  # pushed to its queue, message by message
        reply = await self.request(ws, op="unsubscribe", id=2, channel="b")
        self.assertEqual(reply["op"], "reply")
        self.assertIn(session, channel.batch.sessions)
        for i in range(1, 4):
            await hub.publish("a", i)
        received = [await recv_json(ws) for _ in range(3)]
        self.assertEqual([m["data"] for m in received], [1, 2, 3])


class SlowSubscriberTests(HubTestCase):
    async def test_a_slow_subscriber_drops_oldest_while_the_others_get_everything(self) -> None:
        hub, server = await self.start_hub(
            channels={"ticker": ChannelOptions(policy=Policy.DROP_OLDEST, history_size=0)},
            max_queue=8,
        )
        fast = await self.raw(server)
        slow = await self.slow_client(server)
        for ws in (fast, slow):
            await self.request(ws, op="subscribe", channel="ticker")
        slow_session = session_of(hub, slow)
        payload = "x" * 8000
        received: list[int] = []

        async def read_fast() -> None:
            while len(received) < 400:
                received.append((await recv_json(fast))["offset"])

        reader = asyncio.get_running_loop().create_task(read_fast())
        for i in range(400):
            await hub.publish("ticker", {"i": i, "p": payload})
            await asyncio.sleep(0)
        await asyncio.wait_for(reader, 10)
        self.assertEqual(received, list(range(1, 401)))
        await wait_until(lambda: slow_session.dropped > 0)
        self.assertFalse(slow_session.closing)
        # The slow one reads what is left: the latest, in order, up to the last.
        offsets: list[int] = []
        while not offsets or offsets[-1] < 400:
            offsets.append((await recv_json(slow))["offset"])
        self.assertEqual(offsets, sorted(offsets))
        self.assertLess(len(offsets), 400)

"""ws13.hub.Client against a real hub: operations, reconnect, recovery, gaps."""

from __future__ import annotations

import asyncio
import json

from ws13.asyncio import serve
from ws13.hub import SUBPROTOCOL, ChannelOptions, ErrorCode, Hub, HubError
from ws13.hub.client import Client, ConnectionLost, Gap, Message

from .helpers import TIMEOUT, HubTestCase, wait_until


class ClientTests(HubTestCase):
    async def client(self, url: str, **kwargs: object) -> Client:
        client = Client(url, backoff_min=0.02, backoff_max=0.2, **kwargs)  # type: ignore[arg-type]
        await asyncio.wait_for(client.connect(), TIMEOUT)
        self.addAsyncCleanup(client.close)
        return client

    async def test_operations(self) -> None:
        _, server = await self.start_hub(channels={"room": ChannelOptions(presence=True)})
        client = await self.client(self.url(server))
        received: list[Message | Gap] = []
        await client.subscribe("room", received.append)
        iterated = await client.subscribe("other")
        reply = await client.publish("room", {"a": 1})
        self.assertEqual(reply["offset"], 1)
        await client.publish("other", "x")
        item = await asyncio.wait_for(iterated.get(), TIMEOUT)
        self.assertEqual((item.channel, getattr(item, "data", None)), ("other", "x"))
        await wait_until(lambda: len(received) == 1)
        self.assertEqual(getattr(received[0], "data", None), {"a": 1})
        history = await client.history("room", limit=5)
        self.assertEqual([m["data"] for m in history["messages"]], [{"a": 1}])
        self.assertEqual([m["client"] for m in await client.presence("room")], [client.client_id])
        with self.assertRaises(HubError) as caught:
            await client.presence("other")
        self.assertEqual(caught.exception.code, ErrorCode.FORBIDDEN)
        with self.assertRaises(HubError):
            await client.subscribe("room")
        await iterated.unsubscribe()
        self.assertEqual([i async for i in iterated], [])

    async def test_first_connection_failure_raises(self) -> None:
        _, server = await self.start_hub()
        with self.assertRaises(OSError):
            await Client("ws://127.0.0.1:1/hub").connect()
        # With several URLs, the first that works is used.
        client = Client(["ws://127.0.0.1:1/hub", self.url(server)])
        await client.connect()
        self.assertEqual(client.url, self.url(server))
        await client.close()
        with self.assertRaises(ConnectionLost):
            await client.publish("c", 1)

    async def test_backoff_doubles_with_jitter_and_a_cap(self) -> None:
        client = Client("ws://127.0.0.1:1/hub", backoff_min=1, backoff_max=30)
        for attempt, delay in [(0, 1), (1, 2), (2, 4), (4, 16), (5, 30), (1000, 30)]:
            for _ in range(20):
                self.assertTrue(delay / 2 <= client.backoff(attempt) <= delay)

    async def test_reconnect_recovers_what_was_missed(self) -> None:
        hub, server = await self.start_hub()
        client = await self.client(self.url(server))
        subscription = await client.subscribe("chat")
        await hub.publish("chat", 0)
        self.assertEqual(getattr(await subscription.get(), "data", None), 0)
        # Drop the connection; publish while the client is away.
        (session,) = hub.sessions
        assert session.transport.connection.transport is not None
        session.transport.connection.transport.abort()
        await wait_until(lambda: not client.connected)
        for i in range(1, 6):
            await hub.publish("chat", i)
        items = [await asyncio.wait_for(subscription.get(), TIMEOUT) for _ in range(5)]
        self.assertEqual([getattr(i, "data", None) for i in items], [1, 2, 3, 4, 5])
        self.assertEqual(client.connections, 2)
        await hub.publish("chat", 6)
        self.assertEqual(getattr(await subscription.get(), "offset", None), 7)

    async def test_server_restart_is_a_gap(self) -> None:
        hub = Hub()
        await hub.start()
        server = await serve(
            hub.handler, "127.0.0.1", 0, process_request=hub.process_request,
            subprotocols=[SUBPROTOCOL],
        )  # fmt: skip
        port = server.port
        client = await self.client(f"ws://127.0.0.1:{port}/hub")
        subscription = await client.subscribe("chat")
        await hub.publish("chat", "old")
        await subscription.get()
        server.close()
        await server.wait_closed()
        await hub.aclose()
        # A new process: the in-memory history is gone, and so is the epoch.
        hub2, _ = await self.start_hub_on(port)
        await wait_until(lambda: client.connected)
        gap = await asyncio.wait_for(subscription.get(), TIMEOUT)
        assert isinstance(gap, Gap)
        self.assertIn("epoch", gap.reason)
        await hub2.publish("chat", "new")
        item = await asyncio.wait_for(subscription.get(), TIMEOUT)
        self.assertEqual((getattr(item, "data", None), getattr(item, "offset", None)), ("new", 1))

    async def start_hub_on(self, port: int) -> tuple[Hub, object]:
        hub = Hub()
        await hub.start()
        server = await serve(
            hub.handler, "127.0.0.1", port, process_request=hub.process_request,
            subprotocols=[SUBPROTOCOL],
        )  # fmt: skip
        self.addAsyncCleanup(self._stop, hub, server)
        return hub, server

    async def test_error_replies_raise(self) -> None:
        _, server = await self.start_hub(max_data_size=10)
        client = await self.client(self.url(server))
        with self.assertRaises(HubError) as caught:
            await client.publish("c", "x" * 100)
        self.assertEqual(caught.exception.code, ErrorCode.TOO_LARGE)
        with self.assertRaises(HubError) as caught:
            await client.publish("bad channel", 1)
        self.assertEqual(caught.exception.code, ErrorCode.BAD_REQUEST)
        self.assertEqual(json.loads(json.dumps(await client.history("c")))["messages"], [])

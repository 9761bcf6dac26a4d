"""ws13.hub.Client against a real hub: operations, reconnect, recovery, gaps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ws13.asyncio import serve
from ws13.hub import SUBPROTOCOL, ChannelOptions, ErrorCode, Hub, HubError
from ws13.hub.client import Client, ConnectionLost, Gap, Message, _PublishGate

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


class PublishGateTests(HubTestCase):
    """Publishes refused over the rate limit retry one at a time, behind each other."""

    async def client(self, hub: Hub, server: object, **kwargs: object) -> Client:
        client = Client(
            f"ws://127.0.0.1:{server.port}/hub",  # type: ignore[attr-defined]
            backoff_min=0.02, backoff_max=0.2, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
        await asyncio.wait_for(client.connect(), TIMEOUT)
        self.addAsyncCleanup(client.close)
        return client

    def count_refusals(self, client: Client) -> list[float | None]:
        """A list that grows by one for each 429 a request of ``client`` meets:
        the ``rate`` the hub sent with it."""
        refused: list[float | None] = []
        request = client._request

        async def counting(*args: Any) -> dict[str, Any]:
            try:
                return await request(*args)
            except HubError as exc:
                if exc.code == ErrorCode.TOO_MANY:
                    refused.append(exc.rate)
                raise

        client._request = counting  # type: ignore[method-assign,assignment]
        return refused

    async def test_concurrent_publishes_over_the_limit_all_succeed(self) -> None:
        # One token at once, then one every 50 ms: of 8 publishes made together
        # (and one caller's sequential ones beside them), all but the first are
        # refused first, which puts the connection 8 tokens in debt; retried
        # together, they used to sink deeper until the 1008 close at max_errors.
        hub, server = await self.start_hub(publish_rate=20.0, publish_burst=1)
        client = await self.client(hub, server)
        refused = self.count_refusals(client)

        async def one_by_one() -> list[int]:
            return [(await client.publish("seq", i))["offset"] for i in range(8)]

        sequential, *together = await asyncio.wait_for(
            asyncio.gather(one_by_one(), *(client.publish("all", i) for i in range(8))),
            TIMEOUT,
        )
        self.assertEqual(sequential, list(range(1, 9)))
        self.assertEqual(sorted(reply["offset"] for reply in together), list(range(1, 9)))
        self.assertGreater(len(refused), 0)
        # Never closed: the same connection and session throughout.
        self.assertEqual(client.connections, 1)
        self.assertTrue(client.connected)
        (session,) = hub.sessions
        self.assertFalse(session.closing)
        # Each stored once, in the order of the sequential caller.
        page = await hub.backplane.history("seq", ttl=60)
        self.assertEqual([int(e.data) for e in page.entries], list(range(8)))
        page = await hub.backplane.history("all", ttl=60)
        self.assertEqual(sorted(int(e.data) for e in page.entries), list(range(8)))

    async def test_a_loop_over_the_limit_is_paced_at_the_full_rate(self) -> None:
        # One token at once, then one every 50 ms. Not knowing the rate, the
        # client sent each publish after a retry at once, into an empty
        # bucket: every other one was refused (about 10 of 20), half the rate.
        # Told the rate by the first 429, it sends the next publish a token later.
        hub, server = await self.start_hub(publish_rate=20.0, publish_burst=1)
        client = await self.client(hub, server)
        refused = self.count_refusals(client)
        offsets = [
            (await asyncio.wait_for(client.publish("c", i), TIMEOUT))["offset"] for i in range(20)
        ]
        self.assertEqual(offsets, list(range(1, 21)))
        self.assertGreater(len(refused), 0)
        self.assertLessEqual(len(refused), 2)
        # Each 429 said the hub's rate.
        self.assertEqual(set(refused), {hub.publish_rate})
        page = await hub.backplane.history("c", ttl=60)
        self.assertEqual([int(e.data) for e in page.entries], list(range(20)))
        self.assertEqual(client.connections, 1)

    async def test_without_the_rate_the_gate_does_not_pace(self) -> None:
        # An older hub's 429 has no rate: after a publish goes through at the
        # gate, the next one goes straight to the hub, as before.
        gate = _PublishGate()
        self.assertTrue(gate.refused(HubError(ErrorCode.TOO_MANY, "", retry_after=0.0)))
        gate.passed()
        self.assertTrue(gate.idle)
        # Told the rate, the next waits a token's time (10 s here) at the gate.
        self.assertTrue(gate.refused(HubError(ErrorCode.TOO_MANY, "", retry_after=0.0, rate=0.1)))
        gate.passed()
        self.assertFalse(gate.idle)

    async def test_publishes_waiting_at_the_gate_fail_when_the_connection_drops(self) -> None:
        # A token every 20 s: the refused publishes would wait 40 s and more.
        hub, server = await self.start_hub(publish_rate=0.05, publish_burst=1)
        client = await self.client(hub, server)
        tasks = [asyncio.ensure_future(client.publish("c", i)) for i in range(3)]
        await wait_until(lambda: client._gate.queued == 2)
        self.assertEqual((await tasks[0])["offset"], 1)
        (session,) = hub.sessions
        assert session.transport.connection.transport is not None
        session.transport.connection.transport.abort()
        for task in tasks[1:]:
            with self.assertRaises(ConnectionLost):
                await asyncio.wait_for(task, TIMEOUT)
        # The new connection has a fresh bucket on the hub and a fresh gate.
        await wait_until(lambda: client.connected)
        reply = await asyncio.wait_for(client.publish("c", "again"), TIMEOUT)
        self.assertEqual(reply["offset"], 2)
        page = await hub.backplane.history("c", ttl=60)
        self.assertEqual([e.data for e in page.entries], ["0", '"again"'])

    async def test_publishes_waiting_at_the_gate_fail_when_the_client_closes(self) -> None:
        hub, server = await self.start_hub(publish_rate=0.05, publish_burst=1)
        client = await self.client(hub, server)
        tasks = [asyncio.ensure_future(client.publish("c", i)) for i in range(3)]
        await wait_until(lambda: client._gate.queued == 2)
        await asyncio.wait_for(client.close(), TIMEOUT)
        self.assertEqual((await tasks[0])["offset"], 1)
        for task in tasks[1:]:
            with self.assertRaises(ConnectionLost):
                await asyncio.wait_for(task, TIMEOUT)

    async def test_a_cancelled_publish_leaves_the_gate_open(self) -> None:
        # A token every 0.25 s: the first refused retries after 0.5 s, time
        # enough to see the three at the gate before it does.
        hub, server = await self.start_hub(publish_rate=4.0, publish_burst=1)
        client = await self.client(hub, server)
        tasks = [asyncio.ensure_future(client.publish("c", i)) for i in range(4)]
        await wait_until(lambda: client._gate.queued == 3)
        # The one retrying first (waiting for retry_after) and one behind it.
        tasks[1].cancel()
        tasks[2].cancel()
        self.assertEqual((await asyncio.wait_for(tasks[3], TIMEOUT))["offset"], 2)
        await wait_until(lambda: client._gate.queued == 0)
        later = await asyncio.wait_for(client.publish("c", 4), TIMEOUT)
        self.assertEqual(later["offset"], 3)
        self.assertEqual((await tasks[0])["offset"], 1)
        for task in tasks[1:3]:
            self.assertTrue(task.cancelled())
        page = await hub.backplane.history("c", ttl=60)
        self.assertEqual([int(e.data) for e in page.entries], [0, 3, 4])
        self.assertEqual(client.connections, 1)

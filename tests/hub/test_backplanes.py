"""One contract suite, run against every backplane (Redis on a real redis-server,
the local backplane on its real owner over a Unix socket)."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import tempfile
import unittest
from typing import TYPE_CHECKING, Any

from tests.utils import MS
from ws13.hub import Backplane, BackplaneUnavailable, Entry, Member, open_backplane
from ws13.hub.backplanes.local import LocalBackplane, encode
from ws13.hub.backplanes.localowner import Owner, serve_owner
from ws13.hub.backplanes.memory import InMemoryBackplane
from ws13.hub.backplanes.redis import RedisBackplane

from .helpers import TIMEOUT, WithRedis, wait_until

TTL = 300.0
_prefixes = itertools.count()


class RecordingListener:
    """A BackplaneListener that records what it is told."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.events: list[tuple[str, str, str]] = []
        self.resyncs = 0
        self.changed = asyncio.Event()

    def on_message(self, entry: Entry) -> None:
        self.entries.append(entry)
        self.changed.set()

    def on_event(self, channel: str, kind: str, member: str) -> None:
        self.events.append((channel, kind, member))
        self.changed.set()

    def on_resync(self) -> None:
        self.resyncs += 1
        self.changed.set()

    async def wait_for(self, predicate: Any) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


# The contract is a mixin, so that no runner collects it alone; type
# checkers see the TestCase it is mixed into.
_TestCase = unittest.IsolatedAsyncioTestCase if TYPE_CHECKING else object


class BackplaneContract(_TestCase):
    """The behaviour every Backplane must have, mixed into an
    ``IsolatedAsyncioTestCase`` (here and in ``test_rediscluster``) that
    provides ``make()``.
    """

    backplane: Backplane
    listener: RecordingListener

    def make(self) -> Backplane:
        raise NotImplementedError

    async def asyncSetUp(self) -> None:
        self.backplane = self.make()
        self.listener = RecordingListener()
        self.backplane.attach(self.listener)
        await self.backplane.start()
        self.addAsyncCleanup(self.backplane.aclose)

    async def publish(self, channel: str, data: str, size: int = 100, ttl: float = TTL) -> Entry:
        return await self.backplane.publish(channel, data, history_size=size, ttl=ttl)

    async def test_offsets_are_consecutive_in_one_epoch(self) -> None:
        entries = [await self.publish("c", str(i)) for i in range(5)]
        self.assertEqual([e.offset for e in entries], [1, 2, 3, 4, 5])
        self.assertEqual(len({e.epoch for e in entries}), 1)
        self.assertEqual([e.data for e in entries], ["0", "1", "2", "3", "4"])

    async def test_channels_are_independent(self) -> None:
        await self.publish("a", "1")
        await self.publish("a", "2")
        entry = await self.publish("b", "1")
        self.assertEqual(entry.offset, 1)

    async def test_empty_channel_has_a_stable_epoch(self) -> None:
        page = await self.backplane.history("new", ttl=TTL)
        self.assertEqual((page.top, page.entries), (0, []))
        again = await self.backplane.history("new", ttl=TTL)
        entry = await self.publish("new", "1")
        self.assertEqual(again.epoch, page.epoch)
        self.assertEqual(entry.epoch, page.epoch)

    async def test_history_last_and_since(self) -> None:
        for i in range(10):
            await self.publish("h", f'"{i}"')
        page = await self.backplane.history("h", limit=3, ttl=TTL)
        self.assertEqual([e.offset for e in page.entries], [8, 9, 10])
        self.assertEqual(page.top, 10)
        page = await self.backplane.history("h", since=4, limit=2, ttl=TTL)
        self.assertEqual([e.offset for e in page.entries], [5, 6])
        page = await self.backplane.history("h", since=7, ttl=TTL)
        self.assertEqual([e.data for e in page.entries], ['"7"', '"8"', '"9"'])
        page = await self.backplane.history("h", since=10, ttl=TTL)
        self.assertEqual(page.entries, [])
        page = await self.backplane.history("h", limit=0, ttl=TTL)
        self.assertEqual((page.entries, page.top), ([], 10))
        page = await self.backplane.history("h", ttl=TTL)
        self.assertEqual(len(page.entries), 10)

    async def test_history_last_when_fewer_are_kept(self) -> None:
        # Asking for the last 3 when 2 are kept gives both, not the last one.
        for i in range(2):
            await self.publish("few", f'"{i}"')
        page = await self.backplane.history("few", limit=3, ttl=TTL)
        self.assertEqual([e.offset for e in page.entries], [1, 2])

    async def test_history_is_bounded_by_count(self) -> None:
        for i in range(8):
            await self.publish("n", str(i), size=3)
        page = await self.backplane.history("n", since=0, ttl=TTL)
        self.assertEqual([e.offset for e in page.entries], [6, 7, 8])

    async def test_no_history_still_counts_offsets(self) -> None:
        await self.publish("z", "1", size=0)
        entry = await self.publish("z", "2", size=0)
        page = await self.backplane.history("z", ttl=TTL)
        self.assertEqual((entry.offset, page.top, page.entries), (2, 2, []))

    async def test_history_is_bounded_by_age(self) -> None:
        await self.publish("old", "1", ttl=10)
        await asyncio.sleep(50 * MS)
        # Read with a TTL shorter than the message's age: it is gone.
        page = await self.backplane.history("old", since=0, ttl=0.02)
        self.assertEqual(page.entries, [])
        page = await self.backplane.history("old", since=0, ttl=10)
        self.assertEqual(len(page.entries), 1)

    async def test_non_ascii_data(self) -> None:
        await self.publish("u", '"héllo ✓ \\u0000"')
        page = await self.backplane.history("u", ttl=TTL)
        self.assertEqual(page.entries[0].data, '"héllo ✓ \\u0000"')

    async def test_subscribed_channels_reach_the_listener_in_order(self) -> None:
        await self.backplane.subscribe("live")
        for i in range(20):
            await self.publish("live", str(i))
            await self.publish("other", str(i))
        await self.listener.wait_for(lambda: len(self.listener.entries) >= 20)
        self.assertEqual([e.offset for e in self.listener.entries], list(range(1, 21)))
        self.assertEqual({e.channel for e in self.listener.entries}, {"live"})

    async def test_unsubscribe_stops_delivery(self) -> None:
        await self.backplane.subscribe("s")
        await self.publish("s", "1")
        await self.listener.wait_for(lambda: len(self.listener.entries) == 1)
        self.backplane.unsubscribe("s")
        await self.publish("s", "2")
        await self.backplane.subscribe("marker")
        await self.publish("marker", "3")
        await self.listener.wait_for(lambda: len(self.listener.entries) == 2)
        self.assertEqual(
            [(e.channel, e.data) for e in self.listener.entries], [("s", "1"), ("marker", "3")]
        )

    async def test_resubscribe_after_unsubscribe(self) -> None:
        await self.backplane.subscribe("r")
        self.backplane.unsubscribe("r")
        await self.backplane.subscribe("r")
        await self.publish("r", "1")
        await self.listener.wait_for(lambda: len(self.listener.entries) == 1)

    async def test_events(self) -> None:
        await self.backplane.subscribe("ev")
        await self.backplane.publish_event("ev", "join", Member("c1", "ann", {"nick": "A"}))
        await self.listener.wait_for(lambda: self.listener.events)
        channel, kind, member = self.listener.events[0]
        self.assertEqual((channel, kind), ("ev", "join"))
        self.assertIn('"user":"ann"', member)

    async def test_presence(self) -> None:
        await self.backplane.presence_add("p", Member("c1", "ann", {"n": 1}), 60)
        await self.backplane.presence_add("p", Member("c2", None, None), 60)
        await self.backplane.presence_add("q", Member("c3"), 60)
        members = await self.backplane.presence("p")
        self.assertEqual(sorted(m.client for m in members), ["c1", "c2"])
        await self.backplane.presence_remove("p", "c1")
        members = await self.backplane.presence("p")
        self.assertEqual([m.to_json() for m in members], [Member("c2").to_json()])
        await self.backplane.presence_remove("p", "c2")
        self.assertEqual(await self.backplane.presence("p"), [])

    async def test_status(self) -> None:
        self.assertTrue(self.backplane.healthy)
        self.assertTrue(self.backplane.status()["healthy"])


class UnreachableContract(_TestCase):
    """What a networked backplane does without its server, mixed in like
    ``BackplaneContract``; ``unreachable()`` makes one pointed at nothing."""

    def unreachable(self) -> Backplane:
        raise NotImplementedError

    async def test_starts_degraded_without_its_server(self) -> None:
        backplane = self.unreachable()
        await backplane.start()
        try:
            self.assertFalse(backplane.healthy)
            self.assertIn("error", backplane.status())
            with self.assertRaises(BackplaneUnavailable):
                await backplane.subscribe("c")
            with self.assertRaises(BackplaneUnavailable):
                await backplane.presence("c")
        finally:
            await backplane.aclose()


class InMemoryBackplaneTests(BackplaneContract, unittest.IsolatedAsyncioTestCase):
    def make(self) -> Backplane:
        return InMemoryBackplane()

    async def test_a_new_backplane_is_a_new_epoch(self) -> None:
        entry = await self.publish("c", "1")
        other = InMemoryBackplane()
        again = await other.publish("c", "1", history_size=10, ttl=TTL)
        self.assertNotEqual(entry.epoch, again.epoch)

    async def test_open_backplane(self) -> None:
        self.assertIsInstance(open_backplane(None), InMemoryBackplane)
        self.assertIsInstance(open_backplane("memory://"), InMemoryBackplane)
        with self.assertRaises(ValueError):
            open_backplane("http://example/")


class RedisBackplaneTests(
    WithRedis, BackplaneContract, UnreachableContract, unittest.IsolatedAsyncioTestCase
):
    def make(self) -> Backplane:
        # A fresh key prefix per test instead of FLUSHALL between tests.
        return RedisBackplane(
            self.redis.url, prefix=f"t{next(_prefixes)}:", timeout=2, retry_max=0.2
        )

    async def test_open_backplane(self) -> None:
        backplane = open_backplane(self.redis.url)
        self.assertIsInstance(backplane, RedisBackplane)
        await backplane.aclose()

    async def test_redis_restart_degrades_then_recovers_with_a_new_epoch(self) -> None:
        await self.backplane.subscribe("x")
        before = await self.publish("x", "1")
        self.redis.stop()
        try:
            await wait_until(lambda: not self.backplane.healthy)
            with self.assertRaises(BackplaneUnavailable):
                await self.publish("x", "2")
            with self.assertRaises(BackplaneUnavailable):
                await self.backplane.history("x", ttl=TTL)
            self.assertEqual(self.backplane.status()["healthy"], False)
        finally:
            self.redis.start()
        await self.listener.wait_for(lambda: self.listener.resyncs == 1)
        self.assertTrue(self.backplane.healthy)
        after = await self.publish("x", "3")
        # Redis lost its keys: offsets restart in a new epoch.
        self.assertNotEqual(after.epoch, before.epoch)
        self.assertEqual(after.offset, 1)
        # And the channel is subscribed again.
        await self.listener.wait_for(lambda: self.listener.entries[-1].data == "3")

    async def test_a_master_refusing_writes_is_unavailable(self) -> None:
        # min-replicas-to-write with no replica: Redis answers NOREPLICAS,
        # which is "not now" (503 at the hub), not a bug.
        config = ["redis-cli", "-p", str(self.redis.port), "CONFIG", "SET", "min-replicas-to-write"]
        subprocess.run([*config, "1"], check=True, capture_output=True)
        try:
            with self.assertRaisesRegex(BackplaneUnavailable, "^redis: NOREPLICAS"):
                await self.publish("x", "1")
        finally:
            subprocess.run([*config, "0"], check=True, capture_output=True)
        self.assertEqual((await self.publish("x", "2")).offset, 1)

    def unreachable(self) -> Backplane:
        return RedisBackplane("redis://127.0.0.1:1/0", timeout=0.2)


class LocalBackplaneTests(BackplaneContract, UnreachableContract, unittest.IsolatedAsyncioTestCase):
    owner: Owner

    async def asyncSetUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="ws13-local-")
        self.addCleanup(shutil.rmtree, directory)
        self.path = os.path.join(directory, "owner.sock")
        self.owner = await serve_owner(self.path)
        self.addAsyncCleanup(self.close_owner)
        await super().asyncSetUp()

    async def close_owner(self) -> None:
        self.owner.close()
        await self.owner.wait_closed()

    def make(self) -> Backplane:
        return LocalBackplane(self.path, timeout=2, retry_max=0.1)

    async def test_open_backplane(self) -> None:
        backplane = open_backplane(f"local://{self.path}")
        self.assertIsInstance(backplane, LocalBackplane)
        with self.assertRaises(ValueError):
            open_backplane("local://relative/path")

    async def test_two_clients_share_history_and_fan_out(self) -> None:
        other = LocalBackplane(self.path)
        listener = RecordingListener()
        other.attach(listener)
        await other.start()
        self.addAsyncCleanup(other.aclose)
        await other.subscribe("chat")
        await self.backplane.subscribe("chat")
        entry = await self.publish("chat", '"hi"')
        await listener.wait_for(lambda: listener.entries)
        await self.listener.wait_for(lambda: self.listener.entries)
        self.assertEqual(listener.entries, [entry])
        self.assertEqual(self.listener.entries, [entry])
        page = await other.history("chat", ttl=TTL)
        self.assertEqual(page.entries, [entry])

    async def test_a_client_gone_leaves_its_presence(self) -> None:
        other = LocalBackplane(self.path)
        other.attach(RecordingListener())
        await other.start()
        await self.backplane.subscribe("room")
        await other.presence_add("room", Member("c9", "bob"), 60)
        self.assertEqual([m.client for m in await self.backplane.presence("room")], ["c9"])
        await other.aclose()
        await self.listener.wait_for(lambda: self.listener.events)
        self.assertEqual(self.listener.events[0][:2], ("room", "leave"))
        self.assertEqual(await self.backplane.presence("room"), [])

    async def test_owner_restart_degrades_then_recovers_with_a_new_epoch(self) -> None:
        await self.backplane.subscribe("x")
        before = await self.publish("x", "1")
        await self.close_owner()
        await wait_until(lambda: not self.backplane.healthy)
        with self.assertRaises(BackplaneUnavailable):
            await self.publish("x", "2")
        self.assertEqual(self.backplane.status()["healthy"], False)
        self.owner = await serve_owner(self.path)
        await self.listener.wait_for(lambda: self.listener.resyncs == 1)
        self.assertTrue(self.backplane.healthy)
        after = await self.publish("x", "3")
        self.assertNotEqual(after.epoch, before.epoch)
        self.assertEqual(after.offset, 1)
        # Subscribed again.
        await self.listener.wait_for(lambda: self.listener.entries[-1].data == "3")

    def unreachable(self) -> Backplane:
        return LocalBackplane(self.path + ".missing", timeout=0.2)

    async def test_owner_refuses_a_bad_request_and_drops_garbage(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.path)
        writer.write(encode(["pub", 7, "only-a-channel"]))
        answer = await reader.readexactly(4)
        body = await reader.readexactly(int.from_bytes(answer, "big"))
        self.assertTrue(body.startswith(b'["x",7,"bad request'))
        writer.write(b"\xff\xff\xff\xff")
        self.assertEqual(await reader.read(), b"")
        writer.close()
        # The owner still serves the others.
        self.assertEqual((await self.publish("after", "1")).offset, 1)

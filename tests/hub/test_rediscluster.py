"""The Redis Cluster backplane on a real 3-master, 3-replica cluster started here.

One cluster serves the whole module (``setUpModule``): creating it takes a
few seconds. The failover tests leave it with 3 masters and 3 replicas again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import unittest
from typing import Any

from ws13.hub import Backplane, Hub, Member, open_backplane
from ws13.hub.backplanes.rediscluster import (
    ClusterAddress,
    RedisClusterBackplane,
    parse_cluster_url,
)
from ws13.hub.backplanes.redisstore import KeyLayout
from ws13.hub.client import Client, Gap, HubError, Message

from .cluster import PASSWORD, LocalCluster
from .helpers import TIMEOUT, HubTestCase, node_health, serve_nodes, wait_until
from .test_backplanes import BackplaneContract, RecordingListener, UnreachableContract

cluster: LocalCluster
_prefixes = itertools.count()


def setUpModule() -> None:
    global cluster
    cluster = LocalCluster()
    cluster.start()


def tearDownModule() -> None:
    cluster.close()


def make_backplane(**kwargs: Any) -> RedisClusterBackplane:
    """A backplane on the module's cluster, with a fresh key prefix (no FLUSHALL)."""
    kwargs = {"prefix": f"t{next(_prefixes)}:", "timeout": 2, "retry_max": 0.2, **kwargs}
    return RedisClusterBackplane(cluster.url, **kwargs)


class ParseClusterUrlTests(unittest.TestCase):
    def test_seed_nodes(self) -> None:
        self.assertEqual(
            parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7001"),
            ClusterAddress([("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7001)]),
        )

    def test_credentials(self) -> None:
        address = parse_cluster_url("redis+cluster://ann:p%40ss@h:1/0")
        self.assertEqual((address.username, address.password), ("ann", "p@ss"))
        address = parse_cluster_url("redis+cluster://:secret@h:1/")
        self.assertEqual((address.username, address.password), (None, "secret"))

    def test_tls(self) -> None:
        address = parse_cluster_url("rediss+cluster://h:1?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem")
        self.assertEqual(address.tls, {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem"})
        self.assertEqual(parse_cluster_url("rediss+cluster://h:1").tls, {})
        self.assertIsNone(parse_cluster_url("redis+cluster://h:1").tls)

    def test_bad_urls(self) -> None:
        for url in [
            "redis://h:1",
            "redis+cluster://h:1/2",
            "redis+cluster://h:1?x=1",
            "redis+cluster://h:1?ssl_ca_certs=/ca.pem",
            "rediss+cluster://h:1?x=1",
            "rediss+cluster://h:1?ssl_ca_certs=",
            "redis+cluster://h:1#x",
            "redis+cluster://h:port",
            "redis+cluster://h:70000",
            "redis+cluster://:1",
            "redis+cluster://h:1,",
            "redis+cluster://[::1",
        ]:
            with self.subTest(url=url), self.assertRaises(ValueError):
                parse_cluster_url(url)

    def test_prefix_with_braces_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            RedisClusterBackplane("redis+cluster://h:1", prefix="{x}:")


class KeyLayoutTests(unittest.TestCase):
    def test_a_channel_has_one_hash_tag(self) -> None:
        layout = KeyLayout(cluster=True)
        self.assertEqual(layout.keys("chat"), ["ws13:hub:meta:{chat}", "ws13:hub:s:{chat}"])
        self.assertEqual(layout.topic("chat"), "ws13:hub:m:{chat}")
        # A "}" would end the tag early (or leave it empty): it becomes ")"
        # in the tag, and the name follows to keep keys distinct.
        self.assertEqual(layout.topic("}a"), "ws13:hub:m:{)a}}a")
        self.assertNotEqual(layout.topic("}a"), layout.topic(")a"))


class RedisClusterBackplaneTests(
    BackplaneContract, UnreachableContract, unittest.IsolatedAsyncioTestCase
):
    """The contract every backplane passes, on the cluster; then the cluster's own."""

    def make(self) -> Backplane:
        return make_backplane()

    async def test_open_backplane(self) -> None:
        backplane = open_backplane(cluster.url)
        self.assertIsInstance(backplane, RedisClusterBackplane)
        await backplane.aclose()

    async def test_channels_land_on_different_masters(self) -> None:
        layout = KeyLayout(cluster=True)
        slots = {channel: cluster.keyslot(layout.topic(channel)) for channel in ("a", "b", "c")}
        masters = {channel: cluster.master_of(slot) for channel, slot in slots.items()}
        self.assertEqual(len(set(masters.values())), 3, masters)
        # Each channel's stream, epoch and presence keys share its slot.
        for channel, slot in slots.items():
            for key in [*layout.keys(channel), *layout.presence_keys(channel)]:
                self.assertEqual(cluster.keyslot(key), slot)
        backplane = open_backplane(cluster.url)
        backplane.attach(self.listener)
        await backplane.start()
        self.addAsyncCleanup(backplane.aclose)
        for channel in slots:
            await backplane.subscribe(channel)
            await backplane.publish(channel, f'"{channel}"', history_size=10, ttl=60)
        await self.listener.wait_for(lambda: len(self.listener.entries) == 3)
        self.assertEqual(sorted(e.data for e in self.listener.entries), ['"a"', '"b"', '"c"'])
        status = backplane.status()
        self.assertEqual(
            {f"127.0.0.1:{port}": 1 for port in masters.values()},
            {name: master["channels"] for name, master in status["masters"].items()},
        )
        self.assertEqual(sum(m["slots"] for m in status["masters"].values()), 16384)

    def unreachable(self) -> Backplane:
        return RedisClusterBackplane("redis+cluster://127.0.0.1:1", timeout=0.2)

    async def test_wrong_password_is_a_clear_error(self) -> None:
        url = cluster.url.replace(PASSWORD, "wrong")
        backplane = RedisClusterBackplane(url, timeout=0.5)
        await backplane.start()
        try:
            # What /health says once the first attempt is over.
            await wait_until(lambda: "password" in backplane.status().get("error", ""))
            self.assertFalse(backplane.healthy)
        finally:
            await backplane.aclose()


def describe(hub: Hub, name: str) -> dict[str, Any]:
    """What the hub holds for channel ``name``: a failing test's evidence."""
    channel = hub._channels.get(name)
    if channel is None:
        return {}
    return {
        "epoch": channel.epoch,
        "last": channel.last,
        "held": None if channel.held is None else len(channel.held),
        "holding": [len(entries) for entries in channel.holding.values()],
        "batch": (len(channel.batch.sessions), len(channel.batch.pending)),
        "exact": len(channel.exact),
    }


def shard_evidence(backplane: Backplane, prefix: str, channel: str) -> dict[str, Any]:
    """Where the channel's sharded subscription is, as Redis and the backplane see
    it: each node's role and slots (``CLUSTER NODES``, its own line), how many
    clients it holds on ``topic`` (``PUBSUB SHARDNUMSUB``); the backplane's
    connection per master (dead, reader task done, what redis-py holds)."""
    layout = KeyLayout(prefix, cluster=True)
    topic = layout.topic(channel)
    meta, stream = layout.keys(channel)
    nodes: dict[int, dict[str, str]] = {}
    for port in cluster.ports:
        own = [line for line in cluster.command(port, "CLUSTER", "NODES").splitlines()
               if "myself" in line]  # fmt: skip
        fields = own[0].split() if own else []
        numsub = cluster.command(port, "PUBSUB", "SHARDNUMSUB", topic).split()
        nodes[port] = {
            "flags": fields[2] if len(fields) > 2 else "?",
            "slots": " ".join(fields[8:]) if len(fields) > 8 else "",
            "subscribers": numsub[1] if len(numsub) > 1 else "?",
            # Where the channel's writes land, as each node holds them itself.
            "meta": cluster.command(port, "HGETALL", meta).replace("\n", " "),
            "stream": cluster.command(port, "XLEN", stream),
        }
        if "master" in nodes[port]["flags"]:
            # How many clients a message published there reaches now.
            nodes[port]["probe reaches"] = cluster.command(
                port, "SPUBLISH", topic, "mprobe 1 0 null"
            )
    subscriber = backplane._subscriber  # type: ignore[attr-defined]
    shards = {
        name: {
            "dead": shard.dead,
            "reader": None if shard.reader is None else shard.reader.done(),
            "shard_channels": sorted(map(repr, shard.pubsub.shard_channels)),
            "channels": sorted(shard.channels),
        }
        for name, shard in subscriber._shards.items()
    }
    return {"nodes": nodes, "shards (reader: done?)": shards, "route": dict(subscriber._route)}


@dataclasses.dataclass
class Streamed:
    """What ``FailoverTests.stream_through`` saw."""

    received: list[Message | Gap]  # by the subscriber
    status: dict[str, Any]  # the backplane's, at the end
    acknowledged: list[int]  # the values published
    epochs: list[str]  # of each of those
    history: dict[str, Any]  # the channel's, at the end


class FailoverTests(HubTestCase):
    """A master fails over while a hub streams one of its channels to a client."""

    async def stream_through(self, failover: Any) -> Streamed:
        """Publish 0, 1, 2... through a hub on the cluster, call ``failover(master)``
        for the channel's master midway in a thread, and keep publishing until
        the hub's backplane is back; check that nothing was lost silently.
        """
        prefix = f"t{next(_prefixes)}:"
        backplane = make_backplane(prefix=prefix)
        hub = Hub(backplane, publish_rate=None)
        _, server = await self.start_hub(hub)
        channel = "chat:failover"
        master = cluster.master_of(cluster.keyslot(KeyLayout(prefix, cluster=True).topic(channel)))
        subscriber = await self.client(server)
        publisher = await self.client(server)
        subscription = await subscriber.subscribe(channel)
        acknowledged: list[int] = []
        epochs: list[str] = []
        offsets: list[int] = []
        received: list[Message | Gap] = []

        async def collect() -> None:
            async for item in subscription:
                received.append(item)

        collecting = asyncio.ensure_future(collect())
        self.addCleanup(collecting.cancel)
        failing = None
        async with asyncio.timeout(TIMEOUT):
            for i in itertools.count():
                try:
                    reply = await publisher.publish(channel, i)
                    acknowledged.append(i)
                    epochs.append(reply["epoch"])
                    offsets.append(reply["offset"])
                except HubError:
                    pass  # 503 while the slot has no master: not stored
                if i == 30:
                    failing = asyncio.ensure_future(asyncio.to_thread(failover, master))
                # Stop on an acknowledged message once the backplane is back.
                back = failing is not None and failing.done() and backplane.healthy
                if back and i > 80 and acknowledged[-1:] == [i]:
                    break
                await asyncio.sleep(0.002)

        def covered() -> bool:
            """The last acknowledged message arrived, or a Gap at or past it said
            it may not: a subscriber that reconnects after the epoch changed gets
            one (recovery impossible) and no replay, by design."""
            last = (epochs[-1], offsets[-1])
            for item in received:
                if isinstance(item, Message) and item.data == acknowledged[-1]:
                    return True
                if isinstance(item, Gap) and item.epoch == last[0] and item.offset >= last[1]:
                    return True
            return False

        # The subscriber may get the last message before the publisher's reply.
        try:
            await wait_until(covered)
        except TimeoutError:
            # Say enough to tell a lost write from a lost delivery.
            evidence = shard_evidence(backplane, prefix, channel)
            before = hub.stats["backplane_messages"]
            await asyncio.sleep(1)  # for the probes to arrive, if they can
            self.fail(
                f"last acknowledged {list(zip(acknowledged, epochs, strict=True))[-5:]} "
                f"not received; received last {received[-5:]}; "
                f"backplane {backplane.status()}; hub channel {describe(hub, channel)}; "
                f"shards {evidence}; hub's backplane messages {before} before the "
                f"probes, {hub.stats['backplane_messages']} a second after; "
                f"connections: subscriber {subscriber.connections}, "
                f"publisher {publisher.connections}"
            )
        assert failing is not None
        await failing
        self.assertNoSilentLoss(acknowledged, received)
        history = await publisher.history(channel)
        return Streamed(received, backplane.status(), acknowledged, epochs, history)

    def assertNoSilentLoss(self, acknowledged: list[int], received: list[Message | Gap]) -> None:
        """Messages come in order, once; an acknowledged one is missing only after a Gap."""
        values = [item.data for item in received if isinstance(item, Message)]
        self.assertEqual(values, sorted(set(values)))
        seen = set(values)
        position = 0
        gap_since = False
        for item in received:
            if isinstance(item, Gap):
                gap_since = True
                continue
            missing = [v for v in acknowledged if position <= v < item.data and v not in seen]
            self.assertTrue(not missing or gap_since, f"lost {missing} without a gap")
            position = item.data + 1
            gap_since = False

    async def client(self, server: Any) -> Client:
        client = Client(self.url(server), backoff_min=0.05, backoff_max=0.5)
        await asyncio.wait_for(client.connect(), TIMEOUT)
        self.addAsyncCleanup(client.close)
        return client

    async def test_manual_failover(self) -> None:
        def failover(master: int) -> None:
            replica = cluster.replica_of(master)
            cluster.command(replica, "CLUSTER", "FAILOVER")
            deadline = time.monotonic() + TIMEOUT
            while "role:master" not in cluster.command(replica, "INFO", "replication"):
                assert time.monotonic() < deadline, "the replica wasn't promoted"
                time.sleep(0.02)
            cluster.wait_ok()

        streamed = await self.stream_through(failover)
        self.assertGreaterEqual(streamed.status["reconnections"], 1)
        self.assertIsNotNone(streamed.status["last_outage_ms"])
        # The promoted replica starts a new epoch: an explicit gap.
        self.assertTrue(any(isinstance(item, Gap) for item in streamed.received))
        self.assertEqual(len(set(streamed.epochs)), 2)
        # History restarts with the epoch.
        self.assertEqual(streamed.history["epoch"], streamed.epochs[-1])
        first = streamed.epochs.index(streamed.epochs[-1])
        self.assertEqual(
            [m["data"] for m in streamed.history["messages"]],
            streamed.acknowledged[first:][-100:],  # the last 100 kept (the default)
        )

    async def test_master_killed_then_replica_promoted(self) -> None:
        def failover(master: int) -> None:
            replica = cluster.replica_of(master)
            cluster.processes[master].kill()
            cluster.processes[master].wait(timeout=10)
            deadline = time.monotonic() + TIMEOUT
            while "role:master" not in cluster.command(replica, "INFO", "replication"):
                assert time.monotonic() < deadline, "the replica wasn't promoted"
                time.sleep(0.05)
            # The old master comes back as its replica: 3 + 3 again.
            cluster.start_node(master, cluster.bus_ports[cluster.ports.index(master)])
            cluster.wait_ok()

        streamed = await self.stream_through(failover)
        self.assertGreaterEqual(streamed.status["reconnections"], 1)
        self.assertTrue(any(isinstance(item, Gap) for item in streamed.received))


class ServeTests(unittest.IsolatedAsyncioTestCase):
    """Two ``ws13 serve --redis redis+cluster://...`` processes share a chat."""

    async def asyncSetUp(self) -> None:
        self.ports = await serve_nodes(self, cluster.url)

    async def test_two_nodes_share_a_chat(self) -> None:
        url_a, url_b = (f"ws://127.0.0.1:{port}/hub" for port in self.ports)
        async with Client(url_a) as on_a, Client(url_b) as on_b:
            subscription = await on_b.subscribe("chat:cluster")
            reply = await on_a.publish("chat:cluster", {"text": "hello from A"})
            item = await asyncio.wait_for(subscription.get(), TIMEOUT)
            assert isinstance(item, Message)
            self.assertEqual((item.offset, item.data), (reply["offset"], {"text": "hello from A"}))
            history = await on_a.history("chat:cluster")
            self.assertEqual([m["data"] for m in history["messages"]], [{"text": "hello from A"}])
            members = await on_a.presence("chat:cluster")
            self.assertEqual([m["client"] for m in members], [on_b.client_id])
        code, body = await asyncio.to_thread(node_health, self.ports[0])
        self.assertEqual((code, body["status"]), (200, "ok"))
        backplane = body["hub"]["backplane"]
        self.assertEqual(backplane["backplane"], "redis-cluster")
        self.assertEqual(len(backplane["masters"]), 3)
        self.assertTrue(all(m["health"] == "online" for m in backplane["masters"].values()))


class TlsTests(unittest.IsolatedAsyncioTestCase):
    """``rediss+cluster://`` on a cluster that serves TLS only (3 masters, no replicas)."""

    tls_cluster: LocalCluster

    @classmethod
    def setUpClass(cls) -> None:
        cls.tls_cluster = LocalCluster(replicas=0, tls=True)
        cls.tls_cluster.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tls_cluster.close()

    async def test_channels_on_every_master_over_tls(self) -> None:
        listener = RecordingListener()
        backplane = open_backplane(self.tls_cluster.url, timeout=2)
        backplane.attach(listener)
        await backplane.start()
        self.addAsyncCleanup(backplane.aclose)
        for channel in ("a", "b", "c"):  # one per master (see the placement test)
            await backplane.subscribe(channel)
            await backplane.publish(channel, f'"{channel}"', history_size=10, ttl=60)
            await backplane.presence_add(channel, Member(f"client-{channel}"), 60)
        await listener.wait_for(lambda: len(listener.entries) == 3)
        self.assertEqual(sorted(e.data for e in listener.entries), ['"a"', '"b"', '"c"'])
        page = await backplane.history("b", ttl=60)
        self.assertEqual([e.data for e in page.entries], ['"b"'])
        self.assertEqual([m.client for m in await backplane.presence("c")], ["client-c"])
        status = backplane.status()
        self.assertTrue(status["healthy"])
        self.assertEqual(
            sorted(status["masters"]), sorted(f"127.0.0.1:{p}" for p in self.tls_cluster.ports)
        )

    async def test_plain_connection_to_a_tls_cluster_degrades(self) -> None:
        url = self.tls_cluster.url.replace("rediss+", "redis+").partition("?")[0]
        backplane = RedisClusterBackplane(url, timeout=0.5)
        await backplane.start()
        try:
            self.assertFalse(backplane.healthy)
            self.assertIn("error", backplane.status())
        finally:
            await backplane.aclose()

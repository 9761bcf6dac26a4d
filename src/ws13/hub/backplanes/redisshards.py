"""Sharded pub/sub on a Redis Cluster: one connection per master, re-routed on failover.

A shard channel (``SSUBSCRIBE``) is served by the master owning its hash
slot, so ``ShardedSubscriber`` keeps one pub/sub connection per master that
holds a subscribed channel, each with a reader task. redis-py's own
``ClusterPubSub`` re-subscribes silently after a failover, without saying
that messages may have been missed in between; this one says so.

Where a channel goes comes from ``CLUSTER SHARDS`` (asked of any reachable
node, refreshed every ``TOPOLOGY_INTERVAL`` seconds and whenever something
breaks). A subscription is lost when its master's connection drops (the
master died) or when the master sends an unrequested ``SUNSUBSCRIBE`` (Redis
does when the slot moves away: a failover, a resharding). Then the channel
is subscribed again on the slot's current master, with capped exponential
backoff while none is reachable, and once every wanted channel is back the
listener is asked to catch up (``on_resync``): the hub reads what it missed
from the channel's stream, or meets a new epoch (an explicit gap).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - a backplane does network I/O
import contextlib
import logging
import time  # noqa: TID251 - outages are measured for /health
from typing import Any

from . import BackplaneListener, BackplaneUnavailable
from .redis import close_pubsub
from .redisstore import KeyLayout, dispatch

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
    from redis.exceptions import ResponseError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis backplane needs redis-py: pip install 'ws13[redis]'") from exc

__all__ = ["TOPOLOGY_INTERVAL", "ShardedSubscriber"]

logger = logging.getLogger("ws13.hub.redis")

#: Seconds between two reads of the cluster's topology when nothing broke.
TOPOLOGY_INTERVAL = 2.0


class _Shard:
    """One master's sharded pub/sub connection and the channels routed to it."""

    def __init__(self, name: str, client: aioredis.Redis) -> None:
        self.name = name
        self.client = client
        self.pubsub = client.pubsub()
        self.channels: set[str] = set()
        self.reader: asyncio.Task[None] | None = None
        self.dead = False


class ShardedSubscriber:
    """Keeps every wanted channel subscribed on its slot's master; see the module docstring.

    Args:
        cluster: the client that answers ``CLUSTER SHARDS``.
        layout: names the channels' pub/sub channels.
        connect: keyword arguments for each master's ``redis.asyncio.Redis``
            (credentials, TLS) besides host, port and timeouts.
        unavailable: errors that mean "the cluster can't be reached now".
        timeout, retry_min, retry_max: as ``RedisClusterBackplane``'s.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        layout: KeyLayout,
        connect: dict[str, Any],
        unavailable: tuple[type[BaseException], ...],
        *,
        timeout: float,
        retry_min: float,
        retry_max: float,
    ) -> None:
        self.cluster = cluster
        self.layout = layout
        self.connect = connect
        # Over TLS the nodes are reached on their tls-port.
        self._port_field = b"tls-port" if connect.get("ssl") else b"port"
        self.unavailable = unavailable
        # A master's error answer (MOVED to SSUBSCRIBE after a failover, a
        # replica's refusal) also means "route again".
        self._broken: tuple[type[BaseException], ...] = (*unavailable, ResponseError)
        self._retry: tuple[type[BaseException], ...] = (
            *self._broken,
            BackplaneUnavailable,
            TimeoutError,
        )
        self.timeout = timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.listener: BackplaneListener | None = None
        self.reconnections = 0
        #: Milliseconds from the last loss of a subscription to all being back.
        self.last_outage_ms: int | None = None
        #: ``host:port`` of each slot's master, None where no master serves it.
        self.owners: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        #: Per master: its slots and health, as ``CLUSTER SHARDS`` said last.
        self.masters: dict[str, dict[str, Any]] = {}
        self.error: str | None = "not started"
        self._wanted: set[str] = set()
        self._channels: dict[str, str] = {}  # pub/sub channel -> hub channel
        self._route: dict[str, str] = {}  # hub channel -> master it is subscribed on
        self._active: set[str] = set()
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._shards: dict[str, _Shard] = {}
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._lost: float | None = None  # time.monotonic() of a loss not yet recovered
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def channels(self) -> int:
        return len(self._active)

    def topology(self) -> dict[str, dict[str, Any]]:
        """Each master's slots and health (as ``CLUSTER SHARDS`` said last) and
        how many of our channels it serves; for ``/health``."""
        return {
            name: {
                **info,
                "channels": len(shard.channels) if (shard := self._shards.get(name)) else 0,
            }
            for name, info in sorted(self.masters.items())
        }

    # -- supervision ---------------------------------------------------------------

    async def run(self, connected: asyncio.Event) -> None:
        """Refresh the topology and re-route until cancelled; set ``connected`` once up."""
        delay = self.retry_min
        while True:
            self._dirty.clear()
            try:
                async with self._lock:
                    await self._reconcile()
                await self._confirmed()
            except asyncio.CancelledError:
                raise
            except self._retry as exc:
                if self.error is None:
                    logger.warning("redis cluster backplane degraded: %s", exc)
                self.error = str(exc) or type(exc).__name__
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)
                continue
            except Exception:
                # A bug must not end supervision: say so, stay degraded, retry.
                logger.error("redis cluster backplane failed", exc_info=True)
                self.error = "internal error"
                await asyncio.sleep(self.retry_max)
                continue
            connected.set()
            delay = self.retry_min
            if self._lost is not None and all(c in self._active for c in self._wanted):
                self.last_outage_ms = round((time.monotonic() - self._lost) * 1000)
                self._lost = None
                self.reconnections += 1
                logger.warning(
                    "redis cluster backplane: subscriptions back after %d ms", self.last_outage_ms
                )
                if self.listener is not None:
                    self.listener.on_resync()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TOPOLOGY_INTERVAL):
                    await self._dirty.wait()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for shard in list(self._shards.values()):
            await self._close(shard)

    async def _topology(self) -> None:
        """Read ``CLUSTER SHARDS`` from the first node that answers."""
        if not self.cluster.get_nodes():
            await self.cluster.initialize()
        failure: BaseException | None = None
        for node in self.cluster.get_nodes():
            try:
                async with asyncio.timeout(self.timeout):
                    shards = await self.cluster.cluster_shards(target_nodes=node)
                break
            except self._retry as exc:
                failure = exc
        else:
            raise BackplaneUnavailable(f"redis cluster: no node answers: {failure}")
        owners: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        masters: dict[str, dict[str, Any]] = {}
        for shard in shards:
            for node_info in shard["nodes"]:
                if node_info[b"role"] != b"master":
                    continue
                port = node_info.get(self._port_field)
                if port is None:
                    continue
                name = f"{node_info[b'ip'].decode()}:{port}"
                health = node_info[b"health"].decode()
                slots = sum(high - low + 1 for low, high in shard["slots"])
                masters[name] = {"slots": slots, "health": health}
                if health == "online":
                    for low, high in shard["slots"]:
                        owners[low : high + 1] = [name] * (high - low + 1)
        self.owners, self.masters = owners, masters

    async def _reconcile(self) -> None:
        """Subscribe each wanted channel on its slot's master; close what's dead or idle."""
        await self._topology()
        for shard in list(self._shards.values()):
            if shard.dead or not shard.channels:
                await self._close(shard)
        # One master down doesn't keep the others' channels from moving back:
        # every channel is tried, the first failure is raised at the end.
        failure: BaseException | None = None
        for channel in list(self._wanted):
            owner = self.owners[self._slot(channel)]
            current = self._route.get(channel)
            if current is not None and current == owner and current in self._shards:
                continue
            if current is not None:
                # Moving a live channel (its slot changed master) may skip
                # messages between SUNSUBSCRIBE and SSUBSCRIBE: catch up after.
                if channel in self._active:
                    self._lose()
                await self._leave(channel)
            try:
                if owner is None:
                    raise BackplaneUnavailable(f"redis cluster: no master serves {channel!r}")
                await self._join(channel, owner)
            except self._retry as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        uncovered = sum(owner is None for owner in self.owners)
        self.error = f"{uncovered} slots not served" if uncovered else None

    async def _confirmed(self) -> None:
        """Wait for the confirmations of every wanted channel (``timeout``)."""
        pending = [self._future(c) for c in self._wanted if c not in self._active]
        if pending:
            async with asyncio.timeout(self.timeout):
                await asyncio.gather(*(asyncio.shield(f) for f in pending))

    # -- routing -----------------------------------------------------------------------

    def _slot(self, channel: str) -> int:
        return key_slot(self.layout.topic(channel).encode())

    def _future(self, channel: str) -> asyncio.Future[None]:
        future = self._confirm.get(channel)
        if future is None or future.done():
            future = self._confirm[channel] = asyncio.get_running_loop().create_future()
        return future

    async def _join(self, channel: str, owner: str) -> None:
        """Route ``channel`` to ``owner`` and send SSUBSCRIBE there (caller holds the lock)."""
        shard = self._shards.get(owner)
        if shard is None:
            host, _, port = owner.rpartition(":")
            # No retry inside redis-py: a dropped connection must surface here
            # so that the channel's gap is noticed, not papered over.
            client = aioredis.Redis(
                host=host,
                port=int(port),
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                **self.connect,
            )
            shard = self._shards[owner] = _Shard(owner, client)
        self._route[channel] = owner
        shard.channels.add(channel)
        topic = self.layout.topic(channel)
        self._channels[topic] = channel
        try:
            await shard.pubsub.ssubscribe(topic)
        except self._broken:
            self._fail(shard)
            raise
        if shard.reader is None:
            shard.reader = self._spawn(self._read(shard))

    async def _leave(self, channel: str) -> None:
        """Unroute ``channel``; SUNSUBSCRIBE where it was if that master still answers."""
        self._active.discard(channel)
        if channel not in self._wanted:
            self._channels.pop(self.layout.topic(channel), None)
        owner = self._route.pop(channel, None)
        shard = self._shards.get(owner) if owner is not None else None
        if shard is None:
            return
        shard.channels.discard(channel)
        if not shard.dead:
            with contextlib.suppress(*self._broken):
                await shard.pubsub.sunsubscribe(self.layout.topic(channel))

    def _fail(self, shard: _Shard) -> None:
        """``shard``'s connection broke: its channels must move, and may have missed messages."""
        if shard.dead:
            return
        shard.dead = True
        if shard.channels & self._active:
            self._lose()
        self._active.difference_update(shard.channels)
        self.error = f"master {shard.name} unreachable"
        self._dirty.set()

    async def _close(self, shard: _Shard) -> None:
        self._shards.pop(shard.name, None)
        for channel in shard.channels:
            if self._route.get(channel) == shard.name:
                del self._route[channel]
                self._active.discard(channel)
        shard.dead = True
        if shard.reader is not None and shard.reader is not asyncio.current_task():
            shard.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shard.reader
        with contextlib.suppress(*self.unavailable, RuntimeError):
            await close_pubsub(shard.pubsub)
        with contextlib.suppress(*self.unavailable):
            await shard.client.aclose()

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- subscribing ---------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """SSUBSCRIBE ``channel`` on its master; return once confirmed (``timeout``)."""
        self._wanted.add(channel)
        if channel in self._active:
            return
        future = self._future(channel)
        try:
            async with self._lock:
                if channel not in self._route and channel in self._wanted:
                    owner = self.owners[self._slot(channel)]
                    if owner is None:
                        raise BackplaneUnavailable(f"redis cluster: no master serves {channel!r}")
                    await self._join(channel, owner)
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(future)
        except self._retry as exc:
            raise BackplaneUnavailable(f"redis cluster: {exc or 'subscribe timed out'}") from None

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._spawn(self._unsubscribe(channel))

    async def _unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel not in self._wanted:
                await self._leave(channel)

    # -- reading ----------------------------------------------------------------------------

    async def _read(self, shard: _Shard) -> None:
        try:
            while True:
                message = await shard.pubsub.get_message(timeout=None)
                if message is not None:
                    self._handle(shard, message)
        except asyncio.CancelledError:
            raise
        except self._broken as exc:
            # A MOVED answer to SSUBSCRIBE (a stale slot map) lands here too.
            logger.warning("redis cluster backplane: master %s: %s", shard.name, exc)
            self._fail(shard)
        except Exception:
            logger.error("redis cluster backplane: master %s failed", shard.name, exc_info=True)
            self._fail(shard)

    def _handle(self, shard: _Shard, message: dict[str, Any]) -> None:
        channel = self._channels.get(message["channel"].decode())
        if channel is None or self._route.get(channel) != shard.name:
            return
        kind = message["type"]
        if kind == "smessage":
            if self.listener is not None and channel in self._wanted:
                dispatch(self.listener, channel, message["data"])
        elif kind == "ssubscribe":
            self._active.add(channel)
            future = self._confirm.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == "sunsubscribe":
            # Not ours (ours unroute the channel first): the slot left this
            # master, so the channel moves and may have missed messages.
            logger.warning("redis cluster backplane: %s left master %s", channel, shard.name)
            self._active.discard(channel)
            self._route.pop(channel, None)
            shard.channels.discard(channel)
            self._lose()
            self._dirty.set()

    def _lose(self) -> None:
        if self._lost is None:
            self._lost = time.monotonic()

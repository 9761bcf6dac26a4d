"""The Redis Cluster backplane: hub nodes share channels through a Redis Cluster (>= 7.0).

URL: ``redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]`` — seed
nodes, any of the cluster's nodes (masters or replicas); the rest is found
with ``CLUSTER SHARDS``. One is enough, more help when one is down at start.
An IPv6 address goes in brackets (``[::1]:7000``); the port defaults to 6379.
A cluster has only database 0: a path other than ``/`` or ``/0`` is refused.
``rediss+cluster://`` is the same over TLS (the nodes' ``tls-port``), with
optional ``?ssl_ca_certs=PATH&ssl_certfile=PATH&ssl_keyfile=PATH`` (the CA to
trust instead of the system's, a client certificate and its key).

What goes where: a channel's keys (its stream, epoch hash, presence) and its
shard channel (``SPUBLISH``/``SSUBSCRIBE``) carry the channel's name as a
hash tag (``ws13:hub:s:{chat}``), so they live in one hash slot, on one
master: a publish is one atomic script there (``redisstore``), and different
channels spread over the masters. Each hub node keeps one sharded pub/sub
connection per master that serves one of its channels (``redisshards``).

Failover: when a master fails over to its replica, its subscriptions come
back on the promoted replica and the hub catches up from the stream, or,
since the replica may lack the last acknowledged messages (replication is
asynchronous) and nothing tells a clean handover from a lossy one, the
channel's next publish or read starts a new epoch: subscribers get an
explicit gap, never a silent loss. While a slot has no master (between a
master's death and its replica's promotion: about the cluster's
``cluster-node-timeout`` plus an election), publishing to its channels raises
BackplaneUnavailable and ``healthy`` is False.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - a backplane does network I/O
import contextlib
import dataclasses
import urllib.parse
from typing import Any

from . import BackplaneListener
from .redisshards import ShardedSubscriber
from .redisstore import UNAVAILABLE_ERRORS, KeyLayout, RedisStore

try:
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import AskError, ClusterError, RedisClusterException, TryAgainError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis backplane needs redis-py: pip install 'ws13[redis]'") from exc

__all__ = ["TLS_OPTIONS", "ClusterAddress", "RedisClusterBackplane", "parse_cluster_url"]

#: Errors that mean "the cluster can't serve this now": a node down, a slot
#: without a master, a slot moving (redis-py follows MOVED/ASK a few times).
CLUSTER_UNAVAILABLE_ERRORS = (
    *UNAVAILABLE_ERRORS,
    ClusterError,
    TryAgainError,
    AskError,
    RedisClusterException,
)

DEFAULT_PORT = 6379

#: The query parameters of a ``rediss+cluster://`` URL (redis-py's names).
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterAddress:
    """A parsed ``redis+cluster://`` URL; ``tls`` is None without TLS, else its options."""

    nodes: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None
    tls: dict[str, str] | None = None

    def connect_options(self) -> dict[str, Any]:
        """redis-py's keyword arguments for credentials and TLS."""
        options: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.tls is not None:
            options.update(ssl=True, **self.tls)
        return options


def parse_cluster_url(url: str) -> ClusterAddress:
    """Parse ``redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]`` or
    ``rediss+cluster://...[?ssl_ca_certs=PATH&ssl_certfile=PATH&ssl_keyfile=PATH]``.

    Raises ValueError with the reason for anything else.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("redis+cluster", "rediss+cluster"):
        raise ValueError(f"not a redis+cluster:// URL: {url!r}")
    rest, _, query = rest.partition("?")
    location, _, path = rest.partition("/")
    if path not in ("", "0") or "#" in url:
        raise ValueError(f"a Redis Cluster URL has no database or fragment: {url!r}")
    tls = None
    if scheme == "rediss+cluster":
        tls = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        for name, value in tls.items():
            if name not in TLS_OPTIONS or not value:
                raise ValueError(f"bad TLS option {name}={value!r} in {url!r}")
    elif query:
        raise ValueError(f"a query needs rediss+cluster:// (TLS): {url!r}")
    userinfo, at, hosts = location.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if colon else None
    nodes = [_host_port(item, url) for item in hosts.split(",")]
    return ClusterAddress(nodes, username, password, tls)


def _host_port(item: str, url: str) -> tuple[str, int]:
    if item.startswith("["):
        host, bracket, port = item[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"bad seed node {item!r} in {url!r}")
        port = port[1:]
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"missing host in {url!r}")
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r} in {url!r}")
    return host, int(port)


class RedisClusterBackplane:
    """Channels shared by every node through a Redis Cluster; see the module docstring.

    Args:
        url: ``redis+cluster://HOST:PORT[,HOST:PORT...]`` or ``rediss+cluster://``.
        prefix: prefix of every key and shard channel (``ws13:hub:``; no braces).
        timeout: seconds for connecting and for each command (5).
        retry_min, retry_max: first and largest delay between attempts to
            subscribe again after a failure, in seconds (0.1, 2).
    """

    name = "redis-cluster"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ws13:hub:",
        timeout: float = 5.0,
        retry_min: float = 0.1,
        retry_max: float = 2.0,
    ) -> None:
        address = parse_cluster_url(url)
        self.url = url
        self.timeout = timeout
        connect = address.connect_options()
        layout = KeyLayout(prefix, cluster=True)
        # redis-py follows MOVED and refreshes its slot map itself; one retry
        # on a connection error, as the single-Redis backplane does.
        self._cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            **connect,
        )
        self._store = RedisStore(self._cluster, layout, CLUSTER_UNAVAILABLE_ERRORS)
        # Messages and presence are the store's own methods.
        self.publish = self._store.publish
        self.history = self._store.history
        self.publish_event = self._store.publish_event
        self.presence_add = self._store.presence_add
        self.presence_remove = self._store.presence_remove
        self.presence = self._store.presence
        self._subscriber = ShardedSubscriber(
            self._cluster,
            layout,
            connect,
            CLUSTER_UNAVAILABLE_ERRORS,
            timeout=timeout,
            retry_min=retry_min,
            retry_max=retry_max,
        )
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------

    def attach(self, listener: BackplaneListener) -> None:
        self._subscriber.listener = listener

    async def start(self) -> None:
        """Start the subscriber's supervisor; waits up to ``timeout`` for the topology."""
        if self._supervisor is None:
            connected = asyncio.Event()
            self._supervisor = asyncio.get_running_loop().create_task(
                self._subscriber.run(connected)
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await connected.wait()

    async def aclose(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._subscriber.aclose()
        with contextlib.suppress(*CLUSTER_UNAVAILABLE_ERRORS):
            await self._cluster.aclose()

    @property
    def healthy(self) -> bool:
        return not self._closed and self._subscriber.error is None

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "backplane": self.name,
            "healthy": self.healthy,
            "channels": self._subscriber.channels,
            "reconnections": self._subscriber.reconnections,
            "last_outage_ms": self._subscriber.last_outage_ms,
            "masters": self._subscriber.topology(),
        }
        if not self.healthy:
            status["error"] = "closed" if self._closed else self._subscriber.error
        return status

    # -- fan-out: the subscriber's ------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        await self._subscriber.subscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        self._subscriber.unsubscribe(channel)

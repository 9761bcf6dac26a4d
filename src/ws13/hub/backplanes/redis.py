"""The Redis backplane: many hub processes share channels through one Redis.

Its keys, scripts and epochs are ``redisstore``'s (``RedisStore``); this
module adds the pub/sub connection that brings messages back. Publishes
reach every node in offset order; a node that misses some (its pub/sub
connection dropped) fills the gap from the stream.

When Redis is unreachable, operations raise BackplaneUnavailable, ``healthy``
is False and a background task reconnects with capped exponential backoff,
resubscribes, then asks the hub to catch up (``on_resync``).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - a backplane does network I/O
import contextlib
import logging
from typing import Any

from . import BackplaneListener, BackplaneUnavailable
from .redisstore import UNAVAILABLE_ERRORS, KeyLayout, RedisStore, dispatch

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis backplane needs redis-py: pip install 'ws13[redis]'") from exc

__all__ = ["RedisBackplane", "close_pubsub"]

logger = logging.getLogger("ws13.hub.redis")


class RedisBackplane:
    """Channels shared by every node on one Redis; see the module docstring.

    Args:
        url: ``redis://HOST:PORT/DB`` (also ``rediss://``, ``unix://``).
        prefix: prefix of every key and pub/sub channel (``ws13:hub:``).
        timeout: seconds for connecting and for each command (5).
        retry_min, retry_max: first and largest delay between reconnection
            attempts, in seconds (0.1, 2).
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ws13:hub:",
        timeout: float = 5.0,
        retry_min: float = 0.1,
        retry_max: float = 2.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        # One retry on a fresh connection: a pooled connection may be stale
        # after Redis restarted. No backoff here; the supervisor does that.
        self._redis = aioredis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._store = RedisStore(self._redis, KeyLayout(prefix))
        self._topic = self._store.layout.topic
        # Messages and presence are the store's own methods.
        self.publish = self._store.publish
        self.history = self._store.history
        self.publish_event = self._store.publish_event
        self.presence_add = self._store.presence_add
        self.presence_remove = self._store.presence_remove
        self.presence = self._store.presence
        self._listener: BackplaneListener | None = None
        self._pubsub: Any = None
        self._lock = asyncio.Lock()
        self._wanted: set[str] = set()
        self._active: set[str] = set()
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._healthy = False
        self._error: str | None = "not started"
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reconnections = 0

    # -- lifecycle -------------------------------------------------------------

    def attach(self, listener: BackplaneListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        """Start the pub/sub supervisor; waits up to ``timeout`` for a first connection."""
        if self._supervisor is None:
            self._connected = asyncio.Event()
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._connected.wait()

    async def aclose(self) -> None:
        for task in [self._supervisor, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *[t for t in [self._supervisor, *self._tasks] if t is not None], return_exceptions=True
        )
        self._healthy = False
        self._error = "closed"
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._redis.aclose()

    @property
    def healthy(self) -> bool:
        return self._healthy

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "backplane": "redis",
            "healthy": self._healthy,
            "channels": len(self._active),
            "reconnections": self.reconnections,
        }
        if not self._healthy:
            status["error"] = self._error
        return status

    # -- fan-out ------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        self._wanted.add(channel)
        if channel in self._active:
            return
        if not self._healthy or self._pubsub is None:
            raise BackplaneUnavailable(f"redis: {self._error}")
        future = self._confirm.get(channel)
        if future is None or future.done():
            future = self._confirm[channel] = asyncio.get_running_loop().create_future()
        try:
            async with self._lock:
                await self._pubsub.subscribe(self._topic(channel))
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(future)
        except (*UNAVAILABLE_ERRORS, TimeoutError) as exc:
            raise BackplaneUnavailable(f"redis: {exc or 'subscribe timed out'}") from None

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        task = asyncio.get_running_loop().create_task(self._unsubscribe(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel in self._wanted or channel not in self._active:
                return
            self._active.discard(channel)
            if self._pubsub is not None:
                with contextlib.suppress(*UNAVAILABLE_ERRORS):
                    await self._pubsub.unsubscribe(self._topic(channel))

    # -- the pub/sub connection ------------------------------------------------

    async def _supervise(self) -> None:
        """Keep a pub/sub connection subscribed to the wanted channels; reconnect."""
        delay = self.retry_min
        first = True
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._redis.ping()
                async with self._lock:
                    # A control topic, so the connection is never without a
                    # subscription (redis-py needs one to read).
                    topics = [f"{self.prefix}ctl", *(self._topic(c) for c in self._wanted)]
                    await pubsub.subscribe(*topics)
                    self._pubsub = pubsub
                pending = set(topics)
                while pending:
                    message = await pubsub.get_message(timeout=self.timeout)
                    if message is None:
                        raise RedisTimeoutError("no subscribe confirmation")
                    if message["type"] == "subscribe":
                        pending.discard(message["channel"].decode())
                    self._handle(message)
                self._healthy = True
                self._error = None
                self._connected.set()
                delay = self.retry_min
                if not first:
                    self.reconnections += 1
                    logger.warning("redis backplane reconnected to %s", self.url)
                    if self._listener is not None:
                        self._listener.on_resync()
                first = False
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._handle(message)
            except asyncio.CancelledError:
                with contextlib.suppress(*UNAVAILABLE_ERRORS):
                    await close_pubsub(pubsub)
                raise
            except UNAVAILABLE_ERRORS as exc:
                if self._healthy:
                    logger.warning("redis backplane degraded: %s", exc)
                self._healthy = False
                self._error = str(exc) or type(exc).__name__
                first = False if self._connected.is_set() else first
            except Exception:
                logger.error("redis backplane failed", exc_info=True)
                self._healthy = False
                self._error = "internal error"
            self._pubsub = None
            self._active.clear()
            for future in self._confirm.values():
                if not future.done():
                    future.set_exception(RedisConnectionError("pub/sub connection lost"))
                    future.exception()
            with contextlib.suppress(*UNAVAILABLE_ERRORS, RuntimeError):
                await close_pubsub(pubsub)
            await asyncio.sleep(delay)
            delay = min(self.retry_max, delay * 2)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        topic = message["channel"].decode()
        prefix = f"{self.prefix}m:"
        if not topic.startswith(prefix):
            return
        channel = topic[len(prefix) :]
        if kind == "subscribe":
            self._active.add(channel)
            future = self._confirm.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        if kind != "message" or self._listener is None or channel not in self._wanted:
            return
        dispatch(self._listener, channel, message["data"])


async def close_pubsub(pubsub: Any) -> None:
    """Close a pub/sub connection.

    redis-py before 8.2 leaves ``PubSub.aclose()`` unannotated, which
    ``mypy --strict`` refuses to call, and 8.2 annotates it: taking the
    connection as ``Any`` type-checks the same with both.
    """
    await pubsub.aclose()

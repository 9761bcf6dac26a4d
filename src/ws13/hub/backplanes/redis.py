"""The Redis backplane: many hub processes share channels through one Redis.

Keys (``prefix`` defaults to ``ws13:hub:``):

* ``{prefix}meta:{channel}`` — hash: ``e`` the epoch, ``o`` the last offset;
* ``{prefix}s:{channel}`` — stream: the history, entry ID ``{offset}-1``,
  fields ``t`` (ms since the Unix epoch) and ``d`` (the JSON data);
* ``{prefix}p:{channel}`` / ``{prefix}pz:{channel}`` — presence: a hash of
  members and a sorted set of their expiry times;
* pub/sub channel ``{prefix}m:{channel}`` — fan-out to the nodes.

A Lua script appends a message atomically: it bumps the offset, adds the
stream entry (trimmed to ``history_size`` entries and ``ttl``), sets both
keys to expire after ``ttl`` and publishes ``m{epoch} {offset} {time} {data}``.
Publishes therefore reach every node in offset order; a node that misses some
(its pub/sub connection dropped) fills the gap from the stream. When the
keys are lost (Redis restarted without persistence, or the channel was idle
for ``ttl``), the next publish or read creates a new epoch.

When Redis is unreachable, operations raise BackplaneUnavailable, ``healthy``
is False and a background task reconnects with capped exponential backoff,
resubscribes, then asks the hub to catch up (``on_resync``).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - a backplane does network I/O
import contextlib
import json
import logging
import secrets
import time  # noqa: TID251 - history ages and presence expiry need a clock
from typing import Any

from ..wire import dumps
from . import BackplaneListener, BackplaneUnavailable, Entry, HistoryPage, Member

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis backplane needs redis-py: pip install 'ws13[redis]'") from exc

__all__ = ["RedisBackplane"]

logger = logging.getLogger("ws13.hub.redis")

#: Errors that mean "Redis is unreachable now", as opposed to bugs.
UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

PUBLISH_SCRIPT = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local size = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, offset .. '-1', 't', ARGV[3], 'd', ARGV[2])
  local cutoff = tonumber(ARGV[3]) - ttl
  local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 100)
  for _, item in ipairs(head) do
    if tonumber(item[2][2]) < cutoff then
      redis.call('XDEL', KEYS[2], item[1])
    else
      break
    end
  end
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('DEL', KEYS[2])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PUBLISH', ARGV[6], 'm' .. epoch .. ' ' .. offset .. ' ' .. ARGV[3] .. ' ' .. ARGV[2])
return {epoch, offset}
"""

HISTORY_SCRIPT = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local top = redis.call('HGET', KEYS[1], 'o') or '0'
local limit = tonumber(ARGV[3])
local entries = {}
if limit ~= 0 then
  if ARGV[2] ~= '' then
    if limit > 0 then
      entries = redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', limit)
    else
      entries = redis.call('XRANGE', KEYS[2], ARGV[2], '+')
    end
  elseif limit > 0 then
    entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)
  else
    entries = redis.call('XREVRANGE', KEYS[2], '+', '-')
  end
end
return {epoch, top, entries}
"""

PRESENCE_SCRIPT = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, client in ipairs(stale) do
  redis.call('HDEL', KEYS[1], client)
  redis.call('ZREM', KEYS[2], client)
end
return redis.call('HVALS', KEYS[1])
"""


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
        self._publish = self._redis.register_script(PUBLISH_SCRIPT)
        self._history = self._redis.register_script(HISTORY_SCRIPT)
        self._presence = self._redis.register_script(PRESENCE_SCRIPT)
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

    # -- keys --------------------------------------------------------------------

    def _keys(self, channel: str) -> list[str]:
        return [f"{self.prefix}meta:{channel}", f"{self.prefix}s:{channel}"]

    def _topic(self, channel: str) -> str:
        return f"{self.prefix}m:{channel}"

    # -- messages -----------------------------------------------------------------

    async def publish(self, channel: str, data: str, *, history_size: int, ttl: float) -> Entry:
        now = int(time.time() * 1000)
        args: list[str | int] = [
            secrets.token_hex(4),
            data,
            now,
            history_size,
            max(1, int(ttl * 1000)),
        ]
        try:
            epoch, offset = await self._publish(
                keys=self._keys(channel), args=[*args, self._topic(channel)]
            )
        except UNAVAILABLE_ERRORS as exc:
            raise BackplaneUnavailable(f"redis: {exc}") from None
        return Entry(channel, epoch.decode(), int(offset), now, data)

    async def history(
        self, channel: str, *, since: int | None = None, limit: int | None = None, ttl: float
    ) -> HistoryPage:
        start = "" if since is None else f"{since + 1}-0"
        args: list[str | int] = [
            secrets.token_hex(4),
            start,
            -1 if limit is None else limit,
            int(ttl * 1000),
        ]
        try:
            epoch, top, raw = await self._history(keys=self._keys(channel), args=args)
        except UNAVAILABLE_ERRORS as exc:
            raise BackplaneUnavailable(f"redis: {exc}") from None
        epoch_text = epoch.decode()
        cutoff = time.time() * 1000 - ttl * 1000
        entries = []
        for entry_id, fields in raw if since is not None else reversed(raw):
            values = dict(zip(fields[::2], fields[1::2], strict=False))
            stamp = int(values[b"t"])
            if stamp >= cutoff:
                offset = int(entry_id.split(b"-")[0])
                entries.append(Entry(channel, epoch_text, offset, stamp, values[b"d"].decode()))
        return HistoryPage(epoch_text, int(top), entries)

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

    async def publish_event(self, channel: str, kind: str, member: Member) -> None:
        payload = f"e{kind} {dumps(member.to_json())}"
        try:
            await self._redis.publish(self._topic(channel), payload)
        except UNAVAILABLE_ERRORS as exc:
            raise BackplaneUnavailable(f"redis: {exc}") from None

    # -- presence ---------------------------------------------------------------

    def _presence_keys(self, channel: str) -> list[str]:
        return [f"{self.prefix}p:{channel}", f"{self.prefix}pz:{channel}"]

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        members, expiries = self._presence_keys(channel)
        expires = int((time.time() + ttl) * 1000)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(members, member.client, dumps(member.to_json()))
                pipe.zadd(expiries, {member.client: expires})
                pipe.pexpire(members, int(ttl * 2000))
                pipe.pexpire(expiries, int(ttl * 2000))
                await pipe.execute()
        except UNAVAILABLE_ERRORS as exc:
            raise BackplaneUnavailable(f"redis: {exc}") from None

    async def presence_remove(self, channel: str, client: str) -> None:
        members, expiries = self._presence_keys(channel)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(members, client)
                pipe.zrem(expiries, client)
                await pipe.execute()
        except UNAVAILABLE_ERRORS as exc:
            raise BackplaneUnavailable(f"redis: {exc}") from None

    async def presence(self, channel: str) -> list[Member]:
        try:
            raw = await self._presence(
                keys=self._presence_keys(channel), args=[int(time.time() * 1000)]
            )
        except UNAVAILABLE_ERRORS as exc:
            raise BackplaneUnavailable(f"redis: {exc}") from None
        members = []
        for item in raw:
            value = _json(item)
            if isinstance(value, dict) and isinstance(value.get("client"), str):
                members.append(Member(value["client"], value.get("user"), value.get("info")))
        return sorted(members, key=lambda m: m.client)

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
                    await _aclose(pubsub)
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
                await _aclose(pubsub)
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
        data: bytes = message["data"]
        try:
            if data[:1] == b"m":
                epoch, offset, stamp, payload = data[1:].decode().split(" ", 3)
                entry = Entry(channel, epoch, int(offset), int(stamp), payload)
                self._listener.on_message(entry)
            elif data[:1] == b"e":
                event, member = data[1:].decode().split(" ", 1)
                self._listener.on_event(channel, event, member)
        except ValueError:
            logger.warning("ignored a malformed message on %s", topic)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def _aclose(pubsub: Any) -> None:
    """Close a pub/sub connection.

    redis-py before 8.2 leaves ``PubSub.aclose()`` unannotated, which
    ``mypy --strict`` refuses to call, and 8.2 annotates it: taking the
    connection as ``Any`` type-checks the same with both.
    """
    await pubsub.aclose()

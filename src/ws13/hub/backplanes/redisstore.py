"""Channels kept in Redis: history, offsets, epochs, presence and publishing.

Shared by the Redis backplane (one server) and the Redis Cluster backplane:
both keep the same keys, only named by a different ``KeyLayout``. What
differs between them is how messages come back (a pub/sub connection, or one
sharded pub/sub connection per master), which each backplane does itself.

Keys of a channel (``prefix`` defaults to ``ws13:hub:``):

* ``{prefix}meta:{channel}`` — hash: ``e`` the epoch, ``o`` the last offset,
  ``n`` the cluster node that wrote it (empty on a single Redis);
* ``{prefix}s:{channel}`` — stream: the history, entry ID ``{offset}-1``,
  fields ``t`` (ms since the Unix epoch) and ``d`` (the JSON data);
* ``{prefix}p:{channel}`` / ``{prefix}pz:{channel}`` — presence: a hash of
  members and a sorted set of their expiry times;
* pub/sub channel ``{prefix}m:{channel}`` — fan-out to the nodes.

On a cluster the channel name is wrapped in a hash tag (``{prefix}s:{{chat}}``)
so that all of a channel's keys and its pub/sub channel share one hash slot,
and a publish is one atomic script on one master.

A Lua script appends a message atomically: it bumps the offset, adds the
stream entry (trimmed to ``history_size`` entries and ``ttl``), sets both
keys to expire after ``ttl`` and publishes ``m{epoch} {offset} {time} {data}``.
A new epoch starts (offsets restart at 1, history is dropped) when the keys
are lost (Redis restarted without persistence, or the channel was idle for
``ttl``) or, on a cluster, when another master than the last writer runs the
script: after a failover the promoted replica may lack the last messages its
master acknowledged (replication is asynchronous), so offsets can't go on.
(Keeping its history under the new epoch would not help: the hub delivers a
new epoch from its first offset, so subscribers would get old messages again.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import string
import time  # noqa: TID251 - history ages and presence expiry need a clock
from typing import Any

from ..wire import dumps
from . import BackplaneListener, BackplaneUnavailable, Entry, HistoryPage, Member

try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis backplane needs redis-py: pip install 'ws13[redis]'") from exc

__all__ = ["UNAVAILABLE_ERRORS", "KeyLayout", "RedisStore", "dispatch"]

logger = logging.getLogger("ws13.hub.redis")

#: Errors that mean "Redis is unreachable now", as opposed to bugs.
UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

#: Error replies that mean "this node can't take the write now", not a bug:
#: a master without the replicas ``min-replicas-to-write`` asks for (the
#: setting that keeps a master restarted with an old view, or cut off from
#: its replicas, from acknowledging writes Redis would later drop), a replica,
#: a replica whose master is down.
REFUSED_REPLIES = ("NOREPLICAS ", "READONLY ", "MASTERDOWN ")

# Sets ``epoch`` (and ``fresh`` when it is new) from KEYS[1], the meta hash;
# ARGV[1] is a candidate epoch. $node is the writer's identity: the cluster
# node ID, or '' on a single Redis (so keys written before ``n`` existed keep
# their epoch).
EPOCH_LUA = """
local meta = redis.call('HMGET', KEYS[1], 'e', 'n')
local epoch = meta[1]
local node = $node
local fresh = false
if not epoch or (meta[2] or '') ~= node then
  epoch = ARGV[1]
  fresh = true
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'n', node)
end
"""

PUBLISH_LUA = """
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
redis.call('$publish', ARGV[6], 'm' .. epoch .. ' ' .. offset .. ' ' .. ARGV[3] .. ' ' .. ARGV[2])
return {epoch, offset}
"""

HISTORY_LUA = """
if fresh then
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

EVENT_LUA = """
redis.call('$publish', ARGV[1], ARGV[2])
"""

PRESENCE_ADD_LUA = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
"""

PRESENCE_REMOVE_LUA = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
"""

PRESENCE_LUA = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, client in ipairs(stale) do
  redis.call('HDEL', KEYS[1], client)
  redis.call('ZREM', KEYS[2], client)
end
return redis.call('HVALS', KEYS[1])
"""


@dataclasses.dataclass(frozen=True, slots=True)
class KeyLayout:
    """How a channel's keys and pub/sub channel are named.

    ``cluster`` wraps the channel in a hash tag so that they all land in one
    hash slot. A hash tag ends at the first ``}``, so in a tag each ``}`` of
    the channel becomes ``)`` and the channel itself follows the tag to keep
    names unique. ``prefix`` can't contain ``{`` or ``}`` on a cluster.
    """

    prefix: str = "ws13:hub:"
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.cluster and ("{" in self.prefix or "}" in self.prefix):
            raise ValueError(f"a Redis Cluster key prefix can't contain braces: {self.prefix!r}")

    def name(self, kind: str, channel: str) -> str:
        if not self.cluster:
            return f"{self.prefix}{kind}:{channel}"
        tag = channel.replace("}", ")")
        suffix = "" if tag == channel else channel
        return f"{self.prefix}{kind}:{{{tag}}}{suffix}"

    def keys(self, channel: str) -> list[str]:
        return [self.name("meta", channel), self.name("s", channel)]

    def presence_keys(self, channel: str) -> list[str]:
        return [self.name("p", channel), self.name("pz", channel)]

    def topic(self, channel: str) -> str:
        return self.name("m", channel)


class RedisStore:
    """A hub's channels in Redis, through ``client`` (a ``redis.asyncio.Redis``
    or ``redis.asyncio.cluster.RedisCluster``); see the module docstring.

    Every method raises BackplaneUnavailable for one of ``unavailable``.
    """

    def __init__(
        self,
        client: Any,
        layout: KeyLayout,
        unavailable: tuple[type[BaseException], ...] = UNAVAILABLE_ERRORS,
    ) -> None:
        self.client = client
        self.layout = layout
        self.unavailable = unavailable
        node = "redis.call('CLUSTER', 'MYID')" if layout.cluster else "''"
        publish = "SPUBLISH" if layout.cluster else "PUBLISH"
        epoch = string.Template(EPOCH_LUA).substitute(node=node)
        publish_lua = string.Template(PUBLISH_LUA).substitute(publish=publish)
        self._publish = client.register_script(epoch + publish_lua)
        self._history = client.register_script(epoch + HISTORY_LUA)
        # A script rather than a bare (S)PUBLISH: its key routes it to the
        # channel's master on a cluster.
        self._event = client.register_script(string.Template(EVENT_LUA).substitute(publish=publish))
        self._presence_add = client.register_script(PRESENCE_ADD_LUA)
        self._presence_remove = client.register_script(PRESENCE_REMOVE_LUA)
        self._presence = client.register_script(PRESENCE_LUA)

    async def _run(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except self.unavailable as exc:
            raise BackplaneUnavailable(f"redis: {exc}") from None
        except ResponseError as exc:
            if str(exc).startswith(REFUSED_REPLIES):
                raise BackplaneUnavailable(f"redis: {str(exc).partition('. ')[0]}") from None
            raise

    async def publish(self, channel: str, data: str, *, history_size: int, ttl: float) -> Entry:
        now = int(time.time() * 1000)
        args: list[str | int] = [
            secrets.token_hex(4),
            data,
            now,
            history_size,
            max(1, int(ttl * 1000)),
            self.layout.topic(channel),
        ]
        epoch, offset = await self._run(self._publish, self.layout.keys(channel), args)
        return Entry(channel, epoch.decode(), int(offset), now, data)

    async def history(
        self, channel: str, *, since: int | None = None, limit: int | None = None, ttl: float
    ) -> HistoryPage:
        start = "" if since is None else f"{since + 1}-0"
        args: list[str | int] = [
            secrets.token_hex(4),
            start,
            -1 if limit is None else limit,
            max(1, int(ttl * 1000)),
        ]
        epoch, top, raw = await self._run(self._history, self.layout.keys(channel), args)
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

    async def publish_event(self, channel: str, kind: str, member: Member) -> None:
        payload = f"e{kind} {dumps(member.to_json())}"
        topic = self.layout.topic(channel)
        await self._run(self._event, self.layout.keys(channel)[:1], [topic, payload])

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        expires = int((time.time() + ttl) * 1000)
        args: list[str | int] = [member.client, dumps(member.to_json()), expires, int(ttl * 2000)]
        await self._run(self._presence_add, self.layout.presence_keys(channel), args)

    async def presence_remove(self, channel: str, client: str) -> None:
        await self._run(self._presence_remove, self.layout.presence_keys(channel), [client])

    async def presence(self, channel: str) -> list[Member]:
        now = int(time.time() * 1000)
        raw = await self._run(self._presence, self.layout.presence_keys(channel), [now])
        members = []
        for item in raw:
            value = _json(item)
            if isinstance(value, dict) and isinstance(value.get("client"), str):
                members.append(Member(value["client"], value.get("user"), value.get("info")))
        return sorted(members, key=lambda m: m.client)


def dispatch(listener: BackplaneListener, channel: str, data: bytes) -> None:
    """Pass a pub/sub payload of ``channel`` to ``listener``: a message or an event."""
    try:
        if data[:1] == b"m":
            epoch, offset, stamp, payload = data[1:].decode().split(" ", 3)
            listener.on_message(Entry(channel, epoch, int(offset), int(stamp), payload))
        elif data[:1] == b"e":
            event, member = data[1:].decode().split(" ", 1)
            listener.on_event(channel, event, member)
    except ValueError:
        logger.warning("ignored a malformed message on %s", channel)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None

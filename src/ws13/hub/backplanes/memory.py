"""The in-memory backplane: history and fan-out inside one process (the default).

Each channel keeps a bounded ring of its latest messages. Epochs are random
per channel state, so a restart (a new backplane) changes every epoch and
clients know their offsets no longer apply. A channel whose history has all
expired and that no one is subscribed to is forgotten (memory stays bounded
by active channels); it gets a new epoch if it comes back.
"""

from __future__ import annotations

import collections
import secrets
import time  # noqa: TID251 - history ages need a clock; this isn't the sans-I/O core
from typing import Any

from ..wire import dumps
from . import BackplaneListener, Entry, HistoryPage, Member

__all__ = ["InMemoryBackplane"]

#: Publishes between sweeps of forgotten channels.
SWEEP_EVERY = 1024


class _ChannelLog:
    __slots__ = ("entries", "epoch", "offset")

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self.offset = 0
        self.entries: collections.deque[Entry] = collections.deque()

    def trim(self, size: int, ttl: float, now_ms: int) -> None:
        entries = self.entries
        while len(entries) > size:
            entries.popleft()
        cutoff = now_ms - ttl * 1000
        while entries and entries[0].time < cutoff:
            entries.popleft()


class InMemoryBackplane:
    """History and fan-out for one process; see the module docstring."""

    name = "memory"

    def __init__(self) -> None:
        self._logs: dict[str, _ChannelLog] = {}
        self._ttls: dict[str, float] = {}
        self._subscribed: set[str] = set()
        self._presence: dict[str, dict[str, Member]] = {}
        self._listener: BackplaneListener | None = None
        self._publishes = 0

    def attach(self, listener: BackplaneListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        self._subscribed.clear()

    @property
    def healthy(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"backplane": "memory", "healthy": True, "channels": len(self._logs)}

    def _log(self, channel: str) -> _ChannelLog:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = _ChannelLog()
        return log

    async def publish(self, channel: str, data: str, *, history_size: int, ttl: float) -> Entry:
        log = self._log(channel)
        now = int(time.time() * 1000)
        log.offset += 1
        entry = Entry(channel, log.epoch, log.offset, now, data)
        if history_size:
            log.entries.append(entry)
        log.trim(history_size, ttl, now)
        self._ttls[channel] = ttl
        self._publishes += 1
        if self._publishes % SWEEP_EVERY == 0:
            self._sweep(now)
        if channel in self._subscribed and self._listener is not None:
            self._listener.on_message(entry)
        return entry

    def _sweep(self, now_ms: int) -> None:
        for channel, log in list(self._logs.items()):
            ttl = self._ttls.get(channel, 0.0)
            log.trim(len(log.entries), ttl, now_ms)
            if not log.entries and channel not in self._subscribed:
                del self._logs[channel]
                self._ttls.pop(channel, None)

    async def history(
        self, channel: str, *, since: int | None = None, limit: int | None = None, ttl: float
    ) -> HistoryPage:
        log = self._log(channel)
        cutoff = time.time() * 1000 - ttl * 1000
        entries = [e for e in log.entries if e.time >= cutoff]
        if since is not None:
            # Offsets in the ring are consecutive: index instead of scanning.
            start = 0 if not entries else max(0, since + 1 - entries[0].offset)
            entries = entries[start:]
            if limit is not None:
                entries = entries[:limit]
        elif limit is not None:
            entries = entries[max(0, len(entries) - limit) :] if limit else []
        return HistoryPage(log.epoch, log.offset, entries)

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    async def publish_event(self, channel: str, kind: str, member: Member) -> None:
        if channel in self._subscribed and self._listener is not None:
            self._listener.on_event(channel, kind, dumps(member.to_json()))

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        self._presence.setdefault(channel, {})[member.client] = member

    async def presence_remove(self, channel: str, client: str) -> None:
        members = self._presence.get(channel)
        if members is not None:
            members.pop(client, None)
            if not members:
                del self._presence[channel]

    async def presence(self, channel: str) -> list[Member]:
        return list(self._presence.get(channel, {}).values())

"""Backplanes: where a hub keeps history and how it reaches the other nodes.

A ``Backplane`` stores each channel's messages with their offsets and epoch,
fans them out to every node subscribed to the channel, and keeps presence.
``InMemoryBackplane`` (the default) serves one process; ``LocalBackplane``
lets processes on one machine share the channels one of them owns (what
``ws13 serve --workers N`` uses); ``RedisBackplane`` (``ws13[redis]``,
imported only when used) lets many processes anywhere share channels.
Both pass the same contract tests (``tests/hub/test_backplanes.py``).

The hub registers itself as the backplane's ``BackplaneListener``: messages of
the channels it subscribed to arrive through ``on_message`` in offset order
per channel, possibly with gaps (after a network hiccup) that the hub fills
from ``history``. Listener callbacks are plain functions called from the
event loop; they must not block.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

__all__ = [
    "Backplane",
    "BackplaneListener",
    "BackplaneUnavailable",
    "Entry",
    "HistoryPage",
    "Member",
    "open_backplane",
]


class BackplaneUnavailable(Exception):
    """The backplane can't be reached now (e.g. Redis is down); retry later."""


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One published message.

    ``data`` is the message's JSON text; ``time`` is milliseconds since the
    Unix epoch when it was published.
    """

    channel: str
    epoch: str
    offset: int
    time: int
    data: str


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryPage:
    """What ``Backplane.history`` returns.

    Attributes:
        epoch: the channel's current epoch.
        top: the offset of the latest message published (0 if none yet).
        entries: the messages asked for, oldest first.
    """

    epoch: str
    top: int
    entries: list[Entry]


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """A subscriber, as ``presence`` lists it and ``join``/``leave`` push it.

    ``client`` is unique per connection across nodes; ``user`` and ``info``
    come from the authorization hook.
    """

    client: str
    user: str | None = None
    info: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"client": self.client, "user": self.user, "info": self.info}


class BackplaneListener(Protocol):
    """What a backplane calls; the hub implements it."""

    def on_message(self, entry: Entry) -> None:
        """A message on a subscribed channel, in offset order per channel."""

    def on_event(self, channel: str, kind: str, member: str) -> None:
        """A ``join`` or ``leave`` on a subscribed channel; ``member`` is JSON text."""

    def on_resync(self) -> None:
        """Messages may have been missed (the backplane reconnected): catch up."""


class Backplane(Protocol):
    """The interface between a hub and how its messages are stored and fanned out."""

    #: ``"memory"``, ``"redis"``...
    name: str

    def attach(self, listener: BackplaneListener) -> None:
        """Set the listener; a backplane serves one hub."""

    async def start(self) -> None:
        """Connect; a backplane that can't reach its store starts degraded and retries."""

    async def aclose(self) -> None:
        """Disconnect and stop background tasks."""

    @property
    def healthy(self) -> bool:
        """False while the backplane is degraded (e.g. Redis unreachable)."""

    def status(self) -> dict[str, Any]:
        """A JSON-ready status for ``/health``."""

    async def publish(self, channel: str, data: str, *, history_size: int, ttl: float) -> Entry:
        """Append ``data`` (JSON text) to ``channel``, fan it out, return its entry.

        Keeps at most ``history_size`` messages for at most ``ttl`` seconds.
        Raises BackplaneUnavailable.
        """

    async def history(
        self, channel: str, *, since: int | None = None, limit: int | None = None, ttl: float
    ) -> HistoryPage:
        """Retained messages: those after ``since`` (the first ``limit`` of them),
        or without ``since`` the last ``limit`` (all when ``limit`` is None).

        Messages older than ``ttl`` seconds are left out. A channel with no
        messages yet gets its epoch here. Raises BackplaneUnavailable.
        """

    async def subscribe(self, channel: str) -> None:
        """Deliver ``channel``'s messages and events to the listener from now on.

        When it returns, every message published later reaches the listener.
        """

    def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel``; takes effect at once for the listener."""

    async def publish_event(self, channel: str, kind: str, member: Member) -> None:
        """Fan out a ``join``/``leave`` event (not kept in history)."""

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        """Record ``member`` as present on ``channel`` (refreshed before ``ttl``)."""

    async def presence_remove(self, channel: str, client: str) -> None:
        """Forget ``client`` on ``channel``."""

    async def presence(self, channel: str) -> list[Member]:
        """Everyone present on ``channel``, on every node."""


def open_backplane(url: str | None, **kwargs: Any) -> Backplane:
    """The backplane for ``url``: ``None`` or ``memory://`` for in-memory,
    ``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``) for Redis,
    ``local:///PATH`` for the local backplane whose owner serves the Unix
    socket at ``/PATH`` (``ws13.hub.backplanes.localowner.serve_owner``).

    Raises ValueError for another scheme, ImportError when ``redis`` is missing.
    """
    if url is None or url == "memory://":
        from .memory import InMemoryBackplane

        return InMemoryBackplane(**kwargs)
    scheme = url.partition("://")[0].lower()
    if scheme == "local":
        from .local import LocalBackplane

        path = url.partition("://")[2]
        if not path.startswith("/"):
            raise ValueError(f"a local backplane URL names an absolute path: {url!r}")
        return LocalBackplane(path, **kwargs)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBackplane

        return RedisBackplane(url, **kwargs)
    raise ValueError(f"unsupported backplane URL: {url!r}; use redis://HOST:PORT/DB")

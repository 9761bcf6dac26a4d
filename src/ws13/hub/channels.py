"""Per-channel settings: history bounds, presence, and the slow-consumer policy.

A hub is configured with a mapping of channel-name patterns (``fnmatch``
style: ``chat:*``, ``ticker``) to ``ChannelOptions``; the first pattern that
matches a channel wins, and ``DEFAULT_OPTIONS`` applies to the rest.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL",
    "DEFAULT_OPTIONS",
    "MAX_HISTORY_SIZE",
    "ChannelConfig",
    "ChannelOptions",
    "Policy",
    "matches",
]

#: Messages kept per channel unless configured otherwise.
DEFAULT_HISTORY_SIZE = 100
#: Seconds a message is kept unless configured otherwise (5 minutes).
DEFAULT_HISTORY_TTL = 300.0
#: The largest history a channel may be configured to keep.
MAX_HISTORY_SIZE = 100_000


class Policy(enum.Enum):
    """What happens when a subscriber's outbound queue is full."""

    #: Drop the oldest queued pushes of the channel; the connection stays
    #: (tickers, live comments: only the latest values matter).
    DROP_OLDEST = "drop-oldest"
    #: Close the connection with 1013 (try again later); the client
    #: reconnects and recovers what it missed from history (chat).
    DISCONNECT = "disconnect"


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelOptions:
    """How the hub treats one channel.

    Args:
        history_size: messages kept for ``history`` and recovery; 0 keeps none
            (then a reconnecting client is told it can't recover).
        history_ttl: seconds a message is kept, at most; a channel idle for
            that long loses its history and gets a new epoch.
        presence: whether ``presence`` lists the channel's subscribers.
        join_leave: whether subscribers get ``join`` and ``leave`` pushes.
        policy: the slow-consumer policy, see ``Policy``.
    """

    history_size: int = DEFAULT_HISTORY_SIZE
    history_ttl: float = DEFAULT_HISTORY_TTL
    presence: bool = False
    join_leave: bool = False
    policy: Policy = Policy.DISCONNECT

    def __post_init__(self) -> None:
        if not 0 <= self.history_size <= MAX_HISTORY_SIZE:
            raise ValueError(f"history_size must be between 0 and {MAX_HISTORY_SIZE}")
        if not self.history_ttl > 0:
            raise ValueError("history_ttl must be positive")
        if self.join_leave and not self.presence:
            raise ValueError("join_leave needs presence")


DEFAULT_OPTIONS = ChannelOptions()


def matches(channel: str, patterns: Iterable[str]) -> bool:
    """Whether ``channel`` matches one of the ``fnmatch`` ``patterns`` (case-sensitive)."""
    return any(fnmatch.fnmatchcase(channel, pattern) for pattern in patterns)


class ChannelConfig:
    """Maps channel names to ``ChannelOptions`` by pattern; first match wins.

    Args:
        patterns: ``{"chat:*": ChannelOptions(...), ...}`` in priority order.
        default: options for channels no pattern matches.
    """

    def __init__(
        self,
        patterns: Mapping[str, ChannelOptions] | None = None,
        default: ChannelOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.patterns = dict(patterns or {})
        self.default = default
        self._cache: dict[str, ChannelOptions] = {}

    def __call__(self, channel: str) -> ChannelOptions:
        options = self._cache.get(channel)
        if options is None:
            options = self.default
            for pattern, candidate in self.patterns.items():
                if fnmatch.fnmatchcase(channel, pattern):
                    options = candidate
                    break
            if len(self._cache) >= 4096:  # bounded: channel names come from clients
                self._cache.clear()
            self._cache[channel] = options
        return options

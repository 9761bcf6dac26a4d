"""The hub: pub/sub channels with history, recovery after reconnect, and presence.

Serve it with ``Hub`` (``ws13 serve`` mounts one at ``/hub``), talk to it
with ``Client`` or ``ws13.js`` in a browser; the wire protocol is
``ws13.hub.v1`` (``docs/hub-protocol.md``). One process keeps channels in
memory; many share them through Redis (``RedisBackplane``, ``ws13[redis]``).
"""

from __future__ import annotations

from .asgi import HubEndpoint
from .auth import Principal, Refused, request_token
from .backplanes import Backplane, BackplaneUnavailable, Entry, HistoryPage, Member, open_backplane
from .backplanes.memory import InMemoryBackplane
from .channels import ChannelConfig, ChannelOptions, Policy
from .client import Client, Gap
from .mounting import mount
from .server import Hub, Session
from .wire import SUBPROTOCOL, ErrorCode, HubError

__all__ = [
    "SUBPROTOCOL",
    "Backplane",
    "BackplaneUnavailable",
    "ChannelConfig",
    "ChannelOptions",
    "Client",
    "Entry",
    "Gap",
    "ErrorCode",
    "HistoryPage",
    "Hub",
    "HubEndpoint",
    "HubError",
    "InMemoryBackplane",
    "Member",
    "Policy",
    "Principal",
    "Refused",
    "Session",
    "mount",
    "open_backplane",
    "request_token",
]

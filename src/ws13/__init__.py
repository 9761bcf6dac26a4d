"""ws13: WebSocket (RFC 6455) for Python — a sans-I/O core with an asyncio client and server.

Most programs use ``ws13.asyncio.connect`` and ``ws13.asyncio.serve``; the
sans-I/O ``ClientProtocol`` and ``ServerProtocol`` are for integrating other
I/O frameworks.
"""

from __future__ import annotations

from .client import ClientProtocol
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidRedirect,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    InvalidVersion,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from .frames import Close, CloseCode, Fragment, Frame, Opcode
from .headers import Headers
from .http11 import Request, Response
from .protocol import Protocol, Side, State
from .server import ServerProtocol
from .uri import WebSocketURI, parse_uri
from .version import __version__

__all__ = [
    "ClientProtocol",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Fragment",
    "Frame",
    "Headers",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidRedirect",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "InvalidVersion",
    "NegotiationError",
    "Opcode",
    "PayloadTooBig",
    "Protocol",
    "ProtocolError",
    "ProxyError",
    "Request",
    "Response",
    "ServerProtocol",
    "Side",
    "State",
    "WebSocketError",
    "WebSocketURI",
    "__version__",
    "parse_uri",
]

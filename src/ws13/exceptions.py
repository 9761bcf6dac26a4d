"""Every exception ws13 raises.

The tree::

    WebSocketError
    ├── ConnectionClosed
    │   ├── ConnectionClosedOK
    │   └── ConnectionClosedError
    ├── InvalidURI (also ValueError)
    ├── InvalidProxy (also ValueError)    a proxy URL that can't be used
    ├── InvalidHandshake
    │   ├── InvalidMessage            malformed HTTP during the opening handshake
    │   ├── InvalidStatus             the server answered with a status other than 101
    │   │   └── InvalidRedirect       a redirect that isn't followed (loop, too many,
    │   │                             wss to ws, bad Location)
    │   ├── ProxyError                connecting through a proxy failed
    │   │   ├── InvalidProxyMessage   the proxy's answer to CONNECT is malformed
    │   │   └── InvalidProxyStatus    the proxy refused CONNECT (e.g. 407)
    │   ├── InvalidHeader
    │   │   ├── InvalidUpgrade        Upgrade / Connection missing or wrong
    │   │   ├── InvalidOrigin         Origin refused by the server (403)
    │   │   └── NegotiationError      subprotocol or extension not offered / not acceptable
    │   └── InvalidVersion            Sec-WebSocket-Version is not 13 (426)
    ├── PayloadTooBig                 a limit was exceeded (close code 1009)
    ├── ProtocolError                 the peer broke RFC 6455 (close code 1002 or 1007)
    ├── InvalidState (also AssertionError)   local misuse, e.g. sending after close
    └── ConcurrencyError (also RuntimeError) two coroutines calling recv() at once

Errors caused by the *peer* never escape the sans-I/O core: the core fails the
connection with the matching close code and stores the exception in
``Protocol.parser_exc``. Errors caused by the *local program* raise at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .frames import Close
    from .http11 import Response

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
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
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base class of every ws13 exception."""


class ConnectionClosed(WebSocketError):
    """Raised when using a connection that is closed or closing.

    Attributes:
        rcvd: the Close frame received from the peer, if any.
        sent: the Close frame sent to the peer, if any.
        rcvd_then_sent: whether the peer started the closing handshake;
            ``None`` when only one side (or no side) sent a Close frame.
    """

    def __init__(
        self,
        rcvd: Close | None,
        sent: Close | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        # The message is formatted by __str__ when someone reads it: every
        # closing connection makes one of these, few are ever printed.
        super().__init__(rcvd, sent, rcvd_then_sent)

    def __str__(self) -> str:
        if self.rcvd is None:
            if self.sent is None:
                return "no close frame received or sent"
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"

    @property
    def code(self) -> int:
        """The close code received, or 1006 (abnormal closure) when none was."""
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason received, or an empty string."""
        return "" if self.rcvd is None else self.rcvd.reason


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: close codes 1000 or 1001 both ways."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error, or without a closing handshake."""


class InvalidURI(WebSocketError, ValueError):
    """A ``ws://`` or ``wss://`` URI could not be used."""

    def __init__(self, uri: str, msg: str) -> None:
        self.uri = uri
        self.msg = msg
        super().__init__(f"{uri!r} isn't a valid WebSocket URI: {msg}")


class InvalidHandshake(WebSocketError):
    """The opening handshake failed.

    Attributes:
        status: the HTTP status a server should answer with (or the status the
            client received), e.g. 400, 403, 426.
        response: on the client side, the server's response when one was read.
    """

    status: int = 400

    def __init__(self, msg: str, *, status: int | None = None) -> None:
        super().__init__(msg)
        if status is not None:
            self.status = status
        self.response: Response | None = None


class InvalidMessage(InvalidHandshake):
    """The HTTP request or response of the handshake is malformed or too large."""


class InvalidStatus(InvalidHandshake):
    """The server answered the handshake with a status other than 101."""

    def __init__(self, response: Response) -> None:
        super().__init__(
            f"server rejected WebSocket connection: HTTP {response.status_code}",
            status=response.status_code,
        )
        self.response = response


class InvalidRedirect(InvalidStatus):
    """The server answered with a redirect the client won't follow.

    ``response`` is the redirect; ``msg`` says why: a loop, more than
    ``max_redirects`` redirects, ``wss://`` to ``ws://``, or a missing or
    invalid ``Location`` header.
    """

    def __init__(self, response: Response, msg: str) -> None:
        super().__init__(response)
        self.msg = msg
        self.args = (f"redirect not followed: {msg} (HTTP {response.status_code})",)


class InvalidProxy(WebSocketError, ValueError):
    """A proxy URL could not be used (bad scheme, no host, a path...)."""

    def __init__(self, proxy: str, msg: str) -> None:
        self.proxy = proxy
        self.msg = msg
        super().__init__(f"{proxy!r} isn't a valid proxy: {msg}")


class ProxyError(InvalidHandshake):
    """Connecting through a proxy failed (the proxy itself answered or misbehaved)."""


class InvalidProxyMessage(ProxyError):
    """The proxy's answer to ``CONNECT`` isn't valid HTTP, or is too large."""


class InvalidProxyStatus(ProxyError):
    """The proxy refused ``CONNECT``: its status line is in the message.

    Attributes:
        response: the proxy's response (status, reason and headers; no body).
    """

    def __init__(self, response: Response) -> None:
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        super().__init__(
            f"proxy rejected connection: HTTP {response.status_code}{reason}",
            status=response.status_code,
        )
        self.response = response


class InvalidHeader(InvalidHandshake):
    """A handshake header is missing or has a wrong value."""

    def __init__(self, name: str, value: str | None = None, *, status: int = 400) -> None:
        self.name = name
        self.value = value
        if value is None:
            msg = f"missing {name} header"
        elif value == "":
            msg = f"empty {name} header"
        else:
            msg = f"invalid {name} header: {value}"
        super().__init__(msg, status=status)


class InvalidUpgrade(InvalidHeader):
    """The Upgrade or Connection header does not ask for a WebSocket upgrade."""


class InvalidOrigin(InvalidHeader):
    """The server refused the Origin header (HTTP 403)."""

    def __init__(self, origin: str | None) -> None:
        super().__init__("Origin", origin, status=403)


class NegotiationError(InvalidHeader):
    """A subprotocol or extension was not offered or cannot be accepted."""


class InvalidVersion(InvalidHeader):
    """Sec-WebSocket-Version is not 13 (the server answers 426 Upgrade Required)."""

    def __init__(self, value: str | None) -> None:
        super().__init__("Sec-WebSocket-Version", value, status=426)


class PayloadTooBig(WebSocketError):
    """A frame or message exceeds a configured limit (close code 1009)."""


class ProtocolError(WebSocketError):
    """The peer did not follow RFC 6455 (close code 1002, or 1007 for bad UTF-8)."""


class InvalidState(WebSocketError, AssertionError):
    """An operation is not allowed in the connection's current state."""


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two coroutines tried to do something that only one may do at a time."""

"""The sans-I/O client: the opening handshake of RFC 6455 section 4.1, then frames."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Generator, Iterable, Sequence

from .exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
    ProxyError,
)
from .extensions.base import ClientExtensionFactory, Extension
from .headers import Headers, build_extension_list, parse_extension_list, parse_token_list
from .http11 import Request, Response
from .protocol import CLIENT, CONNECTING, OPEN, Protocol, State
from .uri import WebSocketURI
from .utils import accept_key, generate_key
from .version import USER_AGENT

__all__ = [
    "BACKOFF_FACTOR",
    "BACKOFF_INITIAL_DELAY",
    "BACKOFF_MAX_DELAY",
    "BACKOFF_MIN_DELAY",
    "ClientProtocol",
    "backoff",
    "process_exception",
]


class ClientProtocol(Protocol):
    """The client side of a WebSocket connection, from the opening handshake on.

    Call ``connect()`` for the handshake request, ``send_request()`` to queue
    it, then feed the server's bytes to ``receive_data()``. The first event is
    the server's ``Response``; if ``handshake_exc`` is then ``None`` the
    connection is OPEN.

    Args:
        uri: where to connect (from ``ws13.uri.parse_uri``).
        origin: the ``Origin`` header to send, if any.
        subprotocols: subprotocols to offer, in order of preference.
        extensions: extension factories whose offers go in
            ``Sec-WebSocket-Extensions``, e.g. ``ClientPerMessageDeflateFactory()``.
        state: CONNECTING, or OPEN to skip the handshake (tests, tunnels).
        max_size: see ``Protocol``.
    """

    __slots__ = (
        "_handshake_buffer",
        "available_extensions",
        "available_subprotocols",
        "key",
        "origin",
        "request",
        "response",
        "subprotocol",
        "uri",
    )

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        extensions: Sequence[ClientExtensionFactory] | None = None,
        state: State = CONNECTING,
        max_size: int | None = 2**20,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        super().__init__(CLIENT, state=state, max_size=max_size, logger=logger)
        self.uri = uri
        self.origin = origin
        self.available_subprotocols = tuple(subprotocols or ())
        self.available_extensions = tuple(extensions or ())
        #: The subprotocol the server chose, if any.
        self.subprotocol: str | None = None
        self.key = generate_key()
        #: The handshake request and response, once sent / received.
        self.request: Request | None = None
        self.response: Response | None = None
        self._handshake_buffer = bytearray()

    def connect(
        self,
        additional_headers: Iterable[tuple[str, str]] | None = None,
        user_agent: str | None = USER_AGENT,
    ) -> Request:
        """Build the opening handshake request (RFC 6455 section 4.1)."""
        headers = Headers()
        headers["Host"] = self.uri.host_header
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
        headers["Sec-WebSocket-Key"] = self.key
        headers["Sec-WebSocket-Version"] = "13"
        if self.origin is not None:
            headers["Origin"] = self.origin
        if self.available_extensions:
            headers["Sec-WebSocket-Extensions"] = build_extension_list(
                (factory.name, factory.get_request_params())
                for factory in self.available_extensions
            )
        if self.available_subprotocols:
            headers["Sec-WebSocket-Protocol"] = ", ".join(self.available_subprotocols)
        if self.uri.authorization is not None:
            headers["Authorization"] = self.uri.authorization
        if user_agent is not None:
            headers["User-Agent"] = user_agent
        if additional_headers is not None:
            headers.update(additional_headers)
        return Request(self.uri.path, headers)

    def send_request(self, request: Request) -> None:
        """Queue the handshake request; then call ``data_to_send()``."""
        if self.debug:
            self.logger.debug("> GET %s HTTP/1.1", request.path)
        self.request = request
        self._queue_writes([request.serialize()])

    def process_response(self, response: Response) -> None:
        """Check the server's answer; raise InvalidHandshake if it must be refused."""
        if response.status_code != 101:
            raise InvalidStatus(response)
        headers = response.headers
        # Section 4.1: "If the response lacks an |Upgrade| header field or the
        # |Upgrade| header field contains a value that is not an ASCII
        # case-insensitive match for the value "websocket", the client MUST
        # _Fail the WebSocket Connection_." Likewise for Connection: Upgrade.
        connection = parse_token_list(headers.get_all("Connection"), "Connection")
        if not any(token.lower() == "upgrade" for token in connection):
            raise InvalidUpgrade("Connection", headers.get("Connection"))
        upgrade = parse_token_list(headers.get_all("Upgrade"), "Upgrade")
        if [token.lower() for token in upgrade] != ["websocket"]:
            raise InvalidUpgrade("Upgrade", headers.get("Upgrade"))
        accept = headers.get_all("Sec-WebSocket-Accept")
        if len(accept) != 1:
            raise InvalidHeader("Sec-WebSocket-Accept", headers.get("Sec-WebSocket-Accept"))
        if accept[0] != accept_key(self.key):
            raise InvalidHeader(
                "Sec-WebSocket-Accept", f"{accept[0]} (expected {accept_key(self.key)})"
            )
        # Section 4.1: "If the response includes a |Sec-WebSocket-Extensions|
        # header field and this header field indicates the use of an
        # extension that was not present in the client's handshake [...] the
        # client MUST _Fail the WebSocket Connection_."
        accepted: list[Extension] = []
        for name, params in parse_extension_list(headers.get_all("Sec-WebSocket-Extensions")):
            for factory in self.available_extensions:
                if factory.name == name:
                    accepted.append(factory.process_response_params(params, accepted))
                    break
            else:
                raise NegotiationError("Sec-WebSocket-Extensions", f"{name} (not offered)")
        protocols = parse_token_list(
            headers.get_all("Sec-WebSocket-Protocol"), "Sec-WebSocket-Protocol"
        )
        if protocols:
            if len(protocols) > 1:
                raise NegotiationError(
                    "Sec-WebSocket-Protocol", ", ".join(protocols) + " (several)"
                )
            if protocols[0] not in self.available_subprotocols:
                raise NegotiationError("Sec-WebSocket-Protocol", f"{protocols[0]} (not offered)")
            self.subprotocol = protocols[0]
        self.set_extensions(accepted)

    def _receive_handshake_data(self, data: bytes | bytearray) -> None:
        if self.handshake_exc is not None:
            return
        self._handshake_buffer += data
        self._parse_response(eof=False)

    def receive_eof(self) -> None:
        if self._state is CONNECTING and self.handshake_exc is None:
            self._parse_response(eof=True)
            if self._state is CONNECTING and self.handshake_exc is None:
                exc = InvalidMessage("connection closed during the opening handshake")
                exc.__cause__ = EOFError("connection closed")
                self.handshake_exc = exc
        super().receive_eof()

    def _parse_response(self, *, eof: bool) -> None:
        response = None
        try:
            parsed = Response.parse(self._handshake_buffer, eof=eof)
            if parsed is None:
                return
            response, size = parsed
            self.response = response
            self.process_response(response)
        except InvalidHandshake as exc:
            exc.response = response
            self.handshake_exc = exc
            if self.debug:
                self.logger.debug("! opening handshake failed: %s", exc)
            if response is not None:
                self._queue_event(response)
            if not self.eof_sent:
                self.send_eof()
            self._discarding = True
            return
        if self.debug:
            self.logger.debug("< HTTP/1.1 101 %s", response.reason_phrase)
        self._queue_event(response)
        self.state = OPEN
        rest = bytes(self._handshake_buffer[size:])
        self._handshake_buffer = bytearray()
        if rest:
            super().receive_data(rest)


# Reconnection: what to retry and how long to wait. websockets' names and
# defaults, so programs and settings carry over; each default can be set with
# an environment variable.
BACKOFF_INITIAL_DELAY = float(os.environ.get("WS13_BACKOFF_INITIAL_DELAY", "5"))
BACKOFF_MIN_DELAY = float(os.environ.get("WS13_BACKOFF_MIN_DELAY", "3.1"))
BACKOFF_MAX_DELAY = float(os.environ.get("WS13_BACKOFF_MAX_DELAY", "90.0"))
BACKOFF_FACTOR = float(os.environ.get("WS13_BACKOFF_FACTOR", "1.618"))


def backoff(
    initial_delay: float = BACKOFF_INITIAL_DELAY,
    min_delay: float = BACKOFF_MIN_DELAY,
    max_delay: float = BACKOFF_MAX_DELAY,
    factor: float = BACKOFF_FACTOR,
) -> Generator[float, None, None]:
    """The delays, in seconds, between reconnection attempts; endless.

    First a random delay between 0 and ``initial_delay`` (5): RFC 6455
    section 7.2.3 asks clients to spread their reconnections after an
    abnormal closure, lest they all come back at once. Then ``min_delay``
    (3.1) multiplied by ``factor`` (1.618) at each attempt, up to
    ``max_delay`` (90), which repeats. Set the defaults with
    ``WS13_BACKOFF_INITIAL_DELAY``, ``WS13_BACKOFF_MIN_DELAY``,
    ``WS13_BACKOFF_MAX_DELAY`` and ``WS13_BACKOFF_FACTOR``.
    """
    yield random.random() * initial_delay
    delay = min_delay
    while delay < max_delay:
        yield delay
        delay *= factor
    while True:
        yield max_delay


def process_exception(exc: Exception) -> Exception | None:
    """Whether a failed connection attempt is worth retrying: the default policy.

    Returns ``None`` to retry, after the next backoff delay, on what may be
    transient:

    * ``OSError`` (refused, reset, unreachable; python-socks' proxy errors
      are ``OSError`` too) and ``TimeoutError``;
    * ``InvalidMessage`` caused by ``EOFError``: the connection closed during
      the opening handshake;
    * ``InvalidStatus`` 500, 502, 503 or 504, from the server or a proxy in
      front of it; and ``InvalidProxyStatus`` with those statuses.

    Returns ``exc`` for everything else, which is fatal: a 4xx, an invalid
    response, a refused redirect, a bad URI, a TLS certificate that fails
    verification (``ssl.SSLCertVerificationError``, an ``OSError`` that
    retrying won't fix)... The reconnecting loop raises it.
    """
    if isinstance(exc, OSError) and isinstance(exc, ValueError):
        # ssl.SSLCertVerificationError is both (the core doesn't import ssl):
        # a certificate that fails verification won't pass on a retry.
        return exc
    if isinstance(exc, (OSError, TimeoutError)):
        return None
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):
        return None
    if isinstance(exc, (InvalidStatus, ProxyError)) and exc.status in (500, 502, 503, 504):
        return None
    return exc

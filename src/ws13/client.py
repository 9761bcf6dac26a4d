"""The sans-I/O client: the opening handshake of RFC 6455 section 4.1, then frames."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from .exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
)
from .extensions.base import ClientExtensionFactory, Extension
from .headers import Headers, build_extension_list, parse_extension_list, parse_token_list
from .http11 import Request, Response
from .protocol import CLIENT, CONNECTING, OPEN, Protocol, State
from .uri import WebSocketURI
from .utils import accept_key, generate_key
from .version import USER_AGENT

__all__ = ["ClientProtocol"]


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
        self._writes.append(request.serialize())

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
                self.handshake_exc = InvalidMessage(
                    "connection closed during the opening handshake"
                )
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
                self._events.append(response)
            if not self.eof_sent:
                self.send_eof()
            self._discarding = True
            return
        if self.debug:
            self.logger.debug("< HTTP/1.1 101 %s", response.reason_phrase)
        self._events.append(response)
        self.state = OPEN
        rest = bytes(self._handshake_buffer[size:])
        self._handshake_buffer = bytearray()
        if rest:
            super().receive_data(rest)

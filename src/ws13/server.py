"""The sans-I/O server: the opening handshake of RFC 6455 section 4.2, then frames."""

from __future__ import annotations

import binascii
import logging
from collections.abc import Callable, Sequence
from typing import Any

from .exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidUpgrade,
    InvalidVersion,
    NegotiationError,
)
from .extensions.base import Extension, ServerExtensionFactory
from .headers import (
    ExtensionParameter,
    Headers,
    build_extension_list,
    parse_extension_list,
    parse_token_list,
)
from .http11 import Request, Response
from .protocol import CLOSED, CONNECTING, OPEN, SERVER, Protocol, State
from .utils import accept_key
from .version import USER_AGENT

__all__ = ["ServerProtocol", "SubprotocolSelector", "connection_selector"]

# Shared, never mutated: set_extensions() receives a new list when any is accepted.
_NO_EXTENSIONS: list[Extension] = []

#: ``select_subprotocol(request, offered)`` returns the chosen subprotocol or None.
SubprotocolSelector = Callable[[Request, Sequence[str]], "str | None"]


def connection_selector(
    select_subprotocol: Callable[[Any, Sequence[str]], str | None], connection: object
) -> SubprotocolSelector:
    """Adapt websockets' ``select_subprotocol(connection, offered)``, which the
    I/O layers' ``serve()`` take, to the core's ``(request, offered)``."""

    def select(request: Request, offered: Sequence[str]) -> str | None:
        return select_subprotocol(connection, offered)

    return select


class ServerProtocol(Protocol):
    """The server side of a WebSocket connection, from the opening handshake on.

    Feed the client's bytes to ``receive_data()``. The first event is the
    client's ``Request`` (unless it was malformed: then the core has already
    queued a 4xx answer and ``handshake_exc`` says why). Answer it with
    ``send_response(accept(request))``, or with any other ``Response`` (for
    example ``reject(404, "not found")``) to refuse the upgrade.

    Args:
        origins: acceptable ``Origin`` values; ``None`` in the list accepts a
            request without Origin. ``None`` (the default) accepts any.
        subprotocols: subprotocols this server speaks, in order of preference.
        select_subprotocol: a callback that overrides the default choice (the
            first of ``subprotocols`` that the client offered).
        extensions: extension factories, e.g. ``ServerPerMessageDeflateFactory()``;
            each accepts or declines the client's offers in the client's order.
        server_header: the ``Server`` header, or ``None`` to send none.
        max_size: see ``Protocol``.
    """

    __slots__ = (
        "_accepted_extensions",
        "_handshake_buffer",
        "available_extensions",
        "available_subprotocols",
        "origins",
        "request",
        "response",
        "select_subprotocol",
        "server_header",
        "subprotocol",
    )

    def __init__(
        self,
        *,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SubprotocolSelector | None = None,
        extensions: Sequence[ServerExtensionFactory] | None = None,
        server_header: str | None = USER_AGENT,
        state: State = CONNECTING,
        max_size: int | None = 2**20,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        super().__init__(SERVER, state=state, max_size=max_size, logger=logger)
        # tuple() of a tuple is the same object: serve() passes tuples, so
        # every connection shares its configuration instead of copying it.
        self.origins = None if origins is None else tuple(origins)
        self.available_subprotocols = tuple(subprotocols or ())
        self.select_subprotocol = select_subprotocol
        self.available_extensions = tuple(extensions or ())
        self._accepted_extensions: list[Extension] = _NO_EXTENSIONS
        self.server_header = server_header
        #: The subprotocol chosen, if any.
        self.subprotocol: str | None = None
        #: The handshake request and response, once received / sent.
        self.request: Request | None = None
        self.response: Response | None = None
        self._handshake_buffer = bytearray()

    def _receive_handshake_data(self, data: bytes | bytearray) -> None:
        if self.handshake_exc is not None:
            # The handshake failed: the connection never opens, so what the
            # client sends next is dropped rather than buffered without limit.
            self._handshake_buffer.clear()
            return
        self._handshake_buffer += data
        if self.request is not None:
            # Frames sent right after the request wait for send_response().
            return
        try:
            parsed = Request.parse(self._handshake_buffer)
        except InvalidHandshake as exc:
            self.handshake_exc = exc
            # RFC 7231 section 6.5.5: a 405 response MUST list the allowed methods.
            headers = Headers([("Allow", "GET")]) if exc.status == 405 else None
            self.send_response(
                self.reject(exc.status, f"Failed to open a WebSocket connection: {exc}.\n", headers)
            )
            return
        if parsed is None:
            return
        request, size = parsed
        del self._handshake_buffer[:size]
        if self.debug:
            self.logger.debug("< GET %s HTTP/1.1", request.path)
        self.request = request
        self._queue_event(request)

    def accept(self, request: Request) -> Response:
        """Check the request and build the answer: 101, or a 4xx with a short text.

        On refusal ``handshake_exc`` says why. Call ``send_response()`` next.
        """
        try:
            key, protocol_header, extensions_header = self._check_request(request)
        except InvalidHandshake as exc:
            self.handshake_exc = exc
            if self.debug:
                self.logger.debug("! invalid handshake request: %s", exc)
            headers = Headers()
            if isinstance(exc, InvalidVersion):
                # Section 4.2.2: "[...] a |Sec-WebSocket-Version| header field
                # indicating the version(s) the server is capable of understanding."
                headers["Sec-WebSocket-Version"] = "13"
            if exc.status == 426:
                headers["Upgrade"] = "websocket"
            return self.reject(
                exc.status, f"Failed to open a WebSocket connection: {exc}.\n", headers
            )
        flat = ["Upgrade", "websocket", "Connection", "Upgrade"]
        flat += ("Sec-WebSocket-Accept", accept_key(key))
        if extensions_header is not None:
            flat += ("Sec-WebSocket-Extensions", extensions_header)
        if protocol_header is not None:
            flat += ("Sec-WebSocket-Protocol", protocol_header)
        if self.server_header is not None:
            flat += ("Server", self.server_header)
        return Response(101, "Switching Protocols", Headers.from_flat(flat))

    def _check_request(self, request: Request) -> tuple[str, str | None, str | None]:
        """Validate the opening handshake (section 4.2.1).

        Returns the Sec-WebSocket-Key, and the Sec-WebSocket-Protocol and
        Sec-WebSocket-Extensions answers, ``None`` for headers not to send.
        """
        # One pass over the headers, then a dict lookup per check.
        index = request.headers.index()
        empty: list[str] = []
        hosts = index.get("host", empty)
        if len(hosts) != 1:
            raise InvalidHeader("Host", _joined(hosts))
        values = index.get("connection", empty)
        if not _has_token(values, "Connection", "upgrade"):
            raise InvalidUpgrade("Connection", _joined(values), status=426)
        values = index.get("upgrade", empty)
        if not _has_token(values, "Upgrade", "websocket"):
            raise InvalidUpgrade("Upgrade", _joined(values), status=426)
        keys = index.get("sec-websocket-key", empty)
        if len(keys) != 1:
            raise InvalidHeader("Sec-WebSocket-Key", _joined(keys))
        try:
            raw_key = binascii.a2b_base64(keys[0], strict_mode=True)
        except ValueError:  # binascii.Error, or a non-ASCII str
            raise InvalidHeader("Sec-WebSocket-Key", keys[0]) from None
        # Section 4.2.1: "a base64-encoded value that, when decoded, is 16 bytes in length."
        if len(raw_key) != 16:
            raise InvalidHeader("Sec-WebSocket-Key", keys[0])
        versions = index.get("sec-websocket-version", empty)
        if versions != ["13"]:
            raise InvalidVersion(_joined(versions))
        if self.origins is not None:
            origin = index.get("origin", empty)
            if len(origin) > 1 or (origin[0] if origin else None) not in self.origins:
                raise InvalidOrigin(_joined(origin))
        values = index.get("sec-websocket-protocol", empty)
        offered = parse_token_list(values, "Sec-WebSocket-Protocol") if values else empty
        if self.select_subprotocol is not None:
            chosen = self.select_subprotocol(request, offered)
            if chosen is not None and chosen not in offered:
                raise InvalidHandshake(
                    f"select_subprotocol returned {chosen!r}, which the client didn't offer",
                    status=500,
                )
        elif offered:
            chosen = next((p for p in self.available_subprotocols if p in offered), None)
        else:
            chosen = None
        self.subprotocol = chosen
        offers = index.get("sec-websocket-extensions")
        return keys[0], chosen, None if offers is None else self._negotiate_extensions(offers)

    def _negotiate_extensions(self, values: list[str]) -> str | None:
        """Accept what we support of the client's offers, in the client's order.

        ``values`` are the Sec-WebSocket-Extensions header values. RFC 7692
        section 5: a server declines an offer it can't accept (bad or
        duplicate parameters included) and may accept a later one, the
        client's fallback.
        """
        offers = parse_extension_list(values)
        answer: list[tuple[str, list[ExtensionParameter]]] = []
        accepted: list[Extension] = []
        for name, params in offers:
            for factory in self.available_extensions:
                if factory.name != name:
                    continue
                try:
                    response_params, extension = factory.process_request_params(params, accepted)
                except NegotiationError:
                    continue
                answer.append((name, response_params))
                accepted.append(extension)
                break
        self._accepted_extensions = accepted
        return build_extension_list(answer) if answer else None

    def reject(self, status: int, text: str, headers: Headers | None = None) -> Response:
        """Build an HTTP response that refuses the upgrade, with a plain-text body."""
        response = Response.text(status, text, headers)
        if self.server_header is not None:
            response.headers["Server"] = self.server_header
        return response

    def send_response(self, response: Response) -> None:
        """Queue the answer to the handshake; a 101 opens the connection.

        Any other status ends the connection after the response is written.
        """
        if self._state is CLOSED:
            # The client closed the connection before the answer was ready
            # (e.g. during an async process_request): CLOSED is final, so
            # nothing is written and the connection doesn't reopen.
            return
        if self.debug:
            self.logger.debug("> HTTP/1.1 %d %s", response.status_code, response.reason_phrase)
        self.response = response
        self._queue_writes([response.serialize()])
        if response.status_code == 101:
            self.set_extensions(self._accepted_extensions)
            self.state = OPEN
            pending = bytes(self._handshake_buffer)
            self._handshake_buffer = bytearray()
            if pending:
                self.receive_data(pending)
        else:
            if self.handshake_exc is None:
                self.handshake_exc = InvalidMessage(
                    f"request refused with HTTP {response.status_code}",
                    status=response.status_code,
                )
            self.send_eof()
            # Nothing more is read: drop what the refused request left behind.
            self._handshake_buffer.clear()
            self._discarding = True


def _has_token(values: list[str], header: str, token: str) -> bool:
    """Whether a ``1#token`` header's values list ``token`` (lower-case), in any case."""
    # The usual single value ("Upgrade", "websocket") skips the token-list parser.
    if len(values) == 1 and values[0].lower() == token:
        return True
    return any(item.lower() == token for item in parse_token_list(values, header))


def _joined(values: list[str]) -> str | None:
    """A header's values as ``Headers.get()`` shows them, for error messages."""
    return ", ".join(values) if values else None

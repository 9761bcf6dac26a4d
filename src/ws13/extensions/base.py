"""The extension mechanism (RFC 6455 section 9).

A client holds ``ClientExtensionFactory`` objects: each makes an offer for the
``Sec-WebSocket-Extensions`` request header and turns the server's answer into
an ``Extension``. A server holds ``ServerExtensionFactory`` objects: each reads
an offer and either accepts it (answer parameters + ``Extension``) or declines
it by raising NegotiationError, so the server can try the next offer.

A negotiated ``Extension`` sees every frame: ``encode()`` on the way out,
``decode()`` on the way in (in the reverse order of negotiation). It may set
the RSV bits it declares in ``rsv_bits``; the core fails the connection with
1002 on any RSV bit that no negotiated extension claims.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..frames import Frame
from ..headers import ExtensionParameter

__all__ = ["ClientExtensionFactory", "Extension", "ServerExtensionFactory"]


class Extension:
    """A negotiated extension, active on one connection."""

    # Empty, so that a subclass with __slots__ of its own has no __dict__.
    __slots__ = ()

    #: The extension token, e.g. ``"permessage-deflate"``.
    name: str = ""
    #: The RSV bits this extension may set, as in the frame's first byte
    #: (0x40 = RSV1, 0x20 = RSV2, 0x10 = RSV3).
    rsv_bits: int = 0

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Transform a received frame.

        ``max_size`` is how many bytes the message may still grow by; an
        extension that expands data raises PayloadTooBig past it. Raise
        ProtocolError for a frame that breaks the extension's rules.
        """
        raise NotImplementedError

    def encode(self, frame: Frame, *, compress: bool = True) -> Frame:
        """Transform a frame to send. ``compress=False`` asks a compressing
        extension to send this message as it is."""
        raise NotImplementedError

    def free_idle_memory(self) -> None:
        """The connection is idle: free what the next message can rebuild.

        ``Protocol.free_idle_memory()`` calls it. The default frees nothing.
        """


class ClientExtensionFactory:
    """Offers an extension from the client and accepts the server's answer."""

    name: str = ""

    def get_request_params(self) -> list[ExtensionParameter]:
        """The parameters of the offer."""
        raise NotImplementedError

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        """Build the extension from the server's answer; raise NegotiationError
        if the answer is not acceptable (the client then fails the handshake)."""
        raise NotImplementedError


class ServerExtensionFactory:
    """Accepts or declines a client's offer of an extension."""

    name: str = ""

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        """Return the answer's parameters and the extension; raise
        NegotiationError to decline this offer."""
        raise NotImplementedError

"""``basic_auth()``: HTTP Basic Authentication (RFC 7617) for ``serve(process_request=...)``.

The header parsing, the constant-time check and the 401 are ``ws13.auth``'s;
this module awaits ``check_credentials`` when it is a coroutine function.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from ..auth import INVALID, BasicAuth
from ..http11 import Request, Response

if TYPE_CHECKING:
    from .server import ServerConnection

__all__ = ["basic_auth"]

CheckCredentials = Callable[[str, str], "Awaitable[bool] | bool"]


def basic_auth(
    realm: str = "",
    credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
    check_credentials: CheckCredentials | None = None,
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    """Make a ``process_request`` hook that demands HTTP Basic Authentication.

    ``serve(handler, ..., process_request=basic_auth(realm="chat",
    credentials=("alice", "secret")))``. ``check_credentials`` may be a
    function or a coroutine function. On success ``connection.username`` is
    set and the handshake goes on; otherwise the client gets a 401. The
    arguments, the constant-time check, the answers and the errors raised
    are ``ws13.auth.BasicAuth``'s.
    """
    auth = BasicAuth(realm, credentials, check_credentials)

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        found = auth.credentials(connection.respond, request)
        if isinstance(found, Response):
            return found
        valid = auth.check_credentials(*found)
        if inspect.isawaitable(valid):
            valid = await valid
        if not valid:
            return auth.refuse(connection.respond, INVALID)
        connection.username = found[0]
        return None

    return process_request

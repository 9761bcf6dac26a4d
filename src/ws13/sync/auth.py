"""``basic_auth()``: HTTP Basic Authentication (RFC 7617) for the threaded
``serve(process_request=...)``.

The header parsing, the constant-time check and the 401 are ``ws13.auth``'s;
this module calls ``check_credentials`` in the connection's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..auth import INVALID, BasicAuth
from ..http11 import Request, Response

if TYPE_CHECKING:
    from .server import ServerConnection

__all__ = ["basic_auth"]


def basic_auth(
    realm: str = "",
    credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
    check_credentials: Callable[[str, str], bool] | None = None,
) -> Callable[[ServerConnection, Request], Response | None]:
    """Make a ``process_request`` hook for the threaded ``serve()`` that demands
    HTTP Basic Authentication, as ``websockets.sync.server.basic_auth()`` does.

    ``serve(handler, ..., process_request=basic_auth(realm="chat",
    credentials=("alice", "secret")))``, or ``route(..., process_request=...)``
    to guard every route. ``check_credentials(username, password) -> bool``
    runs in the connection's thread, within ``open_timeout``; if it raises,
    the error is logged and the client gets 500. Passed: ``connection.username``
    is set. The arguments, the constant-time check, the 401 answers and the
    errors raised are ``ws13.auth.BasicAuth``'s.
    """
    auth = BasicAuth(realm, credentials, check_credentials)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        found = auth.credentials(connection.respond, request)
        if isinstance(found, Response):
            return found
        if not auth.check_credentials(*found):
            return auth.refuse(connection.respond, INVALID)
        connection.username = found[0]
        return None

    return process_request

"""``basic_auth()``: HTTP Basic Authentication (RFC 7617) for ``serve(process_request=...)``."""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, cast

from ..http11 import Request, Response

if TYPE_CHECKING:
    from .server import ServerConnection

__all__ = ["basic_auth"]

CheckCredentials = Callable[[str, str], "Awaitable[bool] | bool"]


def _is_pair(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], str)
    )


def _www_authenticate(realm: str) -> str:
    """The challenge: ``Basic realm="..."``, quoted (RFC 7235 section 2.2)."""
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}", charset="UTF-8"'


def _credentials(authorization: str) -> tuple[str, str] | None:
    """``(username, password)`` from an Authorization header; ``None`` if not Basic."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    return username, password


def basic_auth(
    realm: str = "",
    credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
    check_credentials: CheckCredentials | None = None,
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    """Make a ``process_request`` hook that demands HTTP Basic Authentication.

    ``serve(handler, ..., process_request=basic_auth(realm="chat",
    credentials=("alice", "secret")))``. Give either ``credentials``, a
    ``(username, password)`` pair or pairs, compared in constant time
    (``hmac.compare_digest``, so the time taken doesn't tell how much of a
    password was right), or ``check_credentials(username, password)``, a
    function or coroutine function returning whether they are valid.

    On success the connection's ``username`` attribute is set and the
    handshake goes on. Otherwise the client gets ``401 Unauthorized`` with
    ``WWW-Authenticate: Basic realm="<realm>", charset="UTF-8"`` and a
    one-line body: "Missing credentials" (no Authorization header),
    "Unsupported credentials" (not Basic, or not base64 of UTF-8
    ``user:password``) or "Invalid credentials". ``realm`` should be ASCII
    (RFC 7235 leaves other characters undefined).

    Raises ValueError unless exactly one of ``credentials`` and
    ``check_credentials`` is given; TypeError for credentials that aren't
    pairs of str.
    """
    if (credentials is None) == (check_credentials is None):
        raise ValueError("provide either credentials or check_credentials")
    if credentials is not None:
        if _is_pair(credentials):
            pairs = [cast(tuple[str, str], credentials)]
        elif isinstance(credentials, Iterable):
            pairs = list(cast(Iterable[tuple[str, str]], credentials))
            if not all(_is_pair(pair) for pair in pairs):
                raise TypeError(f"invalid credentials argument: {credentials}")
        else:
            raise TypeError(f"invalid credentials argument: {credentials}")
        passwords = {
            username.encode(errors="surrogateescape"): password.encode(errors="surrogateescape")
            for username, password in pairs
        }

        def check_credentials(username: str, password: str) -> bool:
            expected = passwords.get(username.encode(errors="surrogateescape"))
            if expected is None:
                return False
            return hmac.compare_digest(expected, password.encode(errors="surrogateescape"))

    check = check_credentials
    assert check is not None
    challenge = _www_authenticate(realm)

    def refuse(connection: ServerConnection, text: str) -> Response:
        response = connection.respond(401, text)
        response.headers["WWW-Authenticate"] = challenge
        return response

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return refuse(connection, "Missing credentials\n")
        pair = _credentials(authorization)
        if pair is None:
            return refuse(connection, "Unsupported credentials\n")
        valid = check(*pair)
        if inspect.isawaitable(valid):
            valid = await valid
        if not valid:
            return refuse(connection, "Invalid credentials\n")
        connection.username = pair[0]
        return None

    return process_request

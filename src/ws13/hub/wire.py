"""The ``ws13.hub.v1`` wire format: JSON objects in text frames.

``parse_request()`` turns a text message from a client into a typed request
or raises ``HubError`` with the error code to reply with; the ``encode_*``
functions build what the server sends. A push is encoded once per message and
node (``encode_message``), then the same frame bytes go to every subscriber.
The format is specified in ``docs/hub-protocol.md``; keep the two in step.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

__all__ = [
    "MAX_CHANNEL_LENGTH",
    "MAX_ID_LENGTH",
    "OPS",
    "SUBPROTOCOL",
    "ErrorCode",
    "HistoryRequest",
    "HubError",
    "PingRequest",
    "PresenceRequest",
    "PublishRequest",
    "Request",
    "RequestId",
    "SubscribeRequest",
    "UnsubscribeRequest",
    "check_channel",
    "dumps",
    "encode_error",
    "encode_event",
    "encode_message",
    "encode_reply",
    "parse_request",
]

#: The subprotocol name a client offers (``Sec-WebSocket-Protocol``).
SUBPROTOCOL = "ws13.hub.v1"
#: The longest channel name, in characters.
MAX_CHANNEL_LENGTH = 200
#: The longest string request id, in characters.
MAX_ID_LENGTH = 64
#: The request operations a client may send.
OPS = ("subscribe", "unsubscribe", "publish", "history", "presence", "ping")

RequestId = int | str | None


class ErrorCode(enum.IntEnum):
    """Error codes in ``{"op": "error"}`` replies; modelled on HTTP statuses."""

    #: Not JSON, not an object, a missing or invalid field, a binary frame.
    BAD_REQUEST = 400
    #: The principal may not subscribe to or publish on this channel.
    FORBIDDEN = 403
    #: ``unsubscribe`` of a channel the connection isn't subscribed to.
    NOT_SUBSCRIBED = 404
    #: ``op`` is not one of ``OPS``.
    UNKNOWN_OP = 405
    #: ``subscribe`` of a channel the connection is already subscribed to.
    ALREADY_SUBSCRIBED = 409
    #: The request or its ``data`` is larger than the hub accepts.
    TOO_LARGE = 413
    #: Too many subscriptions on this connection (``subscribe``), or publishes
    #: faster than the connection's rate limit (``publish``, with ``retry_after``
    #: and ``rate``).
    TOO_MANY = 429
    #: A bug in the hub; details are in the server log, not in the reply.
    INTERNAL = 500
    #: The backplane (e.g. Redis) is unreachable; retry later.
    UNAVAILABLE = 503


class HubError(Exception):
    """A request the hub refuses, with the code and message of the error reply."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        request_id: RequestId = None,
        retry_after: float | None = None,
        rate: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        #: Seconds to wait before retrying (a rate-limited publish), if known.
        self.retry_after = retry_after
        #: The connection's publish rate limit in publishes per second (a
        #: rate-limited publish, from a hub that says it), so a client can pace itself.
        self.rate = rate


@dataclasses.dataclass(frozen=True, slots=True)
class SubscribeRequest:
    id: RequestId
    channel: str
    #: Recover from here: the last offset the client has (pushes follow it).
    since: int | None = None
    #: The epoch ``since`` belongs to; ``None``: the channel's current epoch.
    epoch: str | None = None
    #: Send the last ``history`` retained messages first (ignored with ``since``).
    history: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class UnsubscribeRequest:
    id: RequestId
    channel: str


@dataclasses.dataclass(frozen=True, slots=True)
class PublishRequest:
    id: RequestId
    channel: str
    #: The ``data`` value as compact JSON text, ready to be stored and pushed.
    data: str


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryRequest:
    id: RequestId
    channel: str
    limit: int | None = None
    since: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceRequest:
    id: RequestId
    channel: str


@dataclasses.dataclass(frozen=True, slots=True)
class PingRequest:
    id: RequestId


Request = (
    SubscribeRequest
    | UnsubscribeRequest
    | PublishRequest
    | HistoryRequest
    | PresenceRequest
    | PingRequest
)


def check_channel(channel: object) -> str:
    """Return ``channel`` if it is a valid channel name; raise ValueError otherwise.

    A name is 1 to ``MAX_CHANNEL_LENGTH`` printable characters without spaces.
    """
    if not isinstance(channel, str):
        raise ValueError("channel must be a string")
    if not 0 < len(channel) <= MAX_CHANNEL_LENGTH:
        raise ValueError(f"channel must be 1 to {MAX_CHANNEL_LENGTH} characters")
    if not channel.isprintable() or any(c.isspace() for c in channel):
        raise ValueError("channel must be printable characters without spaces")
    return channel


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    # NaN and Infinity are Python extensions to JSON: refuse them, so that
    # whatever the hub stores, every client's JSON parser can read.
    return json.loads(text, parse_constant=_reject_constant)


def _int_field(obj: dict[str, Any], name: str, rid: RequestId, minimum: int) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not int or value < minimum:
        raise HubError(
            ErrorCode.BAD_REQUEST, f"{name} must be an integer >= {minimum}", request_id=rid
        )
    return value


def _channel_field(obj: dict[str, Any], rid: RequestId) -> str:
    if "channel" not in obj:
        raise HubError(ErrorCode.BAD_REQUEST, "missing field: channel", request_id=rid)
    try:
        return check_channel(obj["channel"])
    except ValueError as exc:
        raise HubError(ErrorCode.BAD_REQUEST, str(exc), request_id=rid) from None


def parse_request(text: str, *, max_data_size: int) -> Request:
    """Parse one client message; raise HubError with the reply's code if it's invalid.

    ``max_data_size`` bounds the ``data`` of a publish, measured as compact
    JSON in UTF-8 bytes; a larger one is ``TOO_LARGE``.
    """
    try:
        obj = _loads(text)
    except (ValueError, RecursionError):
        raise HubError(ErrorCode.BAD_REQUEST, "invalid JSON") from None
    if not isinstance(obj, dict):
        raise HubError(ErrorCode.BAD_REQUEST, "a request must be a JSON object")
    rid = obj.get("id")
    if rid is not None and not (
        (type(rid) is int and abs(rid) < 2**53)
        or (isinstance(rid, str) and len(rid) <= MAX_ID_LENGTH)
    ):
        raise HubError(
            ErrorCode.BAD_REQUEST,
            f"id must be an integer (|id| < 2**53) or a string of at most {MAX_ID_LENGTH} "
            "characters",
        )
    op = obj.get("op")
    if op is None:
        raise HubError(ErrorCode.BAD_REQUEST, "missing field: op", request_id=rid)
    if op not in OPS:
        shown = op if isinstance(op, str) and len(op) <= 32 else "?"
        raise HubError(ErrorCode.UNKNOWN_OP, f"unknown op: {shown!r}", request_id=rid)
    if op == "ping":
        return PingRequest(rid)
    channel = _channel_field(obj, rid)
    if op == "subscribe":
        epoch = obj.get("epoch")
        if epoch is not None and (not isinstance(epoch, str) or len(epoch) > MAX_ID_LENGTH):
            raise HubError(ErrorCode.BAD_REQUEST, "epoch must be a short string", request_id=rid)
        since = _int_field(obj, "since", rid, 0)
        if epoch is not None and since is None:
            raise HubError(ErrorCode.BAD_REQUEST, "epoch needs since", request_id=rid)
        history = _int_field(obj, "history", rid, 0)
        return SubscribeRequest(rid, channel, since, epoch, history)
    if op == "unsubscribe":
        return UnsubscribeRequest(rid, channel)
    if op == "publish":
        if "data" not in obj:
            raise HubError(ErrorCode.BAD_REQUEST, "missing field: data", request_id=rid)
        try:
            data = dumps(obj["data"])
        except ValueError:  # 1e999 parses as infinity, which JSON can't carry
            raise HubError(
                ErrorCode.BAD_REQUEST, "data must be finite JSON", request_id=rid
            ) from None
        if len(data) > max_data_size or (
            not data.isascii() and len(data.encode("utf-8")) > max_data_size
        ):
            raise HubError(
                ErrorCode.TOO_LARGE,
                f"data is larger than {max_data_size} bytes",
                request_id=rid,
            )
        return PublishRequest(rid, channel, data)
    if op == "history":
        limit = _int_field(obj, "limit", rid, 0)
        since = _int_field(obj, "since", rid, 0)
        return HistoryRequest(rid, channel, limit, since)
    return PresenceRequest(rid, channel)


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is; refuses NaN and infinities."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_reply(request_id: RequestId, result: dict[str, Any]) -> str:
    """``{"op":"reply","id":…,"result":{…}}``."""
    return dumps({"op": "reply", "id": request_id, "result": result})


def encode_error(
    request_id: RequestId,
    code: int,
    message: str,
    retry_after: float | None = None,
    rate: float | None = None,
) -> str:
    """``{"op":"error","id":…,"code":…,"message":…}``, plus ``"retry_after"``
    (milliseconds, rounded up) when given, in seconds, and ``"rate"``
    (publishes per second, as given) when given."""
    error: dict[str, Any] = {"op": "error", "id": request_id, "code": int(code), "message": message}
    if retry_after is not None:
        error["retry_after"] = math.ceil(retry_after * 1000)
    if rate is not None:
        error["rate"] = rate
    return dumps(error)


def encode_message(channel: str, epoch: str, offset: int, time_ms: int, data: str) -> str:
    """A ``message`` push. ``data`` is JSON text already; it isn't parsed again."""
    return (
        f'{{"op":"message","channel":{dumps(channel)},"epoch":{dumps(epoch)},'
        f'"offset":{offset},"time":{time_ms},"data":{data}}}'
    )


def encode_event(kind: str, channel: str, member: str) -> str:
    """A ``join`` or ``leave`` push; ``member`` is the member's JSON text."""
    return f'{{"op":{dumps(kind)},"channel":{dumps(channel)},"member":{member}}}'

"""``broadcast()``: one message to many connections, encoded once where the framing allows.

A server frame isn't masked, so one message is the same bytes on every
server connection that frames it the same way: ``broadcast()`` sorts the
connections into groups that can share bytes, encodes the message once per
group with the core's ``broadcast_frame()``, and writes those bytes to each
connection of the group without awaiting:

* uncompressed (no permessage-deflate, or ``compress=False``): one frame for
  all of them, deflate or not (RFC 7692 section 6 allows it);
* permessage-deflate where the server's compressor keeps no context (the
  client accepted ``server_no_context_takeover``): one compressed frame per
  set of parameters (window bits, compression settings, threshold);
* the rest encode it themselves, through ``send_nowait()``: client
  connections (each frame has its own mask), permessage-deflate with context
  takeover (each compressor has its own history: the default), other
  extensions.

It never waits: a connection whose write buffer is over the limit is skipped
for this message rather than buffering without bound.
"""

from __future__ import annotations

import traceback
from collections.abc import Hashable, Iterable

from ..extensions.permessage_deflate import PerMessageDeflate
from ..protocol import OPEN, Side
from ..writer import broadcast_frame
from .connection import Connection
from .sending import Data

__all__ = ["BroadcastSkipped", "broadcast"]


class BroadcastSkipped(Exception):
    """``broadcast()`` skipped an open connection: ``connection`` and ``reason``.

    What ``broadcast(..., raise_exceptions=True)`` groups in its
    ExceptionGroup. ``__cause__`` is the error of a failed write, if that
    was the reason.
    """

    def __init__(self, connection: Connection, reason: str) -> None:
        super().__init__(reason)
        self.connection = connection
        self.reason = reason


#: The group of the connections that take the uncompressed frame.
_PLAIN = "plain"


def _group(connection: Connection, compress: bool) -> Hashable | None:
    """Which connections can share this one's bytes; ``None``: it encodes its own."""
    protocol = connection.protocol
    if protocol.side is not Side.SERVER:
        return None
    extensions = protocol.extensions
    if not extensions or not compress:
        return _PLAIN
    if len(extensions) == 1:
        deflate = extensions[0]
        if isinstance(deflate, PerMessageDeflate) and deflate.local_no_context_takeover:
            settings = tuple(sorted(deflate.compress_settings.items()))
            return (deflate.local_max_window_bits, settings, deflate.threshold)
    return None


def _busy(connection: Connection, write_limit: int | None) -> str | None:
    """Why an open connection can't take the message now, if it can't."""
    if connection.protocol.sending_fragments or connection._fragmenting:
        return "sending a fragmented message"
    if write_limit is None:
        if not connection.writable:
            return "write buffer above write_limit"
    else:
        transport = connection.transport
        if transport is not None and transport.get_write_buffer_size() > write_limit:
            return f"write buffer above {write_limit} bytes"
    return None


def broadcast(
    connections: Iterable[Connection],
    message: Data,
    *,
    text: bool | None = None,
    compress: bool = True,
    write_limit: int | None = None,
    raise_exceptions: bool = False,
) -> list[Connection]:
    """Send ``message`` to every open connection in ``connections``, without waiting.

    ``broadcast(server.connections, message)`` sends to every client of a
    server. ``str`` goes as text and bytes-like as binary; ``text=True``
    sends bytes-like as text and ``text=False`` a str as binary, as in
    ``send()``. The message is encoded once per group of connections that
    can share the bytes (see the module docstring); ``compress=False``
    sends it uncompressed, the same frame for every server connection.

    It never awaits, and skips (for this message only):

    * connections that aren't OPEN (handshake, closing, closed), silently;
    * connections whose write buffer is over the limit: with
      ``write_limit=None`` (the default) while their own ``write_limit``
      has paused writing (``not connection.writable``), else while more
      than ``write_limit`` bytes wait in it;
    * connections sending a fragmented message;
    * connections whose write failed.

    Each open connection skipped is logged as a warning on its logger
    ("skipped broadcast: <reason>"), or, with ``raise_exceptions=True``,
    becomes a ``BroadcastSkipped`` (with ``.connection`` and ``.reason``)
    in the ``ExceptionGroup("skipped broadcast", ...)`` raised once every
    other connection got the message.

    Returns the connections skipped, open or not, in the order given: the
    message did not go to them. A caller that must not lose messages queues
    them for those, or closes them.

    Raises TypeError for anything but str and bytes-like.
    """
    if not isinstance(message, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
    if not isinstance(message, (str, bytes)):
        message = bytes(message)  # once, not per connection
    frames: dict[Hashable, list[bytes]] = {}
    skipped: list[Connection] = []
    errors: list[BroadcastSkipped] = []
    for connection in connections:
        if connection.protocol.state is not OPEN:
            skipped.append(connection)
            continue
        reason = _busy(connection, write_limit)
        cause: Exception | None = None
        if reason is None:
            try:
                group = _group(connection, compress)
                if group is None:
                    connection.send_nowait(message, text=text, compress=compress)
                else:
                    buffers = frames.get(group)
                    if buffers is None:
                        deflate = None if group is _PLAIN else connection.protocol.extensions[0]
                        assert deflate is None or isinstance(deflate, PerMessageDeflate)
                        buffers = frames[group] = broadcast_frame(
                            message, text=text, deflate=deflate
                        )
                    connection.send_frames_nowait(buffers)
                continue
            except Exception as exc:
                reason = "failed to write message: " + (
                    traceback.format_exception_only(exc)[0].strip()
                )
                cause = exc
        skipped.append(connection)
        if raise_exceptions:
            error = BroadcastSkipped(connection, reason)
            error.__cause__ = cause
            errors.append(error)
        else:
            connection.logger.warning("skipped broadcast: %s", reason)
    if errors:
        raise ExceptionGroup("skipped broadcast", errors)
    return skipped

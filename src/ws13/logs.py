"""Logs a machine can read: ``JSONFormatter`` writes one JSON object per record.

``ws13 serve --log-format json`` uses it; so can any application::

    handler = logging.StreamHandler()
    handler.setFormatter(ws13.logs.JSONFormatter())
    logging.getLogger("ws13").addHandler(handler)

The loggers ws13 writes to, and what each logs at which level, are listed in
``docs/logging.md``.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

__all__ = ["JSONFormatter", "format_address"]

#: The attributes every ``LogRecord`` has: anything else came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def format_address(address: Any) -> str | None:
    """``host:port`` (``[host]:port`` for IPv6) for a socket address; a Unix path as is."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if address is None or address == "":
        return None
    return str(address)


class JSONFormatter(logging.Formatter):
    """Format each record as one line of JSON.

    Always: ``time`` (ISO 8601, UTC, milliseconds: ``2026-12-07T05:07:33.123Z``),
    ``level`` (``debug``, ``info``, ``warning``, ``error``, ``critical``),
    ``logger`` (its name) and ``message`` (the formatted message).

    When the record carries a connection (``extra={"websocket": connection}``,
    the name websockets uses too): ``connection`` (its ``id``), ``remote``
    (the peer's address, while the socket is open) and, once it is closed,
    ``close_code``. Any other ``extra`` key is copied as it is (``event``,
    ``path``, ``duration``...; a value JSON can't hold becomes its ``str()``)
    and overrides the derived fields of the same name. ``exception`` and
    ``stack`` hold the formatted traceback and stack, when there is one.
    Non-ASCII text is written as is (UTF-8), and a message's newlines are
    escaped, so a record is always one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = vars(record)
        connection = fields.get("websocket")
        if connection is not None:
            entry.update(_connection_fields(connection))
        for key, value in fields.items():
            if key not in _STANDARD and key != "websocket" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _connection_fields(connection: Any) -> dict[str, Any]:
    """``connection``, ``remote`` and ``close_code`` of a ws13 (or websockets) connection."""
    fields: dict[str, Any] = {}
    ident = getattr(connection, "id", None)
    if ident is not None:
        fields["connection"] = str(ident)
    remote = format_address(getattr(connection, "remote_address", None))
    if remote is not None:
        fields["remote"] = remote
    protocol = getattr(connection, "protocol", None)
    state = getattr(protocol, "state", None)
    if state is not None and state.name == "CLOSED":
        fields["close_code"] = getattr(connection, "close_code", None)
    return fields

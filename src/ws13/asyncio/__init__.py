"""The asyncio client and server.

``connect()`` opens a client connection; ``serve()`` runs a server. Both give
``Connection`` objects with ``recv()``, ``send()``, ``ping()`` and ``close()``.
"""

from __future__ import annotations

from .auth import basic_auth
from .broadcast import broadcast
from .client import ClientConnection, connect, unix_connect
from .connection import Connection
from .server import Server, ServerConnection, serve, unix_serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "basic_auth",
    "broadcast",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
]

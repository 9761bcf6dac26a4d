"""The threaded client and server, for code without an event loop.

``ws13.sync.client.connect()`` opens a client connection; ``ws13.sync.server.serve()``
runs a server with a thread per connection. Both give ``Connection`` objects
with ``recv()``, ``send()``, ``ping()`` and ``close()``, safe to use from
several threads. The names and signatures are those of ``websockets.sync``.
"""

from __future__ import annotations

from .client import ClientConnection, connect, reconnect, unix_connect
from .connection import Connection
from .server import Server, ServerConnection, basic_auth, serve, unix_serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "basic_auth",
    "connect",
    "reconnect",
    "serve",
    "unix_connect",
    "unix_serve",
]

"""What the interop tests share on ws13's server side: a recording echo."""

from __future__ import annotations

import asyncio
from typing import Any

from ws13.asyncio.server import ServerConnection

__all__ = ["RecordingEcho", "stop_server"]


class RecordingEcho:
    """A test-case mixin whose ``handler`` echoes and records what arrives.

    ``connections`` are the server-side connections in the order they opened;
    ``received`` is (type, UTF-8 length) of each message. The text
    "close 4000" makes the server close with 4000 "bye" instead of echoing.
    Call ``start_recording()`` in the test's set-up.
    """

    connections: list[ServerConnection]
    received: list[tuple[str, int]]

    def start_recording(self) -> None:
        self.connections = []
        self.received = []

    async def handler(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        async for message in connection:
            if isinstance(message, str):
                self.received.append(("str", len(message.encode())))
            else:
                self.received.append(("bytes", len(message)))
            if message == "close 4000":
                await connection.close(4000, "bye")
                return
            await connection.send(message)


async def stop_server(server: Any, seconds: float) -> None:
    """Close a server (ws13's or websockets') and wait, at most ``seconds``, until it is closed."""
    server.close()
    await asyncio.wait_for(server.wait_closed(), seconds)

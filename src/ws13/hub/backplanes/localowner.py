"""The owner side of the local backplane: one in-memory history served on a Unix socket.

``await serve_owner(path)`` starts serving an ``InMemoryBackplane`` to
``LocalBackplane`` clients (``ws13.hub.backplanes.local``, whose docstring
describes the wire format) and returns the ``Owner``; ``run_owner(path)``
does that until SIGTERM/SIGINT (what ``ws13 serve --workers N`` runs in its
backplane process). Usage from a library::

    owner = await serve_owner("/run/myapp/hub.sock")      # one process
    hub = Hub(open_backplane("local:///run/myapp/hub.sock"))  # each process

A published message is encoded once and written once to each connection
subscribed to its channel. A client that stops reading while more than
``MAX_BUFFER`` bytes wait for it is disconnected (it reconnects and catches
up from the history). When a client disconnects (its process died), the
presence entries it added are removed and ``leave`` events sent for them.
The socket file is created with the process's umask: put it in a private
directory (``ws13 serve`` uses a fresh ``mkdtemp()`` one, mode 0700).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the owner serves a socket
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from ..wire import dumps
from . import Entry, Member
from .local import encode, read_frame
from .memory import InMemoryBackplane

__all__ = ["MAX_BUFFER", "Owner", "run_owner", "serve_owner"]

logger = logging.getLogger("ws13.hub.local")

#: Bytes waiting to be written to one client past which it is disconnected.
MAX_BUFFER = 2**26


class _Client:
    __slots__ = ("channels", "members", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.channels: set[str] = set()
        #: (channel, client id) → the member this connection made present.
        self.members: dict[tuple[str, str], Member] = {}

    def send(self, frame: bytes) -> None:
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_BUFFER:
            logger.warning("local backplane: a client stopped reading; disconnecting it")
            transport.abort()
            return
        transport.write(frame)


class Owner:
    """Serves one ``InMemoryBackplane`` to the ``LocalBackplane`` clients on a Unix socket."""

    def __init__(self, backplane: InMemoryBackplane | None = None) -> None:
        self.backplane = backplane if backplane is not None else InMemoryBackplane()
        self.backplane.attach(self)
        self.clients: set[_Client] = set()
        self.subscribers: dict[str, set[_Client]] = {}
        self.server: asyncio.Server | None = None

    async def start(self, path: str) -> None:
        """Listen on ``path`` (a stale socket file there is replaced)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.server = await asyncio.start_unix_server(self._serve, path)

    def close(self) -> None:
        """Stop listening and disconnect every client."""
        if self.server is not None:
            self.server.close()
        for client in list(self.clients):
            client.writer.transport.abort()

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()

    # -- BackplaneListener: fan-out to the subscribed connections -----------

    def on_message(self, entry: Entry) -> None:
        clients = self.subscribers.get(entry.channel)
        if clients:
            frame = encode(["m", entry.channel, entry.epoch, entry.offset, entry.time, entry.data])
            for client in clients:
                client.send(frame)

    def on_event(self, channel: str, kind: str, member: str) -> None:
        clients = self.subscribers.get(channel)
        if clients:
            frame = encode(["e", channel, kind, member])
            for client in clients:
                client.send(frame)

    def on_resync(self) -> None:
        pass  # an in-memory backplane never misses anything

    # -- a client connection ----------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        self.clients.add(client)
        try:
            while True:
                message = await read_frame(reader)
                op, request_id, *args = message
                try:
                    result = await self._handle(client, op, args)
                except (TypeError, ValueError, KeyError) as exc:
                    client.send(encode(["x", request_id, f"bad request {op!r}: {exc}"]))
                    continue
                if request_id:
                    client.send(encode(["r", request_id, result]))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client's process ended or reconnects
        except ValueError as exc:
            logger.warning("local backplane: dropped a client sending garbage: %s", exc)
        finally:
            await self._forget(client)
            writer.close()

    async def _handle(self, client: _Client, op: str, args: list[Any]) -> Any:
        backplane = self.backplane
        if op == "pub":
            channel, data, size, ttl = args
            entry = await backplane.publish(channel, data, history_size=size, ttl=ttl)
            return [entry.epoch, entry.offset, entry.time]
        if op == "his":
            channel, since, limit, ttl = args
            page = await backplane.history(channel, since=since, limit=limit, ttl=ttl)
            return [page.epoch, page.top, [[e.offset, e.time, e.data] for e in page.entries]]
        if op == "sub":
            (channel,) = args
            await self._subscribe(client, channel)
            return None
        if op == "uns":
            (channel,) = args
            self._unsubscribe(client, channel)
            return None
        if op == "evt":
            channel, kind, member = args
            self.on_event(channel, kind, dumps(member))
            return None
        if op == "padd":
            channel, client_id, user, info, ttl = args
            member = Member(client_id, user, info)
            client.members[channel, client_id] = member
            await backplane.presence_add(channel, member, ttl)
            return None
        if op == "prem":
            channel, client_id = args
            client.members.pop((channel, client_id), None)
            await backplane.presence_remove(channel, client_id)
            return None
        if op == "pres":
            (channel,) = args
            members = await backplane.presence(channel)
            return [[m.client, m.user, m.info] for m in members]
        raise ValueError("unknown operation")

    async def _subscribe(self, client: _Client, channel: str) -> None:
        clients = self.subscribers.get(channel)
        if clients is None:
            clients = self.subscribers[channel] = set()
            await self.backplane.subscribe(channel)
        clients.add(client)
        client.channels.add(channel)

    def _unsubscribe(self, client: _Client, channel: str) -> None:
        client.channels.discard(channel)
        clients = self.subscribers.get(channel)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self.subscribers[channel]
                self.backplane.unsubscribe(channel)

    async def _forget(self, client: _Client) -> None:
        self.clients.discard(client)
        for channel in list(client.channels):
            self._unsubscribe(client, channel)
        for (channel, client_id), member in client.members.items():
            await self.backplane.presence_remove(channel, client_id)
            self.on_event(channel, "leave", dumps(member.to_json()))


async def serve_owner(path: str, backplane: InMemoryBackplane | None = None) -> Owner:
    """Start serving ``backplane`` (a new ``InMemoryBackplane`` by default) on ``path``."""
    owner = Owner(backplane)
    await owner.start(path)
    return owner


async def run_owner(
    path: str,
    *,
    ready: Callable[[], None] | None = None,
    lifeline: int | None = None,
) -> int:
    """Serve on ``path`` until SIGTERM or SIGINT (or ``lifeline`` reads end of file); 0.

    ``ready()`` is called once it listens.
    """
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_stop)
    if lifeline is not None:
        loop.add_reader(lifeline, on_stop)
    owner = await serve_owner(path)
    if ready is not None:
        ready()
    await stop
    owner.close()
    await owner.wait_closed()
    return 0

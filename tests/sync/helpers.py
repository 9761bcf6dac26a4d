"""Peers and helpers for the threaded API's tests, over real loopback sockets.

``SyncTestCase`` starts ws13 sync servers (``serve_forever()`` in a thread)
and clients and cleans them all up. ``RawServer`` speaks just enough RFC 6455
by hand to play a peer that never answers Pings, never answers the Close
frame, or stops reading, which ws13's own peers never do.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
import unittest
from collections.abc import Callable
from typing import Any

import websockets.exceptions
import websockets.sync.client

from tests.asyncio.helpers import accept_key, tls_contexts
from tests.utils import MS
from ws13.sync.client import ClientConnection, connect
from ws13.sync.server import Server, ServerConnection, serve

__all__ = [
    "TIMEOUT",
    "RawServer",
    "SyncTestCase",
    "echo",
    "tls_contexts",
    "wait_until",
    "websockets_first_message",
]

#: A generous bound for anything that should happen "soon".
TIMEOUT = 5000 * MS


def echo(connection: ServerConnection) -> None:
    """A handler that sends every message back."""
    for message in connection:
        connection.send(message)


def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``TIMEOUT``."""
    done = threading.Event()
    for _ in range(int(TIMEOUT / (5 * MS))):
        if predicate():
            return
        done.wait(5 * MS)
    raise AssertionError("condition not met in time")


def start_thread(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


class SyncTestCase(unittest.TestCase):
    """Start ws13 sync servers and clients on loopback; clean them all up after the test.

    ``self.handlers`` receives each server-side connection as its handler
    starts, so a test can reach the other end of its client.
    """

    def setUp(self) -> None:
        self.handlers: queue.Queue[ServerConnection] = queue.Queue()

    def start_server(
        self,
        handler: Callable[[ServerConnection], None] = echo,
        host: str = "127.0.0.1",
        **kwargs: Any,
    ) -> Server:
        def recording_handler(connection: ServerConnection) -> None:
            self.handlers.put(connection)
            handler(connection)

        server = serve(recording_handler, host, 0, **kwargs)
        thread = start_thread(server.serve_forever)
        self.addCleanup(self._stop_server, server, thread)
        return server

    def _stop_server(self, server: Server, thread: threading.Thread) -> None:
        stopper = start_thread(server.shutdown)
        stopper.join(TIMEOUT)
        thread.join(TIMEOUT)
        assert not stopper.is_alive(), "server did not shut down"
        assert not thread.is_alive(), "serve_forever() did not return"

    def connect(self, uri: str, **kwargs: Any) -> ClientConnection:
        """``connect(uri)``, closed (and its threads ended) after the test."""
        kwargs.setdefault("open_timeout", TIMEOUT)
        client = connect(uri, **kwargs)
        self.addCleanup(self._close, client)
        return client

    @staticmethod
    def _close(connection: ClientConnection) -> None:
        stopper = start_thread(connection.close)
        stopper.join(TIMEOUT)
        assert not stopper.is_alive(), "client did not close"

    def next_handler(self) -> ServerConnection:
        return self.handlers.get(timeout=TIMEOUT)


class RawServer:
    """A TCP server on 127.0.0.1 that completes the opening handshake by hand.

    After the handshake it reads and counts bytes, and never answers
    anything: no Pong, no Close, no TCP close. Clear ``reading`` to stop
    reading (TCP then pushes back on the client).
    """

    def __init__(self, *, rcvbuf: int | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.rcvbuf = rcvbuf
        self.reading = threading.Event()
        self.reading.set()
        self.bytes_received = 0
        self.disconnected = threading.Event()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = start_thread(self._run)

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"

    def _run(self) -> None:
        self.listener.settimeout(TIMEOUT)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self._conns.append(conn)
        if self.rcvbuf is not None:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        conn.settimeout(50 * MS)
        request = b""
        try:
            while b"\r\n\r\n" not in request and not self._stop.is_set():
                try:
                    request += conn.recv(4096)
                except TimeoutError:
                    continue
            match = re.search(rb"(?im)^sec-websocket-key:[ \t]*(\S+)", request)
            assert match is not None, request
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(match[1].decode()).encode() + b"\r\n\r\n"
            )
            while not self._stop.is_set():
                if not self.reading.wait(50 * MS):
                    continue
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                self.bytes_received += len(data)
        except OSError:
            pass
        finally:
            self.disconnected.set()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(TIMEOUT)
        for conn in self._conns:
            conn.close()


def websockets_first_message(uri: str) -> str | bytes | int:
    """The first message the websockets package's sync client receives, or
    the HTTP status it is refused with."""
    try:
        with websockets.sync.client.connect(uri, open_timeout=TIMEOUT) as client:
            return client.recv(timeout=TIMEOUT)
    except websockets.exceptions.InvalidStatus as refused:
        return refused.response.status_code

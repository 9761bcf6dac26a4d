"""The threaded API (``ws13.sync``) against other implementations, both ways.

The ``websockets`` package's threaded client and server (``websockets.sync``)
talk to ours, and Node's ``ws`` client (``node/client.mjs``) and server
(``node/server.mjs``) too: text, binary, large and fragmented messages,
permessage-deflate, pings, and the close codes and reasons each side sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import unittest
from typing import Any

import pytest
from websockets.sync.client import connect as their_connect
from websockets.sync.server import ServerConnection as TheirServerConnection
from websockets.sync.server import serve as their_serve

from tests.sync.helpers import TIMEOUT, start_thread, wait_until
from ws13.exceptions import ConnectionClosedError
from ws13.sync.client import connect
from ws13.sync.server import Server, ServerConnection, serve

from .test_node_ws import MAX_SIZE, NODE_DIR, SIZES, install_ws, messages

BIG = 2**20


class RecordingEcho:
    """A sync handler that echoes and records; "close 4000" closes with 4000 "bye"."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.received: list[tuple[str, int]] = []

    def __call__(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        for message in connection:
            if isinstance(message, str):
                self.received.append(("str", len(message.encode())))
            else:
                self.received.append(("bytes", len(message)))
            if message == "close 4000":
                connection.close(4000, "bye")
                return
            connection.send(message)


def start_our_server(test: unittest.TestCase, handler: Any) -> Server:
    server = serve(handler, "127.0.0.1", 0, max_size=MAX_SIZE)
    thread = start_thread(server.serve_forever)

    def stop() -> None:
        server.shutdown()
        thread.join(TIMEOUT)

    test.addCleanup(stop)
    return server


def their_echo(connection: TheirServerConnection) -> None:
    for message in connection:
        if message == "close 4002":
            connection.close(4002, "bye from websockets")
            return
        connection.send(message)


class TheirSyncClientOurServerTests(unittest.TestCase):
    """websockets.sync.client.connect → ws13.sync.serve."""

    def setUp(self) -> None:
        self.echo = RecordingEcho()
        server = start_our_server(self, self.echo)
        self.uri = f"ws://127.0.0.1:{server.port}/"

    def test_messages(self) -> None:
        with their_connect(self.uri, max_size=MAX_SIZE) as ws:
            for message in ["héllo ☃", b"\x00\xff", "x" * BIG, os.urandom(BIG), ""]:
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
            ws.send(["frag", "ments"])
            assert ws.recv(timeout=TIMEOUT) == "fragments"
            assert ws.ping().wait(TIMEOUT)
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]

    def test_close_codes_both_ways(self) -> None:
        with their_connect(self.uri) as ws:
            ws.send("close 4000")
            with pytest.raises(Exception) as caught:  # noqa: PT011 - checked below
                ws.recv(timeout=TIMEOUT)
            assert type(caught.value).__name__ == "ConnectionClosedError"
        assert (ws.close_code, ws.close_reason) == (4000, "bye")
        with their_connect(self.uri) as ws:
            ws.close(4001, "see you ☃")
        # The handler's thread records its connection when it starts.
        wait_until(lambda: len(self.echo.connections) == 2)
        connection = self.echo.connections[-1]
        assert connection.wait_closed(TIMEOUT)
        assert (connection.close_code, connection.close_reason) == (4001, "see you ☃")


class OurClientTheirSyncServerTests(unittest.TestCase):
    """ws13.sync.connect → websockets.sync.server.serve."""

    def setUp(self) -> None:
        server = their_serve(their_echo, "127.0.0.1", 0, max_size=MAX_SIZE)
        thread = start_thread(server.serve_forever)

        def stop() -> None:
            server.shutdown()
            thread.join(TIMEOUT)

        self.addCleanup(stop)
        self.uri = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"

    def test_messages(self) -> None:
        with connect(self.uri, max_size=MAX_SIZE) as ws:
            assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
            for message in ["héllo ☃", b"\x00\xff", "x" * BIG, os.urandom(BIG), b""]:
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
            ws.send(iter([b"frag", b"ments"]))
            assert ws.recv(timeout=TIMEOUT) == b"fragments"
            assert ws.ping("p").wait(TIMEOUT)
        assert ws.close_code == 1000

    def test_many_threads_sending(self) -> None:
        with connect(self.uri) as ws:
            sent = [f"{n}-{i}" * 100 for n in range(4) for i in range(25)]

            def sender(n: int) -> None:
                for i in range(25):
                    ws.send(f"{n}-{i}" * 100)

            threads = [start_thread(sender, n) for n in range(4)]
            received = [ws.recv(timeout=TIMEOUT) for _ in sent]
            for thread in threads:
                thread.join(TIMEOUT)
            assert sorted(received) == sorted(sent)

    def test_our_client_sees_close_code_from_their_server(self) -> None:
        with connect(self.uri) as ws:
            ws.send("close 4002")
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (4002, "bye from websockets")


class TheirNodeClientOurServerTests(unittest.TestCase):
    """node client.mjs (ws.WebSocket) → ws13.sync.serve."""

    @classmethod
    def setUpClass(cls) -> None:
        install_ws()

    def setUp(self) -> None:
        self.echo = RecordingEcho()
        server = start_our_server(self, self.echo)
        self.url = f"ws://127.0.0.1:{server.port}/"

    def run_client(self, mode: str) -> dict[str, Any]:
        result = subprocess.run(
            ["node", os.path.join(NODE_DIR, "client.mjs"), self.url, mode, "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        output: dict[str, Any] = json.loads(result.stdout)
        return output

    def test_echo_with_permessage_deflate(self) -> None:
        result = self.run_client("echo")
        assert result["extensions"] == "permessage-deflate"
        assert len(result["results"]) == 3 * len(SIZES)
        assert all(echo["equal"] for echo in result["results"]), result["results"]
        assert result["closed"] == {"code": 1000, "reason": ""}
        connection = self.echo.connections[0]
        assert connection.wait_closed(TIMEOUT)
        assert (connection.close_code, connection.close_reason) == (1000, "done")

    def test_close_codes_both_ways(self) -> None:
        assert self.run_client("close-from-server")["closed"] == {"code": 4000, "reason": "bye"}
        result = self.run_client("close-from-client")
        assert result["results"] == ["hello"]
        wait_until(lambda: len(self.echo.connections) == 2)
        connection = self.echo.connections[-1]
        assert connection.wait_closed(TIMEOUT)
        assert (connection.close_code, connection.close_reason) == (4001, "see you ☃")


class OurClientTheirNodeServerTests(unittest.TestCase):
    """ws13.sync.connect → node server.mjs (ws.WebSocketServer)."""

    @classmethod
    def setUpClass(cls) -> None:
        install_ws()

    def setUp(self) -> None:
        self.process = subprocess.Popen(
            ["node", os.path.join(NODE_DIR, "server.mjs"), "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        self.addCleanup(self.stop)
        listening = self.event()
        assert listening["event"] == "listening"
        self.url = f"ws://127.0.0.1:{listening['port']}/"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(TIMEOUT)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def event(self) -> dict[str, Any]:
        """The next JSON line the Node server printed (bounded by a timer that kills it)."""
        assert self.process.stdout is not None
        timer = threading.Timer(TIMEOUT, self.process.kill)
        timer.start()
        try:
            line = self.process.stdout.readline()
        finally:
            timer.cancel()
        assert line, "the Node server exited"
        event: dict[str, Any] = json.loads(line)
        return event

    def test_echo_with_permessage_deflate(self) -> None:
        with connect(self.url, max_size=MAX_SIZE) as ws:
            opened = self.event()
            assert opened["extensions"] == "permessage-deflate"
            for message in messages():
                ws.send(message)
                echo = ws.recv(timeout=TIMEOUT)
                assert type(echo) is type(message)
                assert echo == message, f"{type(message).__name__} of {len(message)}"
        assert ws.close_code == 1000
        assert self.event() == {"event": "close", "code": 1000, "reason": ""}

    def test_close_codes_both_ways(self) -> None:
        with connect(self.url) as ws:
            ws.send("close 4002")
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (4002, "bye from node")
        assert self.event()["event"] == "open"
        assert self.event() == {"event": "close", "code": 4002, "reason": ""}
        with connect(self.url) as ws:
            ws.close(4001, "see you ☃")
        assert self.event()["event"] == "open"
        assert self.event() == {"event": "close", "code": 4001, "reason": "see you ☃"}

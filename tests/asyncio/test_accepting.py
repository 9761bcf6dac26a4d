"""Tests for ws13.asyncio.accepting: running out of file descriptors (``ws13
serve`` under a low RLIMIT_NOFILE, on both loops), and the listening options
of ``create_server`` through ws13's own accept loop."""

from __future__ import annotations

import asyncio
import re
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.asyncio.helpers import (
    ServerClientTestCase,
    echo,
    tls_contexts,
    wait,
    wait_for_condition,
)
from tests.cli.helpers import TIMEOUT, CLITestCase, wait_for_port
from tests.utils import MS, free_port
from ws13.asyncio.client import connect
from ws13.asyncio.server import serve

#: Starts ``ws13 serve`` with at most 64 file descriptors.
LAUNCHER = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
    "sys.argv = ['ws13', *sys.argv[1:]]; "
    "runpy.run_module('ws13', run_name='__main__')"
)
#: More clients than the server has descriptors for.
CLIENTS = 90
#: ``ws13 serve``'s log line for each connection opened.
OPEN_LOG = re.compile(r"^\S+ \S+ open 127\.0\.0\.1:", re.MULTILINE)
#: ``ws13 serve``'s log line for each connection opened or closed.
CONNECTION_LOG = re.compile(r"^\S+ \S+ (open|close) 127\.0\.0\.1:")
REQUEST = (
    b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def answered(socks: list[socket.socket], quiet: float | None = None) -> list[socket.socket]:
    """The sockets that got their 101: all of them, or those that did before
    none got one for ``quiet`` seconds."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ, bytearray())
    done: list[socket.socket] = []
    deadline = time.monotonic() + TIMEOUT
    while selector.get_map() and time.monotonic() < deadline:
        events = selector.select(quiet if quiet is not None else TIMEOUT)
        if not events and quiet is not None:
            break
        for key, _ in events:
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(4096)
            assert data, "the server closed a connection"
            key.data.extend(data)
            if b"\r\n\r\n" in key.data:
                assert key.data.startswith(b"HTTP/1.1 101 "), bytes(key.data)
                selector.unregister(sock)
                done.append(sock)
    selector.close()
    return done


def echo_raw(sock: socket.socket, text: bytes) -> None:
    """Send a text message (masked with a zero key) and read its echo."""
    sock.sendall(bytes([0x81, 0x80 | len(text)]) + b"\0\0\0\0" + text)
    expected = bytes([0x81, len(text)]) + text
    data = b""
    while len(data) < len(expected):
        chunk = sock.recv(len(expected) - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    assert data == expected


class OutOfFileDescriptorsTests(CLITestCase):
    def run_out(self, loop: str) -> None:
        self.counted = 0  # connections seen open (their 101 read)
        port = free_port()
        process = self.spawn(
            [sys.executable, "-c", LAUNCHER, "serve", "--port", str(port), "--loop", loop],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(port, process)
        socks = []
        for _ in range(CLIENTS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            self.addCleanup(sock.close)
            sock.sendall(REQUEST)
            socks.append(sock)
        # The server holds as many as its 64 descriptors allow; the others
        # wait in the listen backlog.
        self.wait_for_log(process, "accepting paused")
        opened = self.all_opened(process, socks)
        # Out of descriptors for a while (several retries): still one warning.
        time.sleep(1500 * MS)
        opened += self.all_opened(process, [sock for sock in socks if sock not in opened])
        assert 20 < len(opened) < 64, len(opened)
        waiting = [sock for sock in socks if sock not in opened]
        stderr = self.stderr_of(process)
        assert stderr.count("accepting paused") == 1, stderr
        assert "Too many open files" in stderr, stderr
        assert "Traceback" not in stderr, stderr
        # Beside the log line per connection: the start-up line and the warning.
        other = [line for line in stderr.splitlines() if not CONNECTION_LOG.search(line)]
        assert len(other) == 2, other
        # Every open connection still works.
        for sock in opened:
            echo_raw(sock, b"still here")
        # Freed descriptors let the waiting clients in.
        for sock in opened:
            sock.close()
        late = answered(waiting)
        assert len(late) == len(waiting)
        self.wait_for_log(process, "accepting connections again")
        for sock in late:
            echo_raw(sock, b"in at last")
        stderr = self.stderr_of(process)
        assert stderr.count("accepting paused") == 1, stderr
        assert stderr.count("accepting connections again") == 1, stderr
        assert process.poll() is None
        for sock in late:
            sock.close()
        assert self.stop_server(process) == 0

    def all_opened(
        self, process: subprocess.Popen[str], socks: list[socket.socket]
    ) -> list[socket.socket]:
        """Those of ``socks`` that got a 101, once every connection the
        server logged as open got its 101 (however slow a loaded machine)."""
        opened: list[socket.socket] = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            opened += answered([sock for sock in socks if sock not in opened], quiet=200 * MS)
            logged = len(OPEN_LOG.findall(self.stderr_of(process)))
            if logged <= self.counted + len(opened):
                break
            assert time.monotonic() < deadline, (logged, self.counted, len(opened))
        self.counted += len(opened)
        return opened

    def wait_for_log(self, process: subprocess.Popen[str], text: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while text not in self.stderr_of(process):
            assert time.monotonic() < deadline, self.stderr_of(process)
            time.sleep(20 * MS)

    def test_asyncio_loop(self) -> None:
        self.run_out("asyncio")

    def test_uvloop(self) -> None:
        self.run_out("uvloop")


class ListeningTests(ServerClientTestCase):
    """What ``create_server`` offered still works with ws13's own accept loop."""

    async def echoes(self, uri: str, **kwargs: Any) -> None:
        async with connect(uri, **kwargs) as client:
            await client.send("hi")
            assert await wait(client.recv()) == "hi"

    async def test_sock(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        address = sock.getsockname()
        # The server owns the socket from now on: its close() closes it.
        server = await serve(echo, sock=sock)
        self.addAsyncCleanup(self._stop_server, server)
        assert server.sockets[0].getsockname() == address
        await self.echoes(f"ws://127.0.0.1:{server.port}/")

    async def test_several_hosts(self) -> None:
        server = await self.start_server(host=["127.0.0.1", "::1"])  # type: ignore[arg-type]
        hosts = sorted(sock.getsockname()[0] for sock in server.sockets)
        assert hosts == ["127.0.0.1", "::1"]
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            await self.echoes(f"ws://{'[::1]' if host == '::1' else host}:{port}/")

    async def test_reuse_port(self) -> None:
        first = await self.start_server(reuse_port=True)
        port = first.port
        second = await serve(echo, "127.0.0.1", port, reuse_port=True)
        self.addAsyncCleanup(self._stop_server, second)
        await self.echoes(f"ws://127.0.0.1:{port}/")
        # Either server answers on the port: the second, once the first is gone.
        first.close()
        await wait(first.wait_closed())
        await self.echoes(f"ws://127.0.0.1:{port}/")
        assert second.sockets[0].getsockname()[1] == port

    async def test_failed_tls_handshake_is_not_an_error(self) -> None:
        server_context, client_context = tls_contexts()
        server = await self.start_server(ssl=server_context)
        with self.assertNoLogs("ws13.server", level="WARNING"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not TLS
            assert await wait(reader.read()) == b""  # the server hung up
            writer.close()
            await self.echoes(f"wss://localhost:{server.port}/", ssl=client_context)

    async def test_close_cancels_tls_handshakes_in_progress(self) -> None:
        server_context, _ = tls_contexts()
        server = await self.start_server(ssl=server_context)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await wait_for_condition(lambda: bool(server.connecting))
        server.close()
        await wait(server.wait_closed())
        assert not server.connecting
        assert await wait(reader.read()) == b""
        writer.close()

    async def test_start_serving_is_refused(self) -> None:
        with pytest.raises(TypeError, match="start_serving is not supported"):
            serve(echo, "127.0.0.1", 0, start_serving=False)

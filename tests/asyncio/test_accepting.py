"""Running out of file descriptors: ``ws13 serve`` under a low RLIMIT_NOFILE, on both loops."""

from __future__ import annotations

import re
import selectors
import socket
import subprocess
import sys
import time

from tests.cli.helpers import TIMEOUT, CLITestCase, wait_for_port
from tests.utils import MS, free_port

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


def echo(sock: socket.socket, text: bytes) -> None:
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
            echo(sock, b"still here")
        # Freed descriptors let the waiting clients in.
        for sock in opened:
            sock.close()
        late = answered(waiting)
        assert len(late) == len(waiting)
        self.wait_for_log(process, "accepting connections again")
        for sock in late:
            echo(sock, b"in at last")
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

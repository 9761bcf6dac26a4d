"""Coming from websockets: its README's examples, with only the import changed.

The echo server (``websockets.asyncio.server``) and the hello client
(``websockets.sync.client``) are taken from the installed websockets
package's README (its PyPI description, in the package metadata). Each runs
as a script in its own process, as a user would run it: the ws13 versions
differ from the originals only in the import line (and the port, 8765, made
a free one so that parallel runs don't collide). They run against each other
and against the websockets originals.
"""

from __future__ import annotations

import importlib.metadata
import re
import socket
import subprocess
import sys
import time
import unittest

from tests.utils import MS, free_port

TIMEOUT = 10_000 * MS
SERVER_IMPORT = "from websockets.asyncio.server import serve"
CLIENT_IMPORT = "from websockets.sync.client import connect"


def readme_examples() -> tuple[str, str]:
    """The echo server and the hello client from websockets' README."""
    readme = importlib.metadata.metadata("websockets").get_payload()  # type: ignore[attr-defined]
    blocks = [
        "\n".join(line[4:] for line in block.splitlines())
        for block in re.findall(r"\.\. code:: python\n\n((?:    .*\n|\n)+)", readme)
    ]
    [server] = [block for block in blocks if SERVER_IMPORT in block]
    [client] = [block for block in blocks if CLIENT_IMPORT in block]
    return server, client


def migrated(example: str, original: str, replacement: str, port: int) -> str:
    assert original in example
    assert "8765" in example
    return example.replace(original, replacement).replace("8765", str(port))


class ReadmeExamplesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server, self.client = readme_examples()

    def run_pair(self, *, our_server: bool, our_client: bool) -> None:
        port = free_port()
        server = self.server.replace("8765", str(port))
        if our_server:
            server = migrated(
                self.server, SERVER_IMPORT, "from ws13.asyncio.server import serve", port
            )
        client = self.client.replace("8765", str(port))
        if our_client:
            client = migrated(
                self.client, CLIENT_IMPORT, "from ws13.sync.client import connect", port
            )
        process = subprocess.Popen(
            [sys.executable, "-c", server],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self.wait_listening(port, process)
            result = subprocess.run(
                [sys.executable, "-c", client],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        finally:
            process.kill()
            process.communicate(timeout=TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "Received: Hello world!\n"

    @staticmethod
    def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert process.poll() is None, "the server exited"
            try:
                socket.create_connection(("localhost", port), timeout=TIMEOUT).close()
            except OSError:
                time.sleep(10 * MS)
            else:
                return
        raise AssertionError("the server didn't listen")

    def test_examples_use_the_imports_we_replace(self) -> None:
        assert "serve(echo, " in self.server
        assert "connect(" in self.client

    def test_our_client_our_server(self) -> None:
        self.run_pair(our_server=True, our_client=True)

    def test_our_client_their_server(self) -> None:
        self.run_pair(our_server=False, our_client=True)

    def test_their_client_our_server(self) -> None:
        self.run_pair(our_server=True, our_client=False)

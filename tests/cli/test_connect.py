"""Tests for ``ws13 connect`` (and ``python -m ws13``), run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import trustme

from tests.cli.helpers import TIMEOUT, CLITestCase, wait_for_port
from tests.utils import free_port
from ws13.version import __version__

#: A test server built on ws13.asyncio: commands in, answers out.
#: argv: PORT [CERT_CHAIN_PEM] — with a certificate it serves wss://.
SCRIPTED_SERVER = r"""
import asyncio, json, ssl, sys
from ws13.asyncio.server import serve

async def handler(ws):
    async for message in ws:
        if message == "request":
            headers = {name: ws.request.headers.get(name) for name in ("X-Test", "Origin")}
            await ws.send(json.dumps({"headers": headers, "subprotocol": ws.subprotocol}))
        elif message == "binary":
            await ws.send(b"\x01\xfe")
        elif message == "close":
            await ws.close(4000, "custom reason")
        else:
            await ws.send(message)

async def main():
    context = None
    if len(sys.argv) > 2:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[2])
    async with serve(
        handler, "127.0.0.1", int(sys.argv[1]), ssl=context, subprotocols=["chat"]
    ) as server:
        await server.serve_forever()

asyncio.run(main())
"""


class ConnectTests(CLITestCase):
    def setUp(self) -> None:
        super().setUp()
        _, self.port = self.start_server()
        self.uri = f"ws://127.0.0.1:{self.port}/echo"

    def test_echo(self) -> None:
        result = self.run_ws13("connect", self.uri, input="hi\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hi\n"
        assert result.stderr == ""

    def test_several_lines_in_order(self) -> None:
        lines = [f"line {i} ☃" for i in range(50)]
        result = self.run_ws13("connect", self.uri, input="\n".join(lines) + "\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == lines

    def test_crlf_and_empty_lines(self) -> None:
        result = self.run_ws13("connect", self.uri, input="a\r\n\r\nb\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "a\n\nb\n"

    def test_empty_stdin(self) -> None:
        result = self.run_ws13("connect", self.uri, input="")
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    def test_stdout_closed(self) -> None:
        # Like `ws13 connect URL | head -1`.
        client = self.start("connect", self.uri, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write("first\n")
        client.stdin.flush()
        assert client.stdout.readline() == "first\n"
        client.stdout.close()
        client.stdin.write("".join(f"more {i}\n" for i in range(100)))
        client.stdin.close()
        # It stops quietly: no traceback.
        assert client.wait(timeout=TIMEOUT) == 1
        assert self.stderr_of(client) == ""

    def test_rejected(self) -> None:
        result = self.run_ws13("connect", f"ws://127.0.0.1:{self.port}/nope")
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, "server rejected the connection: HTTP 404 Not Found"
        )
        assert result.stdout == ""


class ConnectErrorTests(CLITestCase):
    def test_closed_port(self) -> None:
        port = free_port()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/")
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, f"cannot connect to ws://127.0.0.1:{port}/: Connection refused"
        )

    def test_bad_url(self) -> None:
        for url in ("http://example.com/", "ws://[bad", "nonsense"):
            with self.subTest(url=url):
                result = self.run_ws13("connect", url)
                assert result.returncode == 2
                self.assert_one_line_error(result.stderr)
                assert "isn't a valid WebSocket URI" in result.stderr

    def test_bad_header(self) -> None:
        result = self.run_ws13("connect", "ws://127.0.0.1:1/", "-H", "no colon")
        assert result.returncode == 2
        self.assert_one_line_error(
            result.stderr, "invalid header 'no colon'; expected 'Name: value'"
        )

    def test_missing_url(self) -> None:
        result = self.run_ws13("connect")
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "url" in result.stderr

    def test_no_command(self) -> None:
        result = self.run_ws13()
        assert result.returncode == 2
        assert "Traceback" not in result.stderr

    def test_version(self) -> None:
        # `python -m ws13` is how run_ws13() runs every command.
        result = self.run_ws13("--version")
        assert result.returncode == 0
        assert result.stdout == f"ws13 {__version__}\n"


class ScriptedServerTests(CLITestCase):
    """``ws13 connect`` against a ws13.asyncio server that does what the test asks."""

    def start_scripted(self, *args: str) -> int:
        port = free_port()
        process = self.spawn(
            [sys.executable, "-c", SCRIPTED_SERVER, str(port), *args],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(port, process)
        return port

    def test_headers_origin_and_subprotocol(self) -> None:
        port = self.start_scripted()
        result = self.run_ws13(
            "connect",
            f"ws://127.0.0.1:{port}/",
            "-H",
            "X-Test: yes",
            "--origin",
            "https://example.com",
            "--subprotocol",
            "other",
            "--subprotocol",
            "chat",
            input="request\n",
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {
            "headers": {"X-Test": "yes", "Origin": "https://example.com"},
            "subprotocol": "chat",
        }

    def test_binary_message_printed_as_hex(self) -> None:
        port = self.start_scripted()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input="binary\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "01fe\n"

    def test_abnormal_close(self) -> None:
        port = self.start_scripted()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input="before\nclose\nafter\n")
        assert result.returncode == 1
        assert result.stdout == "before\n"
        self.assert_one_line_error(
            result.stderr, "connection closed abnormally: 4000 custom reason"
        )

    def test_wss(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        with tempfile.TemporaryDirectory() as directory:
            ca_path = os.path.join(directory, "ca.pem")
            chain_path = os.path.join(directory, "server.pem")
            ca.cert_pem.write_to_path(ca_path)
            cert.private_key_and_cert_chain_pem.write_to_path(chain_path)
            port = self.start_scripted(chain_path)
            uri = f"wss://localhost:{port}/"

            result = self.run_ws13("connect", uri, "--cafile", ca_path, input="secure\n")
            assert result.returncode == 0, result.stderr
            assert result.stdout == "secure\n"

            # The system CAs don't trust the test CA.
            result = self.run_ws13("connect", uri, input="secure\n")
            assert result.returncode == 1
            self.assert_one_line_error(result.stderr)
            assert result.stderr.startswith("ws13: error: TLS error: ")
            assert "CERTIFICATE_VERIFY_FAILED" in result.stderr

            result = self.run_ws13("connect", uri, "--insecure", input="anyway\n")
            assert result.returncode == 0, result.stderr
            assert result.stdout == "anyway\n"

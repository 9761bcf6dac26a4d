"""Tests for ``ws13 connect`` (and ``python -m ws13``), run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import trustme

from tests.cli.helpers import ENV, TIMEOUT, WS13, CLITestCase, wait_for_port
from tests.proxies import Tinyproxy
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


class ConnectOptionTests(CLITestCase):
    """The options of ``ws13 connect`` against ``ws13 serve``."""

    def setUp(self) -> None:
        super().setUp()
        _, self.port = self.start_server()
        self.uri = f"ws://127.0.0.1:{self.port}/echo"

    def test_trace(self) -> None:
        result = self.run_ws13("connect", "--trace", self.uri, input="hi\n")
        assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
        trace = result.stderr
        for expected in [
            "> GET /echo HTTP/1.1",
            "> Sec-WebSocket-Key: ",
            "> Sec-WebSocket-Extensions: permessage-deflate",
            "< HTTP/1.1 101 Switching Protocols",
            "< Sec-WebSocket-Accept: ",
            "(matches)",
            "> TEXT frame sent, 2 bytes payload",
            "    FIN=1 RSV1=0 RSV2=0 RSV3=0 opcode=0x1 (TEXT)",
            "    MASK=1 masking-key=",
            "    payload length=2 (7-bit encoding, 7-bit field=2)",
            "      0000  68 69",
            "< TEXT frame received, 2 bytes payload",
            "    MASK=0",
            "> CLOSE frame sent",
            "< CLOSE frame received",
            "    close code=1000",
        ]:
            assert expected in trace, (expected, trace)
        # The handshake comes first, then the frames.
        assert trace.index("101 Switching Protocols") < trace.index("TEXT frame sent")
        assert "Traceback" not in trace

    def test_trace_compressed_and_long(self) -> None:
        message = "compressible " * 20  # 260 bytes: compressed, 7+16-bit length in
        result = self.run_ws13("connect", "--trace", self.uri, input=message + "\n")
        assert result.returncode == 0, result.stderr
        assert "FIN=1 RSV1=1 RSV2=0 RSV3=0 opcode=0x1 (TEXT)" in result.stderr
        assert "payload (compressed):" in result.stderr
        assert "inflated: 260 bytes" in result.stderr
        long = self.run_ws13("connect", "--trace", "--no-compression", self.uri, input=message)
        assert "payload length=260 (7+16-bit encoding, 7-bit field=126)" in long.stderr

    def test_trace_rejected_handshake(self) -> None:
        result = self.run_ws13("connect", "--trace", f"ws://127.0.0.1:{self.port}/nope")
        assert result.returncode == 1
        assert "> GET /nope HTTP/1.1" in result.stderr
        assert "< HTTP/1.1 404 Not Found" in result.stderr
        assert result.stderr.splitlines()[-1] == (
            "ws13: error: server rejected the connection: HTTP 404 Not Found"
        )

    def test_no_compression(self) -> None:
        result = self.run_ws13("connect", "--trace", "--no-compression", self.uri, input="x\n")
        assert (result.returncode, result.stdout) == (0, "x\n")
        assert "Sec-WebSocket-Extensions" not in result.stderr

    def test_binary_hex(self) -> None:
        result = self.run_ws13("connect", "--binary", self.uri, input="00 ff 10\n0102\n")
        assert (result.returncode, result.stdout) == (0, "00ff10\n0102\n"), result.stderr

    def test_binary_base64(self) -> None:
        result = self.run_ws13("connect", "--binary", "--base64", self.uri, input="AP8Q\n")
        assert (result.returncode, result.stdout) == (0, "AP8Q\n"), result.stderr

    def test_binary_bad_line(self) -> None:
        result = self.run_ws13("connect", "--binary", self.uri, input="00\nzz\n01\n")
        assert result.returncode == 1
        assert result.stdout == "00\n"
        self.assert_one_line_error(result.stderr, "stdin line 2: not hex: 'zz'")
        result = self.run_ws13("connect", "--binary", "--base64", self.uri, input="!!\n")
        assert result.returncode == 1
        self.assert_one_line_error(result.stderr, "stdin line 1: not base64: '!!'")

    def test_json(self) -> None:
        result = self.run_ws13("connect", "--json", self.uri, input='{"a": [1, "é"]}\nplain\n')
        assert result.returncode == 0, result.stderr
        assert result.stdout == '{\n  "a": [\n    1,\n    "é"\n  ]\n}\nplain\n'

    def test_count(self) -> None:
        # stdin stays open: --count ends the client.
        client = self.start(
            "connect", "--count", "2", self.uri, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write("a\nb\nc\n")
        client.stdin.flush()
        assert client.wait(timeout=TIMEOUT) == 0, self.stderr_of(client)
        assert client.stdout.read() == "a\nb\n"

    def test_ping_interval_and_max_size(self) -> None:
        result = self.run_ws13(
            "connect", "--ping-interval", "0", "--max-size", "4", self.uri, input="tiny\n"
        )
        assert (result.returncode, result.stdout) == (0, "tiny\n")
        result = self.run_ws13("connect", "--max-size", "4", self.uri, input="too big\n")
        assert result.returncode == 1
        self.assert_one_line_error(result.stderr)
        self.assert_one_line_error(
            result.stderr, "connection closed abnormally: 1009 message too big; limit is 4 bytes"
        )

    def test_reconnect_gives_up_on_client_errors(self) -> None:
        result = self.run_ws13("connect", "--reconnect", f"ws://127.0.0.1:{self.port}/nope")
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, "server rejected the connection: HTTP 404 Not Found"
        )


class ReconnectTests(CLITestCase):
    def test_reconnect_until_the_server_is_up(self) -> None:
        port = free_port()
        client = self.start(
            "connect",
            "--reconnect",
            f"ws://127.0.0.1:{port}/echo",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write("queued\n")
        client.stdin.flush()
        # Wait until it tried at least once, then start the server.
        deadline = time.monotonic() + TIMEOUT
        while "reconnecting in" not in self.stderr_of(client):
            assert time.monotonic() < deadline, self.stderr_of(client)
            time.sleep(0.02)
        server = self.start("serve", "--port", str(port), stdout=subprocess.DEVNULL)
        wait_for_port(port, server)
        assert client.stdout.readline() == "queued\n"
        # The server goes away and comes back: the client follows.
        server.terminate()
        server.wait(timeout=TIMEOUT)
        server = self.start("serve", "--port", str(port), stdout=subprocess.DEVNULL)
        wait_for_port(port, server)
        client.stdin.write("again\n")
        client.stdin.flush()
        assert client.stdout.readline() == "again\n"
        client.stdin.close()
        assert client.wait(timeout=TIMEOUT) == 0
        stderr = self.stderr_of(client)
        assert f"ws13: cannot connect to ws://127.0.0.1:{port}/echo: Connection refused" in stderr
        assert "ws13: connection closed: 1001 server shutting down" in stderr
        assert "Traceback" not in stderr


class BadOptionTests(CLITestCase):
    def test_bad_values(self) -> None:
        url = "ws://127.0.0.1:1/"
        for args, message in [
            (["--count", "0"], "--count 0: must be 1 or more"),
            (["--ping-interval", "-1"], "--ping-interval -1: must be 0 (off) or more"),
            (["--max-size", "-1"], "--max-size -1: must be 0 (no limit) or more"),
            (["--keylog", "keys.txt"], "--keylog needs a wss:// URL: ws:// isn't encrypted"),
        ]:
            with self.subTest(args=args):
                result = self.run_ws13("connect", *args, url)
                assert result.returncode == 2
                self.assert_one_line_error(result.stderr, message)

    def test_missing_cafile(self) -> None:
        result = self.run_ws13("connect", "--cafile", "/nonexistent.pem", "wss://127.0.0.1:1/")
        assert result.returncode == 2
        self.assert_one_line_error(
            result.stderr, "cannot read --cafile /nonexistent.pem: No such file or directory"
        )


class KeylogTests(ScriptedServerTests):
    def test_keylog(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        with tempfile.TemporaryDirectory() as directory:
            ca_path = os.path.join(directory, "ca.pem")
            chain_path = os.path.join(directory, "server.pem")
            ca.cert_pem.write_to_path(ca_path)
            cert.private_key_and_cert_chain_pem.write_to_path(chain_path)
            port = self.start_scripted(chain_path)
            uri = f"wss://localhost:{port}/"
            keylog = os.path.join(directory, "keys.txt")
            result = self.run_ws13(
                "connect", uri, "--cafile", ca_path, "--keylog", keylog, input="k\n"
            )
            assert (result.returncode, result.stdout) == (0, "k\n"), result.stderr
            with open(keylog) as file:
                keys = file.read()
            # NSS key log format: TLS 1.3 traffic secrets (or TLS 1.2 CLIENT_RANDOM).
            assert "CLIENT_TRAFFIC_SECRET_0 " in keys or "CLIENT_RANDOM " in keys, keys

            # SSLKEYLOGFILE does the same.
            env_keylog = os.path.join(directory, "env-keys.txt")
            result = subprocess.run(
                [*WS13, "connect", uri, "--cafile", ca_path],
                input="k\n",
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                env={**ENV, "SSLKEYLOGFILE": env_keylog},
            )
            assert result.returncode == 0, result.stderr
            with open(env_keylog) as file:
                env_keys = file.read()
            assert "CLIENT_TRAFFIC_SECRET_0 " in env_keys or "CLIENT_RANDOM " in env_keys

            # An unwritable key log file is a one-line error.
            bad = os.path.join(directory, "missing", "keys.txt")
            result = self.run_ws13("connect", uri, "--cafile", ca_path, "--keylog", bad)
            assert result.returncode == 2
            self.assert_one_line_error(
                result.stderr, f"cannot write --keylog {bad}: No such file or directory"
            )


class ProxyTests(CLITestCase):
    """``--proxy`` and ``--no-proxy`` through a real tinyproxy."""

    def setUp(self) -> None:
        super().setUp()
        _, self.port = self.start_server()
        self.uri = f"ws://127.0.0.1:{self.port}/echo"

    def proxy(self, **kwargs: Any) -> Tinyproxy:
        proxy = Tinyproxy(self.port, **kwargs)
        proxy.start()
        self.addCleanup(proxy.stop)
        return proxy

    def run_with_env(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in ENV.items() if not k.lower().endswith("_proxy")}
        return subprocess.run(
            [*WS13, *args],
            input="hi\n",
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
            env={**clean, **env},
        )

    def test_proxy_option(self) -> None:
        proxy = self.proxy()
        result = self.run_with_env("connect", "--proxy", proxy.url, self.uri)
        assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")
        assert proxy.tunnels() == [f"127.0.0.1:{self.port}"]

    def test_environment_and_no_proxy(self) -> None:
        proxy = self.proxy()
        result = self.run_with_env("connect", self.uri, HTTP_PROXY=proxy.url)
        assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
        assert len(proxy.tunnels()) == 1
        result = self.run_with_env("connect", "--no-proxy", self.uri, HTTP_PROXY=proxy.url)
        assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
        assert len(proxy.tunnels()) == 1

    def test_proxy_errors(self) -> None:
        proxy = self.proxy(auth=("ann", "s3cret"))
        result = self.run_with_env("connect", "--proxy", proxy.url, self.uri)
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, "proxy rejected connection: HTTP 407 Proxy Authentication Required"
        )
        port = free_port()
        result = self.run_with_env("connect", "--proxy", f"http://127.0.0.1:{port}", self.uri)
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, f"cannot connect to proxy http://127.0.0.1:{port}: Connection refused"
        )
        result = self.run_with_env("connect", "--proxy", "ftp://127.0.0.1", self.uri)
        assert result.returncode == 2
        self.assert_one_line_error(
            result.stderr,
            "'ftp://127.0.0.1' isn't a valid proxy: scheme ftp isn't supported; "
            "use one of http, https, socks5h, socks5, socks4a, socks4",
        )

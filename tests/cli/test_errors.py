"""One wording for connection failures in ``ws13 connect``, ``ws13 sub`` and ``ws13 pub``.

The unit tests call ``ws13.cli.errors`` directly; the others run each command
as a real subprocess and check what a user sees: exactly one ``ws13: error:``
line, no traceback, and the exit status (2 for a bad URL, 1 for a failure).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import unittest

from tests.cli.helpers import CLITestCase
from tests.utils import free_port
from ws13.cli.errors import (
    ConnectFailed,
    answers_plain_http,
    connect_failed,
    not_tls_message,
    os_error_reason,
)
from ws13.exceptions import (
    InvalidHandshake,
    InvalidProxy,
    InvalidProxyStatus,
    InvalidRedirect,
    InvalidStatus,
    InvalidURI,
)
from ws13.headers import Headers
from ws13.http11 import Response

#: Each command that connects, with the arguments that follow its URL.
COMMANDS = {
    "connect": ("connect", []),
    "sub": ("sub", ["chat:general", "--count", "1"]),
    "pub": ("pub", ["chat:general", "hello"]),
}


class ConnectFailedTests(unittest.TestCase):
    def test_proxy_errors(self) -> None:
        url = "ws://127.0.0.1:8000/"
        refused = ConnectionRefusedError(errno.ECONNREFUSED, "cannot connect to proxy ...")
        failed = connect_failed(url, refused, "http://ann:s3cret@127.0.0.1:3128")
        self.assertEqual(
            str(failed), "cannot connect to proxy http://ann@127.0.0.1:3128: Connection refused"
        )
        self.assertTrue(failed.retry)
        status = InvalidProxyStatus(Response(407, "Proxy Authentication Required", Headers()))
        failed = connect_failed(url, status, "http://127.0.0.1:3128")
        self.assertEqual(
            str(failed), "proxy rejected connection: HTTP 407 Proxy Authentication Required"
        )
        self.assertFalse(failed.retry)
        bad_gateway = InvalidProxyStatus(Response(502, "Bad Gateway", Headers()))
        self.assertTrue(connect_failed(url, bad_gateway, "http://127.0.0.1:3128").retry)
        invalid = connect_failed(url, InvalidProxy("ftp://p", "scheme ftp isn't supported"))
        self.assertEqual((invalid.status, invalid.retry), (2, False))

    def test_redirect_not_followed(self) -> None:
        exc = InvalidRedirect(Response(302, "Found", Headers()), "more than 10 redirects")
        failed = connect_failed("ws://127.0.0.1:8000/", exc)
        self.assertEqual(str(failed), "redirect not followed: more than 10 redirects (HTTP 302)")
        self.assertFalse(failed.retry)

    def test_resolver_error(self) -> None:
        exc = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        self.assertEqual(
            str(connect_failed("ws://nowhere.invalid/", exc)),
            "cannot connect to ws://nowhere.invalid/: could not resolve host nowhere.invalid",
        )

    def test_resolver_error_without_its_type(self) -> None:
        # os.strerror(-2) is "Unknown error -2": never shown.
        self.assertEqual(os_error_reason(OSError(-2, "?"), "h"), "could not resolve host h")

    def test_refused(self) -> None:
        exc = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 1)")
        self.assertEqual(
            str(connect_failed("ws://127.0.0.1:1/", exc)),
            "cannot connect to ws://127.0.0.1:1/: Connection refused",
        )

    def test_refused_on_every_address(self) -> None:
        # asyncio's error when each address of a name failed.
        exc = OSError(
            "Multiple exceptions: [Errno 111] Connect call failed ('::1', 1, 0, 0), "
            "[Errno 111] Connect call failed ('127.0.0.1', 1)"
        )
        self.assertEqual(os_error_reason(exc, "localhost"), "Connection refused")

    def test_bad_url_is_status_2(self) -> None:
        failed = connect_failed("http://x/", InvalidURI("http://x/", "scheme isn't ws or wss"))
        self.assertEqual(
            (str(failed), failed.status, failed.retry),
            ("'http://x/' isn't a valid WebSocket URI: scheme isn't ws or wss", 2, False),
        )

    def test_http_status(self) -> None:
        failed = connect_failed("ws://h/", InvalidStatus(Response(404, "Not Found", Headers())))
        self.assertEqual(str(failed), "server rejected the connection: HTTP 404 Not Found")
        self.assertFalse(failed.retry)
        failed = connect_failed(
            "ws://h/", InvalidStatus(Response(503, "Service Unavailable", Headers()))
        )
        self.assertTrue(failed.retry)

    def test_handshake(self) -> None:
        failed = connect_failed("ws://h/", InvalidHandshake("missing Upgrade header"))
        self.assertEqual(str(failed), "opening handshake failed: missing Upgrade header")

    def test_tls(self) -> None:
        exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
        exc.reason = "WRONG_VERSION_NUMBER"
        failed = connect_failed("wss://h/", exc)
        self.assertTrue(str(failed).startswith("TLS error: WRONG_VERSION_NUMBER: "))
        self.assertIn("is it a ws:// server?", str(failed))
        self.assertEqual((failed.status, failed.retry), (1, False))

    def test_timeout(self) -> None:
        failed = connect_failed("ws://h/", TimeoutError())
        self.assertEqual(str(failed), "timed out connecting to ws://h/")

    def test_already_worded(self) -> None:
        failed = ConnectFailed("as is", 2)
        self.assertIs(connect_failed("ws://h/", failed), failed)

    def test_not_tls_message(self) -> None:
        self.assertEqual(
            not_tls_message("wss://127.0.0.1:8765/echo"),
            "cannot connect to wss://127.0.0.1:8765/echo: the server answered with "
            "plain HTTP, not TLS (is it ws://127.0.0.1:8765/echo?)",
        )

    def test_nothing_listening_is_not_plain_http(self) -> None:
        port = free_port()
        self.assertFalse(asyncio.run(answers_plain_http(f"wss://127.0.0.1:{port}/")))


class CommandErrorTests(CLITestCase):
    """Every command words each failure the same way, on one line."""

    def run_each(self, url: str) -> dict[str, tuple[int, str]]:
        """Run every command on ``url``: its exit status and its stderr."""
        results = {}
        for name, (command, rest) in COMMANDS.items():
            result = self.run_ws13(command, url, *rest, input="hello\n")
            self.assert_one_line_error(result.stderr)
            results[name] = (result.returncode, result.stderr)
        return results

    def assert_each(self, url: str, status: int, message: str) -> None:
        for name, (got_status, stderr) in self.run_each(url).items():
            with self.subTest(command=name, url=url):
                self.assertEqual((got_status, stderr), (status, f"ws13: error: {message}\n"))

    def test_bad_urls(self) -> None:
        for url, reason in [
            ("http://127.0.0.1:8765/hub", "scheme isn't ws or wss"),
            ("ws://", "hostname is missing"),
            ("ws://127.0.0.1:99999/hub", "port isn't a number between 0 and 65535"),
            ("ws://127.0.0.1:port/hub", "port isn't a number between 0 and 65535"),
        ]:
            self.assert_each(url, 2, f"{url!r} isn't a valid WebSocket URI: {reason}")

    def test_unknown_host(self) -> None:
        url = "ws://no-such-host.invalid/hub"
        self.assert_each(
            url, 1, f"cannot connect to {url}: could not resolve host no-such-host.invalid"
        )

    def test_refused(self) -> None:
        url = f"ws://127.0.0.1:{free_port()}/hub"
        self.assert_each(url, 1, f"cannot connect to {url}: Connection refused")

    def test_wss_to_a_plain_server(self) -> None:
        # The server waits for the rest of what it takes for an HTTP request;
        # the client asks it in plain HTTP instead of waiting for the timeout.
        _, port = self.start_server()
        url = f"wss://127.0.0.1:{port}/hub"
        self.assert_each(url, 1, not_tls_message(url))

    def test_hub_commands_on_a_url_that_is_not_the_hub(self) -> None:
        _, port = self.start_server()
        for path in ("/echo", "/"):
            url = f"ws://127.0.0.1:{port}{path}"
            for command in ("sub", "pub"):
                with self.subTest(command=command, path=path):
                    _, rest = COMMANDS[command]
                    result = self.run_ws13(command, url, *rest)
                    self.assertEqual(result.returncode, 1)
                    self.assert_one_line_error(
                        result.stderr,
                        f"cannot connect to {url}: the endpoint did not speak the "
                        "ws13.hub.v1 subprotocol; is it the hub's URL (ws://HOST:PORT/hub)?",
                    )

    def test_http_refusal(self) -> None:
        _, port = self.start_server()
        self.assert_each(
            f"ws://127.0.0.1:{port}/nope", 1, "server rejected the connection: HTTP 404 Not Found"
        )

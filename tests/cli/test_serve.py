"""Tests for ``ws13 serve``, run as a real subprocess."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.helpers import TIMEOUT, CLITestCase
from ws13._accel import USING_SPEEDUPS
from ws13.asyncio import connect
from ws13.exceptions import InvalidStatus
from ws13.hub import Client as HubClient
from ws13.version import __version__


def http_get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


class ServeTests(CLITestCase):
    def test_echo(self) -> None:
        _, port = self.start_server()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="hi\n")
        assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")

    def test_echo_on_root_path(self) -> None:
        _, port = self.start_server()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input="at root\n")
        assert (result.returncode, result.stdout) == (0, "at root\n")

    def test_ipv6(self) -> None:
        server, port = self.start_server(host="::1")
        result = self.run_ws13("connect", f"ws://[::1]:{port}/echo", input="six\n")
        assert (result.returncode, result.stdout) == (0, "six\n")
        assert self.stop_server(server) == 0
        assert f"ws13 serving on ws://[::1]:{port}/echo" in self.stderr_of(server)

    def test_asyncio_loop(self) -> None:
        _, port = self.start_server("--loop", "asyncio")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="plain\n")
        assert (result.returncode, result.stdout) == (0, "plain\n")

    def test_uvloop(self) -> None:
        # uvloop's transports don't subclass asyncio.Transport.
        _, port = self.start_server("--loop", "uvloop")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="fast\n")
        assert (result.returncode, result.stdout) == (0, "fast\n")

    def test_health(self) -> None:
        _, port = self.start_server()
        status, content_type, body = http_get(port, "/health")
        assert status == 200
        assert content_type == "application/json"
        health = json.loads(body)
        assert health["status"] == "ok"
        assert health["uptime"] >= 0
        assert (health["connections"], health["messages_in"], health["messages_out"]) == (0, 0, 0)
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="one\ntwo\nthree\n")
        assert result.returncode == 0
        health = json.loads(http_get(port, "/health?verbose=1")[2])
        assert (health["connections"], health["messages_in"], health["messages_out"]) == (0, 3, 3)

    def test_health_has_one_channel_count(self) -> None:
        # A channel with history but no subscriber, then one with a subscriber:
        # /health says "channels" once, and it counts the subscribed one.
        _, port = self.start_server("--hub-ticker", "0")
        hub = f"ws://127.0.0.1:{port}/hub"
        result = self.run_ws13("pub", hub, "chat:kept", "in history")
        assert result.returncode == 0, result.stderr
        subscriber = self.start("sub", hub, "chat:live", stdout=subprocess.PIPE)
        deadline = time.monotonic() + TIMEOUT
        while (health := json.loads(http_get(port, "/health")[2]))["hub"]["channels"] < 1:
            assert time.monotonic() < deadline, f"the subscriber never subscribed: {health}"
            time.sleep(0.02)
        assert health["hub"]["channels"] == 1, health
        assert json.dumps(health).count('"channels"') == 1, health
        subscriber.kill()

    def test_health_counts_open_connections(self) -> None:
        _, port = self.start_server()
        client = self.start(
            "connect",
            f"ws://127.0.0.1:{port}/echo",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write("here\n")
        client.stdin.flush()
        ready, _, _ = select.select([client.stdout], [], [], TIMEOUT)
        assert ready, "no echo from the server"
        assert client.stdout.readline() == "here\n"
        health = json.loads(http_get(port, "/health")[2])
        assert health["connections"] == 1
        client.stdin.close()
        assert client.wait(timeout=TIMEOUT) == 0

    def test_demo_page(self) -> None:
        _, port = self.start_server()
        status, content_type, body = http_get(port, "/")
        assert status == 200
        assert content_type == "text/html; charset=utf-8"
        assert b"<html" in body.lower()

    def test_not_found(self) -> None:
        _, port = self.start_server()
        status, _, body = http_get(port, "/nope")
        assert status == 404
        assert body == b"Not Found: /nope\n"

    def test_max_size(self) -> None:
        _, port = self.start_server("--max-size", "8")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="tiny\n")
        assert (result.returncode, result.stdout) == (0, "tiny\n")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="far too long\n")
        assert result.returncode == 1
        self.assert_one_line_error(result.stderr)
        assert result.stderr.startswith("ws13: error: connection closed abnormally: 1009")

    def test_max_connections(self) -> None:
        _, port = self.start_server("--max-connections", "1", "--max-connections-per-ip", "1")

        async def limited() -> None:
            url = f"ws://127.0.0.1:{port}/echo"
            first = await connect(url)
            with pytest.raises(InvalidStatus) as raised:
                await connect(url)
            assert raised.value.response.status_code == 503
            assert raised.value.response.headers["Retry-After"] == "5"
            await first.send("still served")
            assert await first.recv() == "still served"
            # /health is plain HTTP: it takes no slot.
            status, _, _ = await asyncio.to_thread(http_get, port, "/health")
            assert status == 200
            await first.close()
            # The slot is free once the server has seen the close.
            async with asyncio.timeout(TIMEOUT):
                while True:
                    try:
                        again = await connect(url)
                    except InvalidStatus:
                        await asyncio.sleep(0.01)
                        continue
                    break
            await again.close()

        asyncio.run(limited())

    def test_max_handshake_rate(self) -> None:
        _, port = self.start_server("--max-handshake-rate", "1")
        # start_server's port probe was no HTTP request: the one token is left.
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="hi\n")
        assert (result.returncode, result.stdout) == (0, "hi\n")
        status, _, body = http_get(port, "/health")
        assert status == 429
        assert body == b"Too Many Requests: slow down\n"

    def test_port_in_use(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = self.run_ws13("serve", "--port", str(port))
        assert result.returncode == 1
        self.assert_one_line_error(result.stderr)
        assert result.stderr.startswith(f"ws13: error: cannot listen on 127.0.0.1:{port}: ")

    def test_sigterm_stops_the_server(self) -> None:
        server, port = self.start_server()
        assert self.stop_server(server, signal.SIGTERM) == 0
        stderr = self.stderr_of(server)
        assert f"ws13 serving on ws://127.0.0.1:{port}/echo" in stderr
        assert "ws13 shutting down" in stderr
        assert "Traceback" not in stderr

    def test_sigint_stops_the_server(self) -> None:
        server, _ = self.start_server()
        assert self.stop_server(server, signal.SIGINT) == 0
        assert "Traceback" not in self.stderr_of(server)

    def test_sigterm_closes_connections_with_1001(self) -> None:
        server, port = self.start_server()
        client = self.start(
            "connect",
            f"ws://127.0.0.1:{port}/echo",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write("connected?\n")
        client.stdin.flush()
        ready, _, _ = select.select([client.stdout], [], [], TIMEOUT)
        assert ready, "no echo from the server"
        assert client.stdout.readline() == "connected?\n"
        assert self.stop_server(server) == 0
        # The client sees a normal close (1001 going away) while its stdin is
        # still open, and exits 0.
        assert client.wait(timeout=TIMEOUT) == 0
        assert self.stderr_of(client) == ""
        assert "code=1001" in self.stderr_of(server)

    def test_bad_arguments(self) -> None:
        result = self.run_ws13("serve", "--port", "not-a-number")
        assert result.returncode == 2
        assert "Traceback" not in result.stderr


class ServeRoutesTests(CLITestCase):
    def test_static_files(self) -> None:
        _, port = self.start_server()
        for path, content_type, marker in [
            ("/", "text/html; charset=utf-8", b'<script src="/lab.js">'),
            ("/lab.js", "text/javascript; charset=utf-8", b"openInspector"),
            ("/lab.css", "text/css; charset=utf-8", b".frame"),
            ("/chat.html", "text/html; charset=utf-8", b'<script src="/ws13.js">'),
            ("/chat.js", "text/javascript; charset=utf-8", b"new WS13Hub("),
            ("/chat.css", "text/css; charset=utf-8", b".cline"),
            ("/ws13.js", "text/javascript; charset=utf-8", b"WS13Hub"),
            ("/favicon.svg", "image/svg+xml", b"<svg"),
            ("/favicon.ico", "image/svg+xml", b"<svg"),
        ]:
            with self.subTest(path=path):
                status, got_type, body = http_get(port, path)
                assert (status, got_type) == (200, content_type)
                assert marker in body

    def test_upgrade_required(self) -> None:
        _, port = self.start_server()
        for path in ("/echo", "/inspect"):
            with self.subTest(path=path):
                status, _, body = http_get(port, path)
                assert status == 426
                assert body == f"Upgrade Required: {path} takes WebSocket connections\n".encode()

    def test_hub_subprotocol_only_on_the_hub(self) -> None:
        _, port = self.start_server()
        for path, expected in [("/hub", "ws13.hub.v1"), ("/echo", None), ("/", None)]:
            with self.subTest(path=path):
                result = self.run_ws13(
                    "connect", "--subprotocol", "ws13.hub.v1", "--trace",
                    f"ws://127.0.0.1:{port}{path}",
                )  # fmt: skip
                assert result.returncode == 0, result.stderr
                agreed = re.search(r"^< Sec-WebSocket-Protocol: (.*)$", result.stderr, re.M)
                assert (agreed.group(1) if agreed else None) == expected, result.stderr

    def test_no_websocket_on_health(self) -> None:
        _, port = self.start_server()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/health")
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, "server rejected the connection: HTTP 404 Not Found"
        )

    def test_unknown_inspector(self) -> None:
        _, port = self.start_server()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo?inspect=nope")
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, "server rejected the connection: HTTP 400 Bad Request"
        )

    def test_log_lines(self) -> None:
        server, port = self.start_server()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="hi\n")
        assert result.returncode == 0
        assert self.stop_server(server) == 0
        stderr = self.stderr_of(server)
        assert re.search(r" open 127\.0\.0\.1:\d+ /echo subprotocol=-\n", stderr), stderr
        assert re.search(
            r" close 127\.0\.0\.1:\d+ /echo subprotocol=- code=1000 duration=\d+\.\d{3}s\n", stderr
        ), stderr
        # Without -v, no frames.
        assert "TEXT" not in stderr

    def test_verbose_logs_frames(self) -> None:
        server, port = self.start_server("-v")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="hi\n")
        assert result.returncode == 0
        assert self.stop_server(server) == 0
        stderr = self.stderr_of(server)
        assert re.search(r":\d+ < TEXT fin=1 rsv=000 mask=1 len=2 \(7\) 'hi'\n", stderr), stderr
        assert re.search(r":\d+ > TEXT fin=1 rsv=000 mask=0 len=2 \(7\) 'hi'\n", stderr), stderr
        assert re.search(r":\d+ < CLOSE fin=1 rsv=000 mask=1 len=2 \(7\) code=1000", stderr)

    def test_bad_port(self) -> None:
        result = self.run_ws13("serve", "--port", "70000")
        assert result.returncode == 2
        self.assert_one_line_error(result.stderr, "--port 70000: must be between 0 and 65535")

    def test_bad_values(self) -> None:
        for args, message in [
            (["--port", "-1"], "--port -1: must be between 0 and 65535"),
            (["--max-size", "-1"], "--max-size -1: must be 0 (no limit) or more"),
            (["--exec", " "], "--exec: the command is empty"),
            (["--exec-pty", ""], "--exec-pty: the command is empty"),
            (["--hub-ticker", "-1"], "--hub-ticker must be >= 0 (0: off)"),
            (["--hub-path", "hub"], "--hub-path hub: must start with /"),
            (["--hub-publish-rate", "-1"], "--hub-publish-rate must be >= 0"),
            (["--max-connections", "0"], "--max-connections 0: must be more than 0"),
            (
                ["--max-connections-per-ip", "-2"],
                "--max-connections-per-ip -2: must be more than 0",
            ),
            (["--max-handshake-rate", "0"], "--max-handshake-rate 0: must be more than 0"),
            (
                ["--redis", "nonsense"],
                "unsupported backplane URL: 'nonsense'; "
                "use redis://HOST:PORT/DB or redis+cluster://HOST:PORT",
            ),
            (
                ["--redis", "redis+cluster://127.0.0.1:port"],
                "bad port 'port' in 'redis+cluster://127.0.0.1:port'",
            ),
        ]:
            with self.subTest(args=args):
                result = self.run_ws13("serve", "--port", "0", *args)
                assert result.returncode == 2
                self.assert_one_line_error(result.stderr, message)

    def test_exec_and_exec_pty_exclude_each_other(self) -> None:
        result = self.run_ws13("serve", "--exec", "cat", "--exec-pty", "cat")
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "argument --exec-pty: not allowed with argument --exec" in result.stderr

    def test_unknown_host(self) -> None:
        result = self.run_ws13("serve", "--port", "0", "--host", "no-such-host.invalid")
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr,
            "cannot listen on no-such-host.invalid:0: could not resolve host no-such-host.invalid",
        )

    def test_help_says_programs_buffer(self) -> None:
        result = self.run_ws13("serve", "--help")
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        assert "buffer what they write to a pipe" in text
        assert "--exec-pty CMD" in text


class ServeTLSTests(CLITestCase):
    def test_wss(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        with tempfile.TemporaryDirectory() as directory:
            ca_path = os.path.join(directory, "ca.pem")
            cert_path = os.path.join(directory, "cert.pem")
            key_path = os.path.join(directory, "key.pem")
            ca.cert_pem.write_to_path(ca_path)
            cert.cert_chain_pems[0].write_to_path(cert_path)
            cert.private_key_pem.write_to_path(key_path)
            server, port = self.start_server("--tls-cert", cert_path, "--tls-key", key_path)
            result = self.run_ws13(
                "connect", f"wss://localhost:{port}/echo", "--cafile", ca_path, input="safe\n"
            )
            assert (result.returncode, result.stdout) == (0, "safe\n"), result.stderr
            assert self.stop_server(server) == 0
            assert f"ws13 serving on wss://127.0.0.1:{port}/echo" in self.stderr_of(server)
            assert f"demo page: https://127.0.0.1:{port}/" in self.stderr_of(server)

    def test_bad_tls_files(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            junk = os.path.join(directory, "junk.pem")
            with open(junk, "w") as file:
                file.write("not a certificate\n")
            for args, message in [
                (["--tls-cert", "/nonexistent.pem"], "cannot read /nonexistent.pem: "),
                (["--tls-cert", junk], "cannot load the TLS certificate or key: "),
                (["--tls-key", junk], "--tls-key needs --tls-cert"),
            ]:
                with self.subTest(args=args):
                    result = self.run_ws13("serve", "--port", "0", *args)
                    assert result.returncode == 2
                    self.assert_one_line_error(result.stderr)
                    assert result.stderr.startswith(f"ws13: error: {message}"), result.stderr


def metric_samples(port: int, path: str = "/metrics") -> dict[tuple[str, tuple[Any, ...]], float]:
    """GET the metrics and parse them with prometheus_client's own parser."""
    status, content_type, body = http_get(port, path)
    assert status == 200, body
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


async def echo_workload(port: int, closes: list[int], messages: list[str | bytes]) -> None:
    """One connection per close code: each message sent and its echo read, then that close."""
    for code in closes:
        async with connect(f"ws://127.0.0.1:{port}/echo", compression=None) as ws:
            for message in messages:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.close(code)
    status = None
    try:
        await connect(f"ws://127.0.0.1:{port}/no-such-path")
    except InvalidStatus as exc:
        status = exc.response.status_code
    assert status == 404


async def hub_workload(port: int, subscribers: int) -> None:
    """``subscribers`` hub clients on channel news; another publishes one message to them."""
    url = f"ws://127.0.0.1:{port}/hub"
    clients = [HubClient(url) for _ in range(subscribers)]
    publisher = HubClient(url)
    try:
        for client in [*clients, publisher]:
            await client.connect()
        subscriptions = [await client.subscribe("news") for client in clients]
        await publisher.publish("news", "extra!")
        for subscription in subscriptions:
            message = await asyncio.wait_for(subscription.get(), TIMEOUT)
            assert getattr(message, "data", None) == "extra!", message
    finally:
        for client in [*clients, publisher]:
            await client.close()


class ServeMetricsTests(CLITestCase):
    def test_metrics_match_the_workload(self) -> None:
        _, port = self.start_server("--metrics", "--hub-ticker", "0")
        closes = [1000, 4001]
        messages: list[str | bytes] = ["hello", b"\x00" * 300, "z" * 1000]
        asyncio.run(echo_workload(port, closes, messages))
        deadline = time.monotonic() + TIMEOUT
        # The server folds a connection in when it is lost, a moment after
        # the client saw its close.
        while (samples := metric_samples(port))["ws13_connections", (("state", "open"),)]:
            assert time.monotonic() < deadline, samples
            time.sleep(0.02)
        total = len(closes) * len(messages)
        assert samples["ws13_received_messages_total", ()] == total
        assert samples["ws13_sent_messages_total", ()] == total
        accepted = samples["ws13_handshakes_total", (("outcome", "accepted"), ("status", "101"))]
        assert accepted == len(closes)
        assert samples["ws13_handshakes_total", (("outcome", "rejected"), ("status", "404"))] == 1
        for code, label in zip(closes, ["1000", "4xxx"], strict=True):
            assert samples["ws13_closes_received_total", (("code", label),)] == 1, code
            assert samples["ws13_closes_sent_total", (("code", label),)] == 1, code
        # Each message came masked (6 or 8 bytes of header) and went back
        # unmasked (2 or 4): the payloads were 5, 300 and 1,000 bytes.
        payloads = (5 + 300 + 1000) * len(closes)
        assert samples["ws13_received_bytes_total", ()] > payloads + (6 + 8 + 8) * len(closes)
        assert samples["ws13_sent_bytes_total", ()] > payloads + (2 + 4 + 4) * len(closes)
        # The global registry: the process's own metrics come along.
        assert ("process_resident_memory_bytes", ()) in samples
        assert (
            samples[
                "ws13_info",
                (("speedups", "c" if USING_SPEEDUPS else "python"), ("version", __version__)),
            ]
            == 1
        )

        asyncio.run(hub_workload(port, subscribers=3))
        samples = metric_samples(port)
        assert samples["ws13_hub_publishes_total", ()] == 1
        assert samples["ws13_hub_deliveries_total", ()] == 3
        assert samples["ws13_hub_backplane_up", ()] == 1
        # Earlier scrapes count as plain HTTP answers.
        assert samples["ws13_handshakes_total", (("outcome", "http"), ("status", "200"))] >= 1

    def test_metrics_path(self) -> None:
        _, port = self.start_server("--metrics", "--metrics-path", "/stats", "--hub-ticker", "0")
        assert ("ws13_connections_accepted_total", ()) in metric_samples(port, "/stats")
        assert http_get(port, "/metrics")[0] == 404

    def test_no_metrics_without_the_option(self) -> None:
        _, port = self.start_server()
        assert http_get(port, "/metrics")[0] == 404

    def test_bad_metrics_options(self) -> None:
        for args, message in [
            (["--metrics-path", "/m"], "--metrics-path needs --metrics"),
            (
                ["--metrics", "--metrics-path", "m"],
                "--metrics-path m: must start with / and have no query",
            ),
            (
                ["--metrics", "--metrics-path", "/echo"],
                "--metrics-path /echo: that path is already served",
            ),
            (
                ["--metrics", "--metrics-path", "/hub"],
                "--metrics-path /hub: that path is already served",
            ),
        ]:
            with self.subTest(args=args):
                result = self.run_ws13("serve", "--port", "0", *args)
                assert result.returncode == 2
                self.assert_one_line_error(result.stderr, message)

    def test_metrics_without_prometheus_client(self) -> None:
        # sys.modules[name] = None is how Python spells "this module can't be imported".
        code = (
            "import sys; sys.modules['prometheus_client'] = None; from ws13.cli import main; "
            "sys.exit(main(['serve', '--port', '0', '--metrics']))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT
        )
        assert result.returncode == 2
        self.assert_one_line_error(
            result.stderr, "--metrics needs prometheus_client: pip install 'ws13[metrics]'"
        )


class ServeJSONLogTests(CLITestCase):
    def test_every_line_is_json(self) -> None:
        server, port = self.start_server("--log-format", "json", "--metrics", "--hub-ticker", "0")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="hi\n")
        assert result.returncode == 0
        assert self.stop_server(server) == 0
        records = [json.loads(line) for line in self.stderr_of(server).splitlines()]
        for record in records:
            assert {"time", "level", "logger", "message"} <= record.keys(), record
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record
        events = {record.get("event"): record for record in records}
        assert events["listening"]["url"] == f"ws://127.0.0.1:{port}/echo"
        assert events["metrics"]["path"] == "/metrics"
        opened, closed = events["open"], events["close"]
        assert (opened["level"], opened["logger"]) == ("info", "ws13.serve")
        assert re.fullmatch(r"127\.0\.0\.1:\d+", opened["remote"]), opened
        assert opened["path"] == "/echo"
        assert closed["connection"] == opened["connection"]
        assert closed["remote"] == opened["remote"]
        assert closed["close_code"] == 1000
        assert closed["duration"] >= 0
        assert "shutdown" in events

    def test_errors_are_json_too(self) -> None:
        result = self.run_ws13("serve", "--log-format", "json", "--port", "70000")
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        record = json.loads(line)
        assert (record["level"], record["event"]) == ("error", "error")
        assert record["message"] == "--port 70000: must be between 0 and 65535"

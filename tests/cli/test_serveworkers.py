"""Tests for ``ws13 serve --workers N``, run as real processes on loopback."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from tests.cli.helpers import TIMEOUT, CLITestCase
from tests.utils import MS, free_port
from ws13.asyncio import connect
from ws13.asyncio.client import ClientConnection
from ws13.cli.serveworkers import parse_workers, worker_path
from ws13.exceptions import ConnectionClosed

#: Connections tried before giving up on reaching every worker: the kernel
#: spreads them by a hash of the addresses, so two workers are seen within a
#: few; 64 misses have a chance of 2**-63.
ATTEMPTS = 64


def free_ports() -> tuple[int, int]:
    """A free port whose next one is free too, and another free port."""
    while True:
        base = free_port()
        other = free_port()
        if other not in (base, base + 1):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
            return base, other


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def health_pids(port: int, count: int) -> dict[int, int]:
    """GET /health until ``count`` workers answered: their index → pid."""
    seen: dict[int, int] = {}
    for _ in range(ATTEMPTS):
        status, headers, body = http_get(port, "/health")
        assert status == 200, body
        health = json.loads(body)
        assert headers["Ws13-Worker"] == f"{health['worker']} pid={health['pid']}"
        seen[health["worker"]] = health["pid"]
        if len(seen) == count:
            return seen
    raise AssertionError(f"only workers {sorted(seen)} answered in {ATTEMPTS} requests")


async def connect_to_each(url: str, count: int, **kwargs: Any) -> dict[int, ClientConnection]:
    """One open connection per worker (closing the extra ones): index → connection."""
    found: dict[int, ClientConnection] = {}
    for _ in range(ATTEMPTS):
        connection = await connect(url, open_timeout=TIMEOUT, **kwargs)
        assert connection.response is not None
        index = int(connection.response.headers["Ws13-Worker"].split()[0])
        if index in found:
            await connection.close()
        else:
            found[index] = connection
        if len(found) == count:
            return found
    raise AssertionError(f"only workers {sorted(found)} accepted in {ATTEMPTS} connections")


async def recv_op(connection: ClientConnection, op: str, **match: Any) -> dict[str, Any]:
    """The next hub message whose op is ``op`` and members ``match`` (others skipped)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = json.loads(await connection.recv())
            if message["op"] == op and match.items() <= message.items():
                return message  # type: ignore[no-any-return]


class ServeWorkersTests(CLITestCase):
    def start_server(self, *args: str, host: str = "127.0.0.1") -> tuple[Any, int]:
        """``ws13 serve ARGS``, once the parent says every worker serves."""
        if "--port" in args:
            port = int(args[args.index("--port") + 1])
            server = self.start("serve", *args, stdout=subprocess.DEVNULL)
        else:
            server, port = super().start_server(*args, host=host)
        deadline = time.monotonic() + TIMEOUT
        while "ws13 serving on" not in self.stderr_of(server):
            assert server.poll() is None, self.stderr_of(server)
            assert time.monotonic() < deadline, self.stderr_of(server)
            time.sleep(20 * MS)
        return server, port

    def test_both_workers_answer_on_one_port(self) -> None:
        server, port = self.start_server("--workers", "2", "--hub-ticker", "0")
        pids = health_pids(port, 2)
        assert sorted(pids) == [0, 1]
        assert server.pid not in pids.values()
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/echo", input="hi\n")
        assert (result.returncode, result.stdout) == (0, "hi\n")
        assert self.stop_server(server) == 0
        stderr = self.stderr_of(server)
        assert f"ws13 serving on ws://127.0.0.1:{port}/echo" in stderr
        assert "worker 0: serving" in stderr
        assert "worker 1: serving" in stderr

    def test_a_killed_worker_is_restarted(self) -> None:
        server, port = self.start_server("--workers", "2", "--hub-ticker", "0")
        pids = health_pids(port, 2)
        os.kill(pids[1], signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert time.monotonic() < deadline, "worker 1 was not restarted"
            try:
                health = json.loads(http_get(port, "/health")[2])
            except ConnectionError:
                # Those queued on the killed worker's socket are reset
                # (unless sysctl net.ipv4.tcp_migrate_req=1): try again.
                continue
            if health["worker"] == 1:
                break
            time.sleep(5 * MS)
        assert health["pid"] != pids[1]
        again = health_pids(port, 2)
        assert again[0] == pids[0]
        assert self.stop_server(server) == 0
        assert "worker 1 was killed by SIGKILL; restarting it in 0.5 s" in self.stderr_of(server)

    def test_sigterm_closes_connections_with_1001(self) -> None:
        server, port = self.start_server("--workers", "2", "--hub-ticker", "0")

        async def run() -> list[int | None]:
            connections = await connect_to_each(f"ws://127.0.0.1:{port}/echo", 2)
            server.send_signal(signal.SIGTERM)
            codes = []
            for connection in connections.values():
                with self.assertRaises(ConnectionClosed):
                    async with asyncio.timeout(TIMEOUT):
                        await connection.recv()
                codes.append(connection.close_code)
            return codes

        assert asyncio.run(run()) == [1001, 1001]
        assert server.wait(timeout=TIMEOUT) == 0
        assert "SIGTERM: stopping" in self.stderr_of(server)

    def test_one_chat_and_history_across_workers(self) -> None:
        server, port = self.start_server("--workers", "2", "--hub-ticker", "0")

        async def run() -> None:
            hub = await connect_to_each(
                f"ws://127.0.0.1:{port}/hub?nick=ann", 2, subprotocols=["ws13.hub.v1"]
            )
            publisher, subscriber = hub[0], hub[1]
            try:
                await self.chat(publisher, subscriber)
            finally:
                for connection in hub.values():
                    await connection.close()

        asyncio.run(run())
        assert self.stop_server(server) == 0

    async def chat(self, publisher: ClientConnection, subscriber: ClientConnection) -> None:
        """Publish on worker 0; subscribe with history and read live on worker 1."""

        async def publish(request_id: int, data: str) -> None:
            request = {"op": "publish", "id": request_id, "channel": "chat:x", "data": data}
            await publisher.send(json.dumps(request))
            await recv_op(publisher, "reply", id=request_id)

        await publish(1, "early")
        request = {"op": "subscribe", "id": 2, "channel": "chat:x", "history": 10}
        await subscriber.send(json.dumps(request))
        await recv_op(subscriber, "reply", id=2)
        kept = await recv_op(subscriber, "message")
        assert (kept["offset"], kept["data"]) == (1, "early")
        await publish(3, "live")
        live = await recv_op(subscriber, "message")
        assert (live["offset"], live["data"], live["epoch"]) == (2, "live", kept["epoch"])
        request = {"op": "history", "id": 4, "channel": "chat:x", "limit": 10}
        await subscriber.send(json.dumps(request))
        reply = await recv_op(subscriber, "reply", id=4)
        assert [m["data"] for m in reply["result"]["messages"]] == ["early", "live"]

    def test_bad_worker_counts(self) -> None:
        result = self.run_ws13("serve", "--workers", "0")
        assert result.returncode == 2
        self.assert_one_line_error(result.stderr, "--workers 0: must be 1 or more")
        for value, message in [
            ("-2", "--workers -2: must be 1 or more"),
            ("many", "--workers many: must be a number of processes or 'auto'"),
            ("", "--workers : must be a number of processes or 'auto'"),
        ]:
            with self.assertRaises(ValueError) as raised:
                parse_workers(value)
            assert str(raised.exception) == message
        assert parse_workers("auto") == os.cpu_count()
        assert parse_workers(" 3") == 3

    def test_metrics_needs_a_port_per_worker(self) -> None:
        result = self.run_ws13("serve", "--workers", "2", "--metrics")
        assert result.returncode == 2
        self.assert_one_line_error(
            result.stderr,
            "--metrics with --workers needs --metrics-port PORT: worker N serves its "
            "metrics on PORT+N",
        )
        result = self.run_ws13("serve", "--metrics-port", "9000")
        assert result.returncode == 2
        self.assert_one_line_error(result.stderr, "--metrics-port is for --workers 2 or more")

    def test_metrics_and_pcap_per_worker(self) -> None:
        metrics_port, port = free_ports()
        directory = tempfile.mkdtemp(prefix="ws13-workers-")
        capture = os.path.join(directory, "cap.pcapng")
        server, port = self.start_server(
            "--workers", "2", "--hub-ticker", "0", "--metrics",
            "--metrics-port", str(metrics_port), "--pcap", capture, "--port", str(port),
        )  # fmt: skip
        health_pids(port, 2)
        for index in (0, 1):
            for _ in range(ATTEMPTS):  # the second worker may still be starting
                try:
                    status, _, body = http_get(metrics_port + index, "/metrics")
                    break
                except ConnectionRefusedError:
                    time.sleep(20 * MS)
            assert status == 200
            assert b"ws13_connections_accepted_total" in body
            assert http_get(metrics_port + index, "/")[0] == 404
        assert http_get(port, "/metrics")[0] == 404
        assert self.stop_server(server) == 0
        assert sorted(os.listdir(directory)) == ["cap.worker0.pcapng", "cap.worker1.pcapng"]

    def test_a_port_in_use_fails_once(self) -> None:
        server, port = self.start_server()
        result = self.run_ws13("serve", "--workers", "2", "--port", str(port))
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, f"cannot listen on 127.0.0.1:{port}: Address already in use"
        )
        assert self.stop_server(server) == 0

    def test_worker_path(self) -> None:
        assert worker_path("cap.pcapng", 3) == "cap.worker3.pcapng"
        assert worker_path("/tmp/dump", 0) == "/tmp/dump.worker0"

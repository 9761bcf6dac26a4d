"""Tests for ``ws13.metrics``: a scripted workload, then ``/metrics`` parsed by its parser."""

from __future__ import annotations

import asyncio
import socket
import threading
import unittest
from typing import Any

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from tests.hub.helpers import wait_until
from tests.utils import MS
from ws13.asyncio import connect, serve
from ws13.asyncio.server import ServerConnection
from ws13.exceptions import InvalidStatus
from ws13.http11 import Request, Response
from ws13.hub import SUBPROTOCOL, Client, Hub
from ws13.metrics import Metrics, close_code_label

TIMEOUT = 10_000 * MS

#: One raw HTTP request refused with 403 by ``refuse_forbidden``: its bytes are known.
FORBIDDEN = (
    b"GET /forbidden HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
#: What each connection sends (and gets back): text and binary of known sizes.
MESSAGES: list[str | bytes] = ["x" * 10, b"\x01" * 200, "é" * 50, b"\x02" * 70_000]
#: Each connection's close code, and the label it counts under.
CLOSES = [(1000, "1000"), (4001, "4xxx"), (3003, "3xxx")]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def http_get(port: int, path: str, accept: str | None = None) -> tuple[bytes, bytes, bytes]:
    """GET ``path`` over a raw socket: (the request sent, the head, the body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if accept is not None:
        request += f"Accept: {accept}\r\n"
    data = (request + "\r\n").encode()
    writer.write(data)
    response = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return data, head, body


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request``; return everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    response = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    return response


def refuse_forbidden(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/forbidden":
        return connection.respond(403, "Forbidden\n")
    return None


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def wait_until_idle(*servers: Any) -> None:
    """Wait until every connection of ``servers`` is lost (and so folded into the totals)."""
    await wait_until(lambda: not any(server.connections for server in servers))


class CloseCodeLabelTests(unittest.TestCase):
    def test_labels(self) -> None:
        cases = {
            None: "1006",
            1000: "1000",
            1015: "1015",
            3000: "3xxx",
            4999: "4xxx",
            2999: "other",
        }
        for code, label in cases.items():
            self.assertEqual(close_code_label(code), label)


class ServeMetricsTests(unittest.IsolatedAsyncioTestCase):
    async def test_counters_match_the_workload(self) -> None:
        metrics = Metrics()
        async with serve(
            echo, "127.0.0.1", 0, metrics=metrics, process_request=metrics.mount(refuse_forbidden)
        ) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            sent = received = 0
            for code, _ in CLOSES:
                async with connect(url, compression=None) as ws:
                    for message in MESSAGES:
                        await ws.send(message)
                        self.assertEqual(await ws.recv(), message)
                    await ws.close(code)
                sent += ws.bytes_sent
                received += ws.bytes_received
                self.assertEqual((ws.messages_sent, ws.messages_received), (4, 4))
            with self.assertRaises(InvalidStatus):
                await connect(url + "forbidden")
            refused = await raw_exchange(server.port, FORBIDDEN)
            self.assertTrue(refused.startswith(b"HTTP/1.1 403 "))
            await wait_until_idle(server)
            request, head, body = await http_get(server.port, "/metrics")
        self.assertIn(b"Content-Type: text/plain; version=0.0.4; charset=utf-8", head)
        samples = parse(body.decode())
        n, m = len(CLOSES), len(MESSAGES)
        self.assertEqual(samples["ws13_received_messages_total", ()], n * m)
        self.assertEqual(samples["ws13_sent_messages_total", ()], n * m)
        # The refused ws13 client's bytes aren't known here: the raw one's are.
        # What the server read includes the scrape's own request.
        received_by_server = samples["ws13_received_bytes_total", ()]
        sent_by_server = samples["ws13_sent_bytes_total", ()]
        self.assertGreater(received_by_server, sent + len(FORBIDDEN) + len(request))
        self.assertGreater(sent_by_server, received + len(refused))
        self.assertEqual(
            samples["ws13_handshakes_total", (("outcome", "accepted"), ("status", "101"))], n
        )
        self.assertEqual(
            samples["ws13_handshakes_total", (("outcome", "rejected"), ("status", "403"))], 2
        )
        self.assertEqual(samples["ws13_connections_accepted_total", ()], n + 3)
        for _, label in CLOSES:
            self.assertEqual(samples["ws13_closes_received_total", (("code", label),)], 1)
            # The server answers a Close with its code.
            self.assertEqual(samples["ws13_closes_sent_total", (("code", label),)], 1)
        self.assertEqual(samples["ws13_connections", (("state", "open"),)], 0)
        self.assertEqual(samples["ws13_connections", (("state", "connecting"),)], 1)  # the scrape
        self.assertEqual(samples["ws13_keepalive_timeouts_total", ()], 0)

    async def test_bytes_are_exact(self) -> None:
        # Only ws13 clients, whose own counters say what went each way.
        metrics = Metrics()
        async with serve(echo, "127.0.0.1", 0, metrics=metrics) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            clients = []
            for _ in range(3):
                async with connect(url, compression=None) as ws:
                    for message in MESSAGES:
                        await ws.send(message)
                        await ws.recv()
                clients.append(ws)
            await wait_until_idle(server)
            samples = parse(metrics.exposition()[0].decode())
        self.assertEqual(
            samples["ws13_received_bytes_total", ()], sum(ws.bytes_sent for ws in clients)
        )
        self.assertEqual(
            samples["ws13_sent_bytes_total", ()], sum(ws.bytes_received for ws in clients)
        )
        # Frames: a masked client frame has 6, 8 or 14 bytes of header
        # (payloads of 10, 200, 100 and 70,000 bytes), then the Close frame
        # with its 2-byte code.
        payloads = sum(len(m.encode() if isinstance(m, str) else m) for m in MESSAGES)
        frames = payloads + 6 + 8 + 6 + 14 + (6 + 2)
        request = len(clients[0].request.serialize()) if clients[0].request else 0
        self.assertEqual(clients[0].bytes_sent, request + frames)

    async def test_connections_while_open(self) -> None:
        metrics = Metrics()
        async with serve(echo, "127.0.0.1", 0, metrics=metrics) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with connect(url) as one, connect(url) as two:
                await one.send("a")
                await two.send("b")
                await one.recv()
                await two.recv()
                samples = parse(metrics.exposition()[0].decode())
                self.assertEqual(samples["ws13_connections", (("state", "open"),)], 2)
                self.assertEqual(samples["ws13_received_messages_total", ()], 2)
                self.assertEqual(
                    samples["ws13_handshakes_total", (("outcome", "accepted"), ("status", "101"))],
                    2,
                )
        samples = parse(metrics.exposition()[0].decode())
        self.assertEqual(samples["ws13_connections", (("state", "open"),)], 0)
        self.assertEqual(samples["ws13_received_messages_total", ()], 2)

    async def test_server_close_codes_and_no_close(self) -> None:
        async def close_with_policy(ws: ServerConnection) -> None:
            await ws.recv()
            await ws.close(1008, "no")

        metrics = Metrics()
        async with serve(close_with_policy, "127.0.0.1", 0, metrics=metrics) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hi")
                await ws.wait_closed()
            # A client that vanishes without a Close frame.
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                assert ws.transport is not None
                ws.transport.abort()
            await wait_until_idle(server)
        samples = parse(metrics.exposition()[0].decode())
        self.assertEqual(samples["ws13_closes_sent_total", (("code", "1008"),)], 1)
        self.assertEqual(samples["ws13_closes_received_total", (("code", "1008"),)], 1)
        self.assertEqual(samples["ws13_closes_received_total", (("code", "1006"),)], 1)

    async def test_keepalive_and_open_timeouts(self) -> None:
        metrics = Metrics()
        async with serve(
            echo,
            "127.0.0.1",
            0,
            metrics=metrics,
            ping_interval=50 * MS,
            ping_timeout=50 * MS,
            open_timeout=50 * MS,
        ) as server:
            # A connection that never sends its handshake request.
            _, idle = await asyncio.open_connection("127.0.0.1", server.port)
            # A client that stops reading: its pong never comes.
            ws = await connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None)
            assert ws.transport is not None
            ws.transport.pause_reading()
            await wait_until_idle(server)
            idle.close()
            ws.transport.abort()
        samples = parse(metrics.exposition()[0].decode())
        self.assertEqual(samples["ws13_open_timeouts_total", ()], 1)
        self.assertEqual(samples["ws13_keepalive_timeouts_total", ()], 1)
        self.assertEqual(samples["ws13_closes_sent_total", (("code", "1011"),)], 1)

    async def test_write_pauses(self) -> None:
        async def flood(ws: ServerConnection) -> None:
            # Small socket buffers: the write buffer fills after a few KiB.
            ws.transport.get_extra_info("socket").setsockopt(  # type: ignore[union-attr]
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
            )
            for _ in range(64):
                await ws.send(b"\x00" * 65536)

        metrics = Metrics()
        async with serve(flood, "127.0.0.1", 0, metrics=metrics, write_limit=4096) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/", max_size=None) as ws:
                assert ws.transport is not None
                ws.transport.pause_reading()  # until the server's buffer fills
                ws.transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
                )
                await wait_until(lambda: any(c.write_pauses for c in server.connections))
                ws.transport.resume_reading()
                for _ in range(64):
                    await ws.recv()
            await wait_until_idle(server)
        samples = parse(metrics.exposition()[0].decode())
        self.assertGreaterEqual(samples["ws13_write_pauses_total", ()], 1)

    async def test_openmetrics(self) -> None:
        metrics = Metrics()
        async with serve(
            echo, "127.0.0.1", 0, metrics=metrics, process_request=metrics.mount()
        ) as server:
            _, head, body = await http_get(
                server.port, "/metrics?x=1", accept="application/openmetrics-text; version=1.0.0"
            )
        self.assertIn(b"Content-Type: application/openmetrics-text", head)
        self.assertTrue(body.endswith(b"# EOF\n"))

    async def test_mount_passes_other_requests_on(self) -> None:
        async def not_found(connection: ServerConnection, request: Request) -> Response | None:
            return connection.respond(404, "Not Found\n") if request.path == "/nope" else None

        metrics = Metrics()
        async with serve(
            echo,
            "127.0.0.1",
            0,
            metrics=metrics,
            process_request=metrics.mount(not_found, path="/m"),
        ) as server:
            _, head, _ = await http_get(server.port, "/nope")
            self.assertTrue(head.startswith(b"HTTP/1.1 404 "))
            _, head, body = await http_get(server.port, "/m")
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "))
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("still a WebSocket server")
                await ws.recv()
        samples = parse(body.decode())
        self.assertEqual(
            samples["ws13_handshakes_total", (("outcome", "rejected"), ("status", "404"))], 1
        )
        with self.assertRaises(ValueError):
            metrics.mount(path="metrics")

    async def test_asgi_app(self) -> None:
        metrics = Metrics()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/metrics",
            "headers": [],
            "query_string": b"",
        }
        await metrics.asgi_app()(scope, receive, send)
        self.assertEqual(sent[0]["status"], 200)
        self.assertIn(b"ws13_connections_accepted_total 0.0", sent[1]["body"])


class RegistryTests(unittest.IsolatedAsyncioTestCase):
    async def test_global_registry_and_a_scrape_from_another_thread(self) -> None:
        metrics = Metrics(registry=prometheus_client.REGISTRY)
        self.addCleanup(prometheus_client.REGISTRY.unregister, metrics)
        self.assertIs(metrics.registry, prometheus_client.REGISTRY)
        with self.assertRaises(ValueError):  # one Metrics per registry
            Metrics(registry=prometheus_client.REGISTRY)
        async with (
            serve(echo, "127.0.0.1", 0, metrics=metrics) as server,
            connect(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            await ws.send("from the loop")
            await ws.recv()
            # prometheus_client's start_http_server scrapes from its own thread.
            scraped: list[bytes] = []
            thread = threading.Thread(
                target=lambda: scraped.append(prometheus_client.generate_latest())
            )
            thread.start()
            await asyncio.to_thread(thread.join, TIMEOUT)
        samples = parse(scraped[0].decode())
        self.assertEqual(samples["ws13_received_messages_total", ()], 1)
        self.assertIn(("process_cpu_seconds_total", ()), samples)


class HubMetricsTests(unittest.IsolatedAsyncioTestCase):
    async def test_publish_to_k_subscribers(self) -> None:
        k = 3
        metrics = Metrics()
        async with (
            Hub(metrics=metrics) as hub,
            serve(
                hub.handler,
                "127.0.0.1",
                0,
                subprotocols=[SUBPROTOCOL],
                metrics=metrics,
                process_request=metrics.mount(hub.process_request),
            ) as server,
        ):
            url = f"ws://127.0.0.1:{server.port}/"
            clients = [Client(url) for _ in range(k)]
            for client in clients:
                await client.connect()
            subscriptions = [await client.subscribe("news") for client in clients]
            await hub.publish("news", {"n": 1})
            for subscription in subscriptions:
                message = await asyncio.wait_for(subscription.get(), TIMEOUT)
                self.assertEqual(message.data, {"n": 1})  # type: ignore[union-attr]
            _, _, body = await http_get(server.port, "/metrics")
            for client in clients:
                await client.close()
        samples = parse(body.decode())
        self.assertEqual(samples["ws13_hub_publishes_total", ()], 1)
        self.assertEqual(samples["ws13_hub_deliveries_total", ()], k)
        self.assertEqual(samples["ws13_hub_connections", ()], k)
        self.assertEqual(samples["ws13_hub_channels", ()], 1)
        self.assertEqual(samples["ws13_hub_subscribers", ()], k)
        self.assertEqual(samples["ws13_hub_backplane_up", ()], 1)
        self.assertEqual(samples["ws13_hub_backplane_lag_seconds_count", ()], 1)
        self.assertGreaterEqual(samples["ws13_hub_backplane_lag_seconds_sum", ()], 0)
        self.assertEqual(samples["ws13_hub_slow_consumer_drops_total", ()], 0)
        # The hub's own WebSocket traffic is in the connection metrics too.
        self.assertEqual(
            samples["ws13_handshakes_total", (("outcome", "accepted"), ("status", "101"))], k
        )

    async def test_no_hub_metrics_without_a_hub(self) -> None:
        samples = parse(Metrics().exposition()[0].decode())
        self.assertNotIn(("ws13_hub_channels", ()), samples)

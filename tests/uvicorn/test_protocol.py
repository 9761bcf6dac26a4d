"""ws13.uvicorn.WebSocketProtocol behind a real uvicorn, with uvicorn's own protocol as control.

Each class starts one uvicorn process (``server.Uvicorn``) serving the
Starlette or FastAPI app of ``apps.py`` under ``--http h11`` or
``--http httptools``; the same tests run against ws13's protocol and
against uvicorn's ``websockets-sansio`` protocol, the control. Clients are
ws13's asyncio client and, for a client that never answers pings, a raw
socket. Where the two protocols differ on purpose, the test says so (see
docs/uvicorn.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import tempfile
import unittest
from typing import ClassVar
from urllib.request import urlopen

import trustme
from prometheus_client.parser import text_string_to_metric_families

from ws13.asyncio import connect
from ws13.client import ClientProtocol
from ws13.exceptions import ConnectionClosed, InvalidStatus
from ws13.frames import Frame, Opcode
from ws13.protocol import OPEN
from ws13.uri import parse_uri

from ..utils import MS
from .server import CONTROL, WS13, Uvicorn, recorded

TIMEOUT = 10_000 * MS
MAX_SIZE = 2**18
#: Keepalive short enough for the ping-timeout test to take a second or so,
#: with room for a busy machine's clients to answer in time.
PING = ("--ws-ping-interval", str(300 * MS), "--ws-ping-timeout", str(1000 * MS))
ARGS = ("--ws-max-size", str(MAX_SIZE), *PING)

STARLETTE = "tests.uvicorn.apps:starlette_app"
FASTAPI = "tests.uvicorn.apps:fastapi_app"


class UvicornCase(unittest.IsolatedAsyncioTestCase):
    """One uvicorn per class: ``ws``, ``http`` and ``app`` say which."""

    ws: ClassVar[str] = WS13
    http: ClassVar[str] = "httptools"
    app: ClassVar[str] = STARLETTE
    server: ClassVar[Uvicorn]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Uvicorn(cls.app, ws=cls.ws, http=cls.http, args=ARGS)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.close()

    def url(self, path: str) -> str:
        return self.server.url(path)


class BehaviourTests(UvicornCase):
    async def asyncSetUp(self) -> None:
        self.timeout = asyncio.timeout(TIMEOUT)
        await self.timeout.__aenter__()

    async def asyncTearDown(self) -> None:
        await self.timeout.__aexit__(None, None, None)

    async def test_echo_text_and_binary_up_to_max_size(self) -> None:
        # Uncompressed: compressed, random bytes grow a little, and the
        # control refuses that frame (next test).
        async with connect(self.url("/echo"), max_size=None, compression=None) as ws:
            for size in (0, 1, 125, 126, 65535, 65536, MAX_SIZE):
                await ws.send("é" * (size // 2) + "a" * (size % 2))
                self.assertEqual(await ws.recv(), "é" * (size // 2) + "a" * (size % 2))
                data = os.urandom(size)
                await ws.send(data)
                self.assertEqual(await ws.recv(), data)

    async def test_echo_compressed(self) -> None:
        async with connect(self.url("/echo")) as ws:
            self.assertIn("permessage-deflate", ws.response.headers["Sec-WebSocket-Extensions"])
            for size in (10, 1000, MAX_SIZE):
                await ws.send("ws13 " * (size // 5))
                self.assertEqual(await ws.recv(), "ws13 " * (size // 5))
                await ws.send(b"\x00\x01" * (size // 2))
                self.assertEqual(await ws.recv(), b"\x00\x01" * (size // 2))

    async def test_incompressible_message_at_max_size(self) -> None:
        # ws13 bounds the decompressed message by ws_max_size; websockets-sansio
        # checks the compressed frame's wire size too (docs/uvicorn.md, "Differences").
        async with connect(self.url("/echo"), max_size=None) as ws:
            data = os.urandom(MAX_SIZE)
            await ws.send(data)
            if self.ws == WS13:
                self.assertEqual(await ws.recv(), data)
            else:
                with self.assertRaises(ConnectionClosed):
                    await ws.recv()
                self.assertEqual(ws.close_code, 1009)

    async def test_message_above_max_size_closes_with_1009(self) -> None:
        async with connect(self.url("/echo?key=big"), max_size=None) as ws:
            await ws.send(b"x" * (MAX_SIZE + 1))
            with self.assertRaises(ConnectionClosed):
                await ws.recv()
            self.assertEqual(ws.close_code, 1009)
        self.assertEqual((await recorded(self.server, "big"))["code"], 1009)

    async def test_many_messages_in_flight(self) -> None:
        # More than ws_max_queue (32) at once: reading pauses and resumes.
        async with connect(self.url("/echo")) as ws:
            for i in range(200):
                await ws.send(f"message {i}")
            for i in range(200):
                self.assertEqual(await ws.recv(), f"message {i}")

    async def test_subprotocol_negotiation(self) -> None:
        async with connect(self.url("/scope"), subprotocols=["chat.v1", "chat.v2"]) as ws:
            self.assertEqual(ws.subprotocol, "chat.v2")
            scope = json.loads(await ws.recv())
            self.assertEqual(ws.response.headers["x-accepted"], "yes")
        self.assertEqual(scope["subprotocols"], ["chat.v1", "chat.v2"])

    async def test_no_subprotocol(self) -> None:
        async with connect(self.url("/scope"), subprotocols=["other"]) as ws:
            self.assertIsNone(ws.subprotocol)
            await ws.recv()

    async def test_scope(self) -> None:
        async with connect(
            self.url("/scope?a=1&b=%20"), additional_headers=[("X-Custom", "Value é")]
        ) as ws:
            scope = json.loads(await ws.recv())
            local = ws.local_address
        self.assertEqual(scope["type"], "websocket")
        self.assertEqual(scope["asgi"], {"version": "3.0", "spec_version": "2.4"})
        self.assertEqual(scope["http_version"], "1.1")
        self.assertEqual(scope["scheme"], "ws")
        self.assertEqual(scope["server"], ["127.0.0.1", self.server.port])
        self.assertEqual(scope["client"], ["127.0.0.1", local[1]])
        self.assertEqual(scope["root_path"], "")
        self.assertEqual(scope["path"], "/scope")
        self.assertEqual(scope["raw_path"], "/scope")
        self.assertEqual(scope["query_string"], "a=1&b=%20")
        # Header values are the bytes sent (here UTF-8), shown as Latin-1.
        self.assertIn(["x-custom", "Value é".encode().decode("latin-1")], scope["headers"])
        self.assertIn(["host", f"127.0.0.1:{self.server.port}"], scope["headers"])
        self.assertTrue(all(name == name.lower() for name, _ in scope["headers"]))
        self.assertEqual(scope["extensions"], {"websocket.http.response": {}})
        self.assertEqual(scope["state"], {})

    async def test_rejection_before_accept_is_403(self) -> None:
        with self.assertRaises(InvalidStatus) as raised:
            async with connect(self.url("/reject")):
                pass
        self.assertEqual(raised.exception.response.status_code, 403)

    async def test_denial_response(self) -> None:
        with self.assertRaises(InvalidStatus) as raised:
            async with connect(self.url("/deny")):
                pass
        response = raised.exception.response
        self.assertEqual(response.status_code, 418)
        self.assertEqual(response.headers["x-reason"], "teapot")
        self.assertEqual(response.body, b"no tea here\n")

    async def test_server_closes_with_code_and_reason(self) -> None:
        async with connect(self.url("/close?code=4001&reason=bye%20now")) as ws:
            with self.assertRaises(ConnectionClosed):
                await ws.recv()
        self.assertEqual((ws.close_code, ws.close_reason), (4001, "bye now"))

    async def test_client_closes_with_code_and_reason(self) -> None:
        async with connect(self.url("/echo?key=client-close")) as ws:
            await ws.send("hello")
            await ws.recv()
            await ws.close(4002, "ciao")
        self.assertEqual(
            await recorded(self.server, "client-close"), {"code": 4002, "reason": "ciao"}
        )

    async def test_client_drops_tcp(self) -> None:
        async with connect(self.url("/echo?key=dropped")) as ws:
            await ws.send("hello")
            await ws.recv()
            assert ws.transport is not None
            ws.transport.abort()
        # ASGI: 1005 when no code was received; both protocols say so.
        self.assertEqual((await recorded(self.server, "dropped"))["code"], 1005)

    async def test_handler_returns_without_closing(self) -> None:
        async with connect(self.url("/leave")) as ws:
            with self.assertRaises(ConnectionClosed):
                await ws.recv()
        # ws13 closes properly; uvicorn's protocol drops TCP (docs/uvicorn.md).
        self.assertEqual(ws.close_code, 1000 if self.ws == WS13 else 1006)

    async def test_ping_timeout(self) -> None:
        # A client that reads but never answers: the server's ping goes
        # unanswered and it closes with 1011.
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"))
        client = ClientProtocol(parse_uri(self.url("/echo")), state=OPEN)
        received = await reader.read()  # until the server closes TCP
        writer.close()
        await writer.wait_closed()
        client.receive_data(received)
        events = client.events_received()
        opcodes = [event.opcode for event in events if isinstance(event, Frame)]
        self.assertEqual(opcodes, [Opcode.PING, Opcode.CLOSE])
        assert client.close_rcvd is not None
        self.assertEqual(client.close_rcvd.code, 1011)

    async def test_pings_answered_keep_the_connection_open(self) -> None:
        async with connect(self.url("/echo")) as ws:
            await asyncio.sleep(0.8)  # two pings, each answered
            await ws.send("still here")
            self.assertEqual(await ws.recv(), "still here")

    async def test_invalid_upgrade_is_refused(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        writer.write(
            f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response)
        if self.ws == WS13:
            # Logged as uvicorn's own protocol does, on uvicorn.error at INFO.
            await asyncio.sleep(0.1)
            self.assertIn("opening handshake failed", self.server.output())


class Ws13H11Starlette(BehaviourTests):
    http = "h11"


class Ws13HttptoolsStarlette(BehaviourTests):
    http = "httptools"


class Ws13HttptoolsFastAPI(BehaviourTests):
    http = "httptools"
    app = FASTAPI


class ControlH11Starlette(BehaviourTests):
    ws = CONTROL
    http = "h11"


class ControlHttptoolsFastAPI(BehaviourTests):
    ws = CONTROL
    http = "httptools"
    app = FASTAPI


del BehaviourTests  # only its subclasses run


class SettingsTests(unittest.IsolatedAsyncioTestCase):
    async def test_ws_max_queue_zero_is_no_limit(self) -> None:
        server = Uvicorn(STARLETTE, args=("--ws-max-queue", "0"))
        try:
            async with asyncio.timeout(TIMEOUT), connect(server.url("/echo")) as ws:
                for i in range(100):
                    await ws.send(f"message {i}")
                for i in range(100):
                    self.assertEqual(await ws.recv(), f"message {i}")
            self.assertNotIn("Traceback", server.output())
        finally:
            server.close()

    async def test_uvicorn_run_with_the_class(self) -> None:
        server = Uvicorn(STARLETTE, http="h11", run_with_class=True)
        try:
            async with asyncio.timeout(TIMEOUT), connect(server.url("/echo")) as ws:
                await ws.send("by class")
                self.assertEqual(await ws.recv(), "by class")
        finally:
            server.close()

    async def test_wss_with_uvicorns_ssl_options(self) -> None:
        # uvicorn terminates TLS (--ssl-keyfile/--ssl-certfile); the scope says wss.
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(client_context)
        with tempfile.TemporaryDirectory() as directory:
            key_file, cert_file = f"{directory}/key.pem", f"{directory}/cert.pem"
            cert.private_key_pem.write_to_path(key_file)
            cert.cert_chain_pems[0].write_to_path(cert_file)
            server = Uvicorn(
                STARLETTE, args=("--ssl-keyfile", key_file, "--ssl-certfile", cert_file)
            )
        try:
            url = f"wss://127.0.0.1:{server.port}"
            async with asyncio.timeout(TIMEOUT):
                async with connect(url + "/echo", ssl=client_context) as ws:
                    await ws.send("over TLS")
                    self.assertEqual(await ws.recv(), "over TLS")
                async with connect(url + "/scope", ssl=client_context) as ws:
                    self.assertEqual(json.loads(await ws.recv())["scheme"], "wss")
        finally:
            server.close()


class MetricsTests(unittest.IsolatedAsyncioTestCase):
    """``with_metrics()``: the counters of ws13.metrics, parsed with prometheus_client's parser."""

    async def test_counters_match_the_workload(self) -> None:
        server = Uvicorn("tests.uvicorn.metered:app", ws="tests.uvicorn.metered:Protocol")
        try:
            async with asyncio.timeout(TIMEOUT):
                for _ in range(2):
                    async with connect(server.url("/echo"), compression=None) as ws:
                        for i in range(3):
                            await ws.send(f"message {i}")
                            await ws.recv()
                await recorded(server, "")  # the last /echo's close is recorded
                text = await asyncio.to_thread(
                    lambda: urlopen(f"http://127.0.0.1:{server.port}/metrics/").read().decode()
                )
        finally:
            server.close()
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        # Two /echo connections and the /report one, all closed by the client.
        self.assertEqual(samples[("ws13_connections_accepted_total", ())], 3)
        self.assertEqual(samples[("ws13_received_messages_total", ())], 6)
        self.assertEqual(samples[("ws13_sent_messages_total", ())], 7)  # + the report
        accepted = (("outcome", "accepted"), ("status", "101"))
        self.assertEqual(samples[("ws13_handshakes_total", accepted)], 3)
        self.assertEqual(samples[("ws13_closes_received_total", (("code", "1000"),))], 3)


class ShutdownTests(unittest.IsolatedAsyncioTestCase):
    """SIGTERM / SIGINT to uvicorn: open connections see 1012; uvicorn exits cleanly."""

    async def check_shutdown(self, ws_class: str, http: str, signum: int) -> None:
        server = Uvicorn(STARLETTE, ws=ws_class, http=http)
        try:
            async with asyncio.timeout(TIMEOUT):
                async with (
                    connect(server.url("/echo")) as first,
                    connect(server.url("/echo")) as second,
                ):
                    await first.send("hello")
                    self.assertEqual(await first.recv(), "hello")
                    status = await asyncio.to_thread(server.stop, signum)
                    for ws in (first, second):
                        with self.assertRaises(ConnectionClosed):
                            await ws.recv()
                        self.assertEqual(ws.close_code, 1012)
            # uvicorn 0.55 re-raises SIGTERM once shut down: -15 is its normal exit.
            self.assertIn(status, (0, -signum), server.output())
            self.assertIn("Finished server process", server.output())
            # /late's send after the 1012 raised an OSError, not a RuntimeError.
            self.assertNotIn("Exception in ASGI application", server.output())
        finally:
            server.close()

    async def test_sigterm_ws13_h11(self) -> None:
        await self.check_shutdown(WS13, "h11", signal.SIGTERM)

    async def test_sigint_ws13_httptools(self) -> None:
        await self.check_shutdown(WS13, "httptools", signal.SIGINT)

    async def test_sigterm_control(self) -> None:
        await self.check_shutdown(CONTROL, "httptools", signal.SIGTERM)

"""The hub inside an ASGI app (``ws13.hub.asgi``), under real uvicorn.

One real ``redis-server``, one ``uvicorn examples.fastapi_hub:app`` process
on it (``HUB_TOKEN`` set) and one ``ws13 serve --redis`` node on it, started
once for the module: ``ws13.hub.Client`` and raw connections talk to the
FastAPI example, two headless Chromium tabs chat through its page, and the
two servers share channels through Redis. The rest runs uvicorn in the
test's own event loop, serving a Starlette app, so the tests can publish and
look at the hub directly: the entry points (route, mount, FastAPI-style
``serve``), refusals, the authorize hook's view of the scope, and slow
consumers through ASGI's ``send()``.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket

import ws13
import ws13.hub.asgi
from tests.cli.helpers import ENV, wait_for_port
from tests.interop.browser import Chromium, Page
from tests.utils import free_port
from ws13.asyncio import connect
from ws13.exceptions import ConnectionClosed, InvalidStatus
from ws13.http11 import Request
from ws13.hub import (
    SUBPROTOCOL,
    ChannelOptions,
    Client,
    Hub,
    Policy,
    Principal,
    Refused,
    request_token,
)
from ws13.hub.asgi import HubEndpoint

from .helpers import TIMEOUT, RedisServer, recv_json, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "s3cret"


class Process:
    """A server subprocess on a free loopback port, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [sys.executable, *[arg.format(port=self.port) for arg in args]],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**ENV, **env},
        )
        wait_for_port(self.port, self.process)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=TIMEOUT)
        self.log.close()


redis: RedisServer
example: Process
example_ws13: Process
node: Process

#: ws13's uvicorn protocol, as ``--ws`` takes it.
WS13_PROTOCOL = "ws13.uvicorn:WebSocketProtocol"


def setUpModule() -> None:
    global redis, example, example_ws13, node
    redis = RedisServer()
    unittest.addModuleCleanup(redis.close)
    redis.start()
    example = Process(
        ["-m", "uvicorn", "examples.fastapi_hub:app", "--host", "127.0.0.1", "--port", "{port}"],
        {"WS13_REDIS": redis.url, "HUB_TOKEN": TOKEN},
    )
    unittest.addModuleCleanup(example.stop)
    # The same example under ws13's uvicorn protocol, the one docs/uvicorn.md
    # advises; in memory (its ticker would interleave with the other's on Redis).
    args = ["-m", "uvicorn", "examples.fastapi_hub:app", "--host", "127.0.0.1"]
    example_ws13 = Process([*args, "--port", "{port}", "--ws", WS13_PROTOCOL], {"HUB_TOKEN": TOKEN})
    unittest.addModuleCleanup(example_ws13.stop)
    node = Process(
        ["-m", "ws13", "serve", "--port", "{port}", "--redis", redis.url, "--hub-ticker", "0"],
        {},
    )
    unittest.addModuleCleanup(node.stop)


def tearDownModule() -> None:
    # pytest calls setUpModule and tearDownModule but not unittest's module
    # cleanups: without this, the servers outlived the run.
    unittest.case.doModuleCleanups()


def http(method: str, url: str, body: Any = None) -> tuple[int, bytes]:
    """One HTTP request with urllib: the status and the body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ExampleCase(unittest.IsolatedAsyncioTestCase):
    """Talks to the example: ``server()`` says which process, on which backplane."""

    backplane = "redis"

    def server(self) -> Process:
        return example

    def url(self, query: str = f"nick=tester&token={TOKEN}") -> str:
        return f"ws://127.0.0.1:{self.server().port}/hub?{query}"

    async def post(self, channel: str, data: Any) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.server().port}/publish/{channel}"
        status, body = await asyncio.to_thread(http, "POST", url, data)
        self.assertEqual(status, 200, body)
        result: dict[str, Any] = json.loads(body)
        return result

    async def client(self, url: str) -> Client:
        return await self.enterAsyncContext(Client(url, request_timeout=TIMEOUT))


class ExampleTests(ExampleCase):
    """``uvicorn examples.fastapi_hub:app`` (default WebSocket protocol) on Redis."""

    async def test_history_then_publishes_from_the_http_route(self) -> None:
        for i in range(3):
            entry = await self.post("chat:history", {"text": f"old {i}"})
        self.assertEqual(entry["offset"], 3)
        client = await self.client(self.url())
        subscription = await client.subscribe("chat:history", history=2)
        old = [await asyncio.wait_for(subscription.get(), TIMEOUT) for _ in range(2)]
        self.assertEqual([m.data for m in old], [{"text": "old 1"}, {"text": "old 2"}])  # type: ignore[union-attr]
        self.assertEqual([m.offset for m in old], [2, 3])  # type: ignore[union-attr]
        await self.post("chat:history", {"text": "new"})
        await client.publish("chat:history", {"text": "from the client"})
        new = [await asyncio.wait_for(subscription.get(), TIMEOUT) for _ in range(2)]
        self.assertEqual(
            [(m.offset, m.data) for m in new],  # type: ignore[union-attr]
            [(4, {"text": "new"}), (5, {"text": "from the client"})],
        )
        # The hook put ?nick= in presence.
        members = await client.presence("chat:history")
        self.assertEqual(
            [(m["user"], m["info"]) for m in members], [("tester", {"nick": "tester"})]
        )
        # The app's own routes: health, and a bad channel name from HTTP.
        status, body = await asyncio.to_thread(
            http, "GET", f"http://127.0.0.1:{self.server().port}/health"
        )
        self.assertEqual(status, 200)
        health = json.loads(body)
        self.assertEqual(
            (health["status"], health["backplane"]["backplane"]), ("ok", self.backplane)
        )
        status, body = await asyncio.to_thread(
            http, "POST", f"http://127.0.0.1:{self.server().port}/publish/bad%20channel", 1
        )
        self.assertEqual(status, 400)

    async def test_the_ticker_task_publishes(self) -> None:
        client = await self.client(self.url())
        subscription = await client.subscribe("ticker")
        first = await asyncio.wait_for(subscription.get(), TIMEOUT)
        second = await asyncio.wait_for(subscription.get(), TIMEOUT)
        self.assertEqual(second.data["n"], first.data["n"] + 1)  # type: ignore[union-attr]

    async def test_subprotocol_and_welcome(self) -> None:
        ws = await connect(self.url("nick=raw&token=" + TOKEN), subprotocols=[SUBPROTOCOL])
        try:
            self.assertEqual(ws.subprotocol, SUBPROTOCOL)
            welcome = await recv_json(ws)
            self.assertEqual((welcome["op"], welcome["user"]), ("welcome", "raw"))
        finally:
            await ws.close()

    async def test_the_authorize_hook_refuses_a_bad_token_with_401(self) -> None:
        for query in ("nick=x&token=wrong", "nick=x"):
            with self.assertRaises(InvalidStatus) as caught:
                await connect(self.url(query), subprotocols=[SUBPROTOCOL])
            self.assertEqual(caught.exception.response.status_code, 401)
            self.assertEqual(caught.exception.response.body, b"bad or missing token\n")
        # The Bearer header works too (request_token), for clients that can set it.
        ws = await connect(
            self.url("nick=x"),
            subprotocols=[SUBPROTOCOL],
            additional_headers=[("Authorization", f"Bearer {TOKEN}")],
        )
        await ws.close()

    async def test_redis_shared_with_a_ws13_serve_node(self) -> None:
        on_uvicorn = await self.client(self.url())
        on_node = await self.client(f"ws://127.0.0.1:{node.port}/hub?nick=node")
        a = await on_uvicorn.subscribe("chat:shared")
        b = await on_node.subscribe("chat:shared")
        await on_uvicorn.publish("chat:shared", "from uvicorn")
        await on_node.publish("chat:shared", "from ws13 serve")
        await self.post("chat:shared", "from the HTTP route")
        expected = ["from uvicorn", "from ws13 serve", "from the HTTP route"]
        for subscription in (a, b):
            got = [await asyncio.wait_for(subscription.get(), TIMEOUT) for _ in range(3)]
            self.assertEqual([m.data for m in got], expected)  # type: ignore[union-attr]
            self.assertEqual([m.offset for m in got], [1, 2, 3])  # type: ignore[union-attr]
        # One history, one presence across both servers.
        history = await on_node.history("chat:shared")
        self.assertEqual([m["data"] for m in history["messages"]], expected)
        members: list[Any] = []
        async with asyncio.timeout(TIMEOUT):
            while len(members) < 2:
                members = await on_node.presence("chat:shared")
        self.assertEqual(sorted(m["user"] or "" for m in members), ["", "tester"])

    async def test_page_and_ws13_js_are_served(self) -> None:
        base = f"http://127.0.0.1:{example.port}"
        status, page = await asyncio.to_thread(http, "GET", base + "/")
        self.assertEqual(status, 200)
        self.assertIn(b'<script src="/ws13.js"></script>', page)
        status, script = await asyncio.to_thread(http, "GET", base + "/ws13.js")
        self.assertEqual(status, 200)
        with open(os.path.join(os.path.dirname(ws13.__file__), "static", "ws13.js"), "rb") as f:
            self.assertEqual(script, f.read())


class ExampleUnderWs13ProtocolTests(ExampleCase):
    """The same example under ``--ws ws13.uvicorn:WebSocketProtocol``: hub and denial."""

    backplane = "memory"

    def server(self) -> Process:
        return example_ws13

    test_history_then_publishes_from_the_http_route = (
        ExampleTests.test_history_then_publishes_from_the_http_route
    )
    test_the_authorize_hook_refuses_a_bad_token_with_401 = (
        ExampleTests.test_the_authorize_hook_refuses_a_bad_token_with_401
    )


#: Wait in the page until ``condition`` (a JS expression) is true.
WAIT_FOR = """
new Promise((resolve) => {
  const check = () => { if (%s) resolve(true); else setTimeout(check, 20); };
  check();
})
"""
TEXTS = "chat.messages.map((m) => m.nick + ': ' + m.text)"


class ChromiumTests(unittest.IsolatedAsyncioTestCase):
    """Two headless Chromium tabs chat through the example's page."""

    async def asyncSetUp(self) -> None:
        self.browser = await self.enterAsyncContext(Chromium())

    async def js(self, page: Page, expression: str) -> Any:
        return await asyncio.wait_for(page.evaluate(expression), TIMEOUT)

    async def wait_for(self, page: Page, condition: str) -> None:
        try:
            await self.js(page, WAIT_FOR % condition)
        except TimeoutError:
            state = await page.evaluate("JSON.stringify(chat.messages)")
            raise AssertionError(
                f"still false: {condition}\npage: {state}\nuvicorn: {example.output()[-2000:]}"
            ) from None

    async def say(self, page: Page, text: str) -> None:
        await self.js(
            page,
            f"document.getElementById('text').value = {json.dumps(text)};"
            "document.querySelector('#say button').click()",
        )

    async def open(self, nick: str) -> Page:
        page = await self.browser.new_page()
        await page.navigate(f"http://127.0.0.1:{example.port}/?nick={nick}&token={TOKEN}")
        await self.wait_for(page, "window.chat && chat.joined")
        return page

    async def test_two_tabs_chat_with_history(self) -> None:
        # What was said before anyone joined comes back as history.
        status, _ = await asyncio.to_thread(
            http,
            "POST",
            f"http://127.0.0.1:{example.port}/publish/chat:lobby",
            {"nick": "http", "text": "welcome"},
        )
        self.assertEqual(status, 200)
        a = await self.open("ann")
        b = await self.open("bob")
        await self.say(a, "hello from ann")
        await self.wait_for(b, "chat.messages.some((m) => m.text === 'hello from ann')")
        await self.say(b, "hi ann")
        await self.wait_for(a, "chat.messages.some((m) => m.text === 'hi ann')")
        texts = await self.js(a, TEXTS)
        self.assertEqual(texts[-3:], ["http: welcome", "ann: hello from ann", "bob: hi ann"])
        self.assertEqual(await self.js(b, TEXTS), texts)
        log = await self.js(b, "document.getElementById('log').textContent")
        self.assertIn("bob: hi ann", log)
        # A third tab gets the conversation as history; the ticker reaches the page.
        c = await self.open("cy")
        await self.wait_for(c, f"chat.messages.length >= {len(texts)}")
        self.assertEqual((await self.js(c, TEXTS))[-3:], texts[-3:])
        await self.wait_for(c, "chat.ticks >= 1")
        self.assertIn("tick", await self.js(c, "document.getElementById('tick').textContent"))


class InLoopTests(unittest.IsolatedAsyncioTestCase):
    """uvicorn in the test's event loop, serving a Starlette app with the hub."""

    #: uvicorn's WebSocket protocol (``--ws``).
    ws = "websockets-sansio"

    async def serve(self, hub: Hub, *, start: bool = True, **kwargs: Any) -> str:
        """Serve ``hub`` at /hub (a route), /mounted (a mount), /fastapi (``serve()``)."""
        if start:
            await hub.start()
            self.addAsyncCleanup(hub.aclose)
        port, stop = await self.uvicorn(self.app(HubEndpoint(hub, **kwargs)))
        self.addAsyncCleanup(stop)
        return f"ws://127.0.0.1:{port}"

    def app(self, endpoint: HubEndpoint) -> Starlette:

        async def fastapi_style(websocket: WebSocket) -> None:
            # A route that authorizes by itself, as a FastAPI dependency would.
            await endpoint.serve(websocket, principal=Principal(user="route"))

        return Starlette(
            routes=[
                WebSocketRoute("/hub", endpoint),
                WebSocketRoute("/fastapi", fastapi_style),
                Mount("/mounted", endpoint),
            ]
        )

    async def uvicorn(
        self, app: Starlette, port: int = 0
    ) -> tuple[int, Callable[[], Awaitable[None]]]:
        """Run ``app`` under uvicorn on ``port`` (0: a free one); return the port and a stop."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", ws=self.ws, ws_ping_interval=None
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))

        async def stop() -> None:
            if not task.done():
                server.should_exit = True
                await asyncio.wait_for(task, TIMEOUT)
            sock.close()

        self.addAsyncCleanup(stop)
        await wait_until(lambda: server.started)
        return sock.getsockname()[1], stop

    async def test_a_restart_of_the_server_loses_nothing(self) -> None:
        hub = Hub()
        await hub.start()
        self.addAsyncCleanup(hub.aclose)
        app = self.app(HubEndpoint(hub))
        port, stop = await self.uvicorn(app)
        client = await self.enterAsyncContext(
            Client(f"ws://127.0.0.1:{port}/hub", request_timeout=TIMEOUT)
        )
        subscription = await client.subscribe("chat")
        await hub.publish("chat", 0)
        self.assertEqual(getattr(await subscription.get(), "data", None), 0)
        # uvicorn shuts down (closing with 1012): the sessions end, the hub stays.
        await stop()
        await wait_until(lambda: not client.connected and not hub.sessions)
        for i in range(1, 4):
            await hub.publish("chat", i)
        await self.uvicorn(app, port)  # back on the same port: the client reconnects
        items = [await asyncio.wait_for(subscription.get(), TIMEOUT) for _ in range(3)]
        self.assertEqual([getattr(item, "data", None) for item in items], [1, 2, 3])
        self.assertEqual(client.connections, 2)

    async def test_route_mount_and_serve_reach_the_same_hub(self) -> None:
        hub = Hub()
        base = await self.serve(hub)
        clients = [
            await self.enterAsyncContext(Client(base + path, request_timeout=TIMEOUT))
            for path in ("/hub", "/mounted/", "/fastapi")
        ]
        subscriptions = [await client.subscribe("news") for client in clients]
        await hub.publish("news", {"n": 1})  # from Python, as a background task would
        for subscription in subscriptions:
            message = await asyncio.wait_for(subscription.get(), TIMEOUT)
            self.assertEqual(message.data, {"n": 1})  # type: ignore[union-attr]
        self.assertEqual(
            sorted(str(s.principal.user) for s in hub.sessions), ["None", "None", "route"]
        )
        # An HTTP request to the mounted endpoint: 426.
        status, body = await asyncio.to_thread(
            http, "GET", base.replace("ws:", "http:") + "/mounted/"
        )
        self.assertEqual((status, body), (426, b"ws13 hub: connect with WebSocket\n"))

    async def test_the_hook_sees_path_query_and_headers(self) -> None:
        seen: list[Request] = []

        async def authorize(request: Request) -> Principal:
            seen.append(request)
            return Principal(user=request_token(request))

        hub = Hub(authorize=authorize)
        base = await self.serve(hub)
        ws = await connect(
            base + "/hub?room=1&token=t%201",
            subprotocols=[SUBPROTOCOL],
            additional_headers=[("X-Forwarded-For", "10.0.0.1")],
        )
        self.addAsyncCleanup(ws.close)
        welcome = await recv_json(ws)
        self.assertEqual(welcome["user"], "t 1")
        (request,) = seen
        self.assertEqual(request.path, "/hub?room=1&token=t%201")
        self.assertEqual(request.headers["X-Forwarded-For"], "10.0.0.1")
        self.assertTrue(request.headers["User-Agent"].startswith("ws13/"))

    async def test_refused_without_the_denial_extension_is_403(self) -> None:
        def authorize(request: Request) -> Principal:
            raise Refused(401, "who are you?")

        hub = Hub(authorize=authorize)
        await hub.start()
        self.addAsyncCleanup(hub.aclose)
        endpoint = HubEndpoint(hub)

        async def without_extension(scope: Any, receive: Any, send: Any) -> None:
            # A server without websocket.http.response, as some are.
            await endpoint({**scope, "extensions": {}}, receive, send)

        app = Starlette(
            routes=[WebSocketRoute("/hub", endpoint), Mount("/plain", without_extension)]
        )
        port, _ = await self.uvicorn(app)
        for path, status in (("/hub", 401), ("/plain/", 403)):
            with self.assertRaises(InvalidStatus) as caught:
                await connect(f"ws://127.0.0.1:{port}{path}", subprotocols=[SUBPROTOCOL])
            self.assertEqual(caught.exception.response.status_code, status)
        self.assertEqual(caught.exception.response.body, b"")
        self.assertFalse(hub.sessions)

    async def test_binary_messages_get_error_400_as_under_ws13_serve(self) -> None:
        hub = Hub()
        base = await self.serve(hub)
        ws = await connect(base + "/hub", subprotocols=[SUBPROTOCOL])
        self.addAsyncCleanup(ws.close)
        await recv_json(ws)
        await ws.send(b"\x00binary")
        error = await recv_json(ws)
        self.assertEqual((error["op"], error["code"]), ("error", 400))

    async def test_a_hub_not_started_refuses_with_503(self) -> None:
        base = await self.serve(Hub(), start=False)
        with self.assertRaises(InvalidStatus) as caught:
            await connect(base + "/hub", subprotocols=[SUBPROTOCOL])
        self.assertEqual(caught.exception.response.status_code, 503)

    async def slow_client(self, url: str) -> Any:
        """A client that reads nothing after the welcome, with a tiny receive buffer."""
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.setblocking(False)
        ws = await connect(
            url, sock=sock, max_queue=1, compression=None, ping_interval=None,
            subprotocols=[SUBPROTOCOL],
        )  # fmt: skip
        self.addAsyncCleanup(ws.close)
        await recv_json(ws)
        return ws

    async def test_slow_consumer_drop_oldest_through_asgi(self) -> None:
        hub = Hub(
            channels={"ticker": ChannelOptions(policy=Policy.DROP_OLDEST, history_size=0)},
            max_queue=8,
        )
        base = await self.serve(hub, write_limit=2**14)
        ws = await self.slow_client(base + "/hub")
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": "ticker"}))
        await wait_until(lambda: any(s.channels for s in hub.sessions))
        payload = "x" * 8000
        for i in range(400):
            await hub.publish("ticker", {"i": i, "p": payload})
            (session,) = hub.sessions
            self.assertLessEqual(session.queued, 8)
            await asyncio.sleep(0)  # let the writer hand what it can to uvicorn
        await wait_until(lambda: session.dropped > 0)
        self.assertFalse(session.closing)
        # The client reads again: the latest messages, in order, up to the last.
        offsets: list[int] = []
        while not offsets or offsets[-1] < 400:
            push = await recv_json(ws)
            if push["op"] == "message":
                offsets.append(push["offset"])
        self.assertEqual(offsets, sorted(offsets))
        self.assertLess(len(offsets), 400)

    async def test_slow_consumer_disconnect_closes_with_1013_through_asgi(self) -> None:
        hub = Hub(channels={"chat": ChannelOptions(policy=Policy.DISCONNECT)}, max_queue=8)
        base = await self.serve(hub, write_limit=2**14)
        ws = await self.slow_client(base + "/hub")
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": "chat"}))
        await wait_until(lambda: any(s.channels for s in hub.sessions))
        payload = "x" * 8000
        for i in range(400):
            await hub.publish("chat", {"i": i, "p": payload})
            await asyncio.sleep(0)
            if hub.statistics().get("slow_disconnects"):
                break
        self.assertEqual(hub.statistics()["slow_disconnects"], 1)
        # Once the client reads again, what was written comes first, then the Close.
        with self.assertRaises(ConnectionClosed):
            for _ in range(1000):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        self.assertEqual(ws.close_code, 1013)
        await wait_until(lambda: not hub.sessions)


class InLoopWsprotoTests(InLoopTests):
    """The same under uvicorn's ``wsproto`` protocol: nothing depends on the server's."""

    ws = "wsproto"


class InLoopWs13ProtocolTests(InLoopTests):
    """The same under ws13's uvicorn protocol (``ws13.uvicorn.WebSocketProtocol``)."""

    ws = WS13_PROTOCOL


class LayerTests(unittest.TestCase):
    def test_the_adapter_imports_no_web_framework(self) -> None:
        """Only the ASGI dictionaries: no starlette, fastapi or uvicorn import in src/."""
        path = ws13.hub.asgi.__file__
        with open(path) as file:
            tree = ast.parse(file.read())
        modules = set()
        for item in ast.walk(tree):
            if isinstance(item, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in item.names)
            elif isinstance(item, ast.ImportFrom) and item.level == 0 and item.module:
                modules.add(item.module.split(".")[0])
        stdlib = {"__future__", "asyncio", "collections", "logging", "typing"}
        self.assertEqual(modules - stdlib, set())

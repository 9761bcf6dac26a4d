"""Interoperability with Chromium, both ways.

A real headless Chromium (``tests/interop/browser.py``) loads a page from a ws13
server and, in that page, opens ``new WebSocket(...)`` back to the same server:
permessage-deflate negotiated as browsers do, text and binary messages from
10 bytes to 5 MiB echoed unchanged, close codes and reasons seen by each side.
Chromium itself is driven over its DevTools WebSocket by ws13's own client,
which is the other direction: Chromium's server, our client, with and without
compression.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import unittest
from collections.abc import Awaitable
from typing import Any

from ws13.asyncio import serve
from ws13.asyncio.server import Server, ServerConnection
from ws13.headers import Headers
from ws13.http11 import Request, Response

from ..utils import MS
from .browser import Chromium, Page
from .echo import RecordingEcho, stop_server

TIMEOUT = 60_000 * MS
MAX_SIZE = 16 * 2**20
SIZES = [10, 100 * 2**10, 5 * 2**20]

PAGE = "<!doctype html><title>ws13 interop</title><p>ws13 interop page</p>\n"

#: Helpers for the page, in scope of every snippet run by ``ChromiumTests.run_js``.
JS_HELPERS = r"""
// Open a WebSocket; resolves once open. ws.next() resolves with the next
// message (rejects once closed), ws.closed with {code, reason, wasClean}.
function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const queue = [];
    const waiters = [];
    let closed = null;
    ws.onmessage = (event) => {
      const waiter = waiters.shift();
      if (waiter) waiter.resolve(event.data);
      else queue.push(event.data);
    };
    ws.closed = new Promise((resolveClosed) => {
      ws.onclose = (event) => {
        closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
        const error = new Error("closed: " + JSON.stringify(closed));
        for (const waiter of waiters.splice(0)) waiter.reject(error);
        resolveClosed(closed);
        reject(error);
      };
    });
    ws.next = () => {
      if (queue.length) return Promise.resolve(queue.shift());
      if (closed) return Promise.reject(new Error("closed: " + JSON.stringify(closed)));
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    };
    ws.onopen = () => resolve(ws);
  });
}

// Deterministic text of `size` UTF-16 code units: compressible, with 2- and
// 3-byte UTF-8 characters and one astral character (a surrogate pair) first.
function makeText(size) {
  const words = ["héllo", "wörld", "☃", "ws13", "deflate", "Ω", "interop", "ünïcode"];
  const parts = ["𝄞 "];
  let length = 3;
  let seed = size | 1;
  while (length < size) {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    const word = words[seed % words.length] + " ";
    parts.push(word);
    length += word.length;
  }
  return parts.join("").slice(0, size);
}

function randomBytes(size) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) {
    crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
  }
  return bytes;
}

function patternBytes(size) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7) % 251;
  return bytes;
}

function equal(sent, received) {
  if (typeof sent === "string") return received === sent;
  if (!(received instanceof ArrayBuffer) || received.byteLength !== sent.length) return false;
  const bytes = new Uint8Array(received);
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== sent[i]) return false;
  return true;
}

function utf8Length(message) {
  return typeof message === "string" ? new TextEncoder().encode(message).length : message.length;
}
"""


def serve_page(connection: ServerConnection, request: Request) -> Response | None:
    """Answer plain HTTP GETs: the page at /, 404 elsewhere; upgrades go on."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    if request.path != "/":
        return connection.respond(404, "Not Found\n")
    return Response.text(200, PAGE, Headers([("Content-Type", "text/html; charset=utf-8")]))


class ChromiumTests(RecordingEcho, unittest.IsolatedAsyncioTestCase):
    """ws13.asyncio.serve ← new WebSocket() in a Chromium page."""

    async def asyncSetUp(self) -> None:
        self.start_recording()
        self.browser = await self.enterAsyncContext(Chromium())

    async def start(self, handler: Any = None, **kwargs: Any) -> Page:
        """Start a ws13 echo server (or ``handler``) and open its page in a new tab."""
        server: Server = await serve(
            handler or self.handler,
            "127.0.0.1",
            0,
            max_size=MAX_SIZE,
            process_request=serve_page,
            **kwargs,
        )
        self.addAsyncCleanup(stop_server, server, TIMEOUT)
        self.origin = f"http://127.0.0.1:{server.port}"
        self.ws_url = f"ws://127.0.0.1:{server.port}/echo"
        return await self.browser.new_page(self.origin + "/")

    async def run_js(self, page: Page, body: str) -> Any:
        """Run ``body`` (an async function's body, with JS_HELPERS and WS_URL in scope)."""
        url = json.dumps(self.ws_url)
        script = f"(async () => {{\n{JS_HELPERS}\nconst WS_URL = {url};\n{body}\n}})()"
        return await wait(page.evaluate(script))

    async def server_connection(self) -> ServerConnection:
        """The only server-side WebSocket connection, once closed."""
        self.assertEqual(len(self.connections), 1)
        connection = self.connections[0]
        await wait(connection.wait_closed())
        return connection

    async def echo_round_trips(self, page: Page) -> dict[str, Any]:
        sizes = json.dumps(SIZES)
        result: dict[str, Any] = await self.run_js(
            page,
            f"""
            const ws = await open(WS_URL);
            const results = [];
            for (const size of {sizes}) {{
              for (const [kind, message] of [
                ["text", makeText(size)],
                ["random binary", randomBytes(size)],
                ["pattern binary", patternBytes(size)],
              ]) {{
                ws.send(message);
                const echo = await ws.next();
                results.push({{
                  kind, size, bytes: utf8Length(message), equal: equal(message, echo),
                  type: typeof echo === "string" ? "string" : echo.constructor.name,
                  length: typeof echo === "string" ? echo.length : echo.byteLength,
                }});
              }}
            }}
            ws.close(1000, "done");
            return {{ extensions: ws.extensions, results, closed: await ws.closed }};
            """,
        )
        return result

    def check_echoes(self, result: dict[str, Any]) -> None:
        expected = []
        for size in SIZES:
            for kind in ["text", "random binary", "pattern binary"]:
                echo = result["results"].pop(0)
                self.assertEqual((echo["kind"], echo["size"]), (kind, size))
                self.assertTrue(echo["equal"], echo)
                self.assertEqual(echo["length"], size, echo)
                self.assertEqual(echo["type"], "string" if kind == "text" else "ArrayBuffer", echo)
                expected.append(("str" if kind == "text" else "bytes", echo["bytes"]))
        self.assertEqual(result["results"], [])
        # The server received each message whole, as the right type.
        self.assertEqual(self.received, expected)
        # ws13 echoes the code of a Close frame, not its reason (RFC 6455 5.5.1).
        self.assertEqual(result["closed"], {"code": 1000, "reason": "", "wasClean": True})

    # -- Chromium's WebSocket client against our server -----------------------

    async def test_echo_with_permessage_deflate(self) -> None:
        page = await self.start()
        result = await self.echo_round_trips(page)
        self.assertIn("permessage-deflate", result["extensions"])
        self.check_echoes(result)
        connection = await self.server_connection()
        self.assertEqual(
            [extension.name for extension in connection.protocol.extensions],
            ["permessage-deflate"],
        )
        assert connection.request is not None
        self.assertEqual(connection.request.headers.get("Origin"), self.origin)
        self.assertIn(
            "permessage-deflate", connection.request.headers.get("Sec-WebSocket-Extensions", "")
        )
        self.assertEqual((connection.close_code, connection.close_reason), (1000, "done"))

    async def test_echo_without_compression(self) -> None:
        page = await self.start(compression=None)
        result = await self.echo_round_trips(page)
        self.assertEqual(result["extensions"], "")
        self.check_echoes(result)
        connection = await self.server_connection()
        self.assertEqual(connection.protocol.extensions, [])

    async def test_browser_sees_close_code_from_server(self) -> None:
        page = await self.start()
        closed = await self.run_js(
            page,
            """
            const ws = await open(WS_URL);
            ws.send("close 4000");
            return await ws.closed;
            """,
        )
        self.assertEqual(closed, {"code": 4000, "reason": "bye", "wasClean": True})
        connection = await self.server_connection()
        # Chromium echoes the code (and reason) of the server's Close frame.
        self.assertEqual(connection.close_code, 4000)

    async def test_server_sees_close_code_from_browser(self) -> None:
        page = await self.start()
        closed = await self.run_js(
            page,
            """
            const ws = await open(WS_URL);
            ws.send("hello");
            const echo = await ws.next();
            ws.close(4001, "see you ☃");
            return { echo, closed: await ws.closed };
            """,
        )
        self.assertEqual(closed["echo"], "hello")
        # ws13 echoes the code of a Close frame, not its reason (RFC 6455 5.5.1).
        self.assertEqual(closed["closed"], {"code": 4001, "reason": "", "wasClean": True})
        connection = await self.server_connection()
        self.assertEqual((connection.close_code, connection.close_reason), (4001, "see you ☃"))

    async def test_a_large_message_streams_from_the_browser(self) -> None:
        # Chromium sends a large message in frames of about 128 KiB (12 MiB:
        # about 100 frames), compressed; recv_streaming() hands each on a
        # piece per read, inflated as it arrives, and nothing is lost.
        async def digests(connection: ServerConnection) -> None:
            while True:
                digest, pieces, size = hashlib.sha256(), 0, 0
                async for piece in connection.recv_streaming(decode=False):
                    assert isinstance(piece, bytes)
                    digest.update(piece)
                    pieces += 1
                    size += len(piece)
                await connection.send(json.dumps([pieces, size, digest.hexdigest()]))

        page = await self.start(digests)
        result = await self.run_js(
            page,
            """
            const ws = await open(WS_URL);
            const hex = async (data) => Array.from(
              new Uint8Array(await crypto.subtle.digest("SHA-256", data)),
              (b) => b.toString(16).padStart(2, "0")).join("");
            const results = [];
            for (const message of [randomBytes(12 * 2 ** 20), patternBytes(12 * 2 ** 20)]) {
              ws.send(message);
              const [pieces, size, digest] = JSON.parse(await ws.next());
              results.push({ pieces, size, equal: digest === await hex(message) });
            }
            ws.close(1000);
            return { extensions: ws.extensions, results };
            """,
        )
        self.assertIn("permessage-deflate", result["extensions"])
        for sent in result["results"]:
            self.assertEqual(sent["size"], 12 * 2**20, sent)
            self.assertTrue(sent["equal"], sent)
            self.assertGreater(sent["pieces"], 1, sent)

    # -- Chromium's DevTools server against our client ------------------------

    async def test_devtools_endpoint(self) -> None:
        # self.browser's DevTools connection has compression=None.
        assert self.browser.connection is not None
        self.assertEqual(self.browser.connection.protocol.extensions, [])
        await self.check_devtools(self.browser)

    async def test_devtools_endpoint_with_permessage_deflate(self) -> None:
        async with Chromium(compression="deflate") as browser:
            assert browser.connection is not None
            self.assertEqual(
                [extension.name for extension in browser.connection.protocol.extensions],
                ["permessage-deflate"],
            )
            await self.check_devtools(browser)

    async def check_devtools(self, browser: Chromium) -> None:
        version = await browser.send("Browser.getVersion")
        self.assertIn("Chrome/", version["product"])
        page = await browser.new_page()
        self.assertEqual(await page.evaluate("6 * 7"), 42)
        self.assertEqual(await page.evaluate("Promise.resolve('héllo ☃')"), "héllo ☃")
        # Large responses from Chromium: 5 MiB compressible, 1 MiB of hex digits.
        text = await page.evaluate("'ws13 '.repeat(2**20)")
        self.assertEqual(text, "ws13 " * 2**20)
        digits = await page.evaluate(
            "Array.from({length: 2**17}, () =>"
            " Math.floor(Math.random() * 2**32).toString(16).padStart(8, '0')).join('')"
        )
        self.assertEqual(len(digits), 2**20)
        int(digits, 16)
        # A large command to Chromium.
        self.assertEqual(await page.evaluate(f"'{'x' * 2**20}'.length"), 2**20)
        await page.close()


async def wait(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, TIMEOUT)

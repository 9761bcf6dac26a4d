"""The hub demo page (``/chat.html``) in headless Chromium, through two nodes and Redis.

A real ``redis-server`` (``tests/hub/helpers.py``) and two ``ws13 serve --redis``
processes: node 1 publishes the demo ticker every 0.2 s, node 2 none. Two tabs
of one headless Chromium (``tests/interop/browser.py``), tab A on node 1 and tab
B on node 2, chat through the page's own controls: what A sends reaches B
through Redis and back, both presence lists show both nicknames, and B reloads
and finds the conversation in the room's history. The ticker panel shows the
prices node 1 publishes, on both nodes.

Set ``WS13_SCREENSHOT_CHAT=docs/chat.png`` to save tab A's screenshot there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest
from typing import Any

from tests.cli.helpers import ENV, wait_for_port
from tests.hub.helpers import RedisServer
from tests.utils import MS, free_port

from .browser import Chromium, Page

TIMEOUT = 60_000 * MS

#: Wait in the page until ``condition`` (a JS expression) is true.
WAIT_FOR = """
new Promise((resolve) => {
  const check = () => { if (%s) resolve(true); else setTimeout(check, 20); };
  check();
})
"""

JOINED = "window.demo && demo.sub && demo.hub && demo.hub._open"
NICKS = "Object.values(demo.members).map((m) => m.info && m.info.nick).sort().join(',')"
TEXTS = "demo.messages.map((m) => m.nick + ': ' + m.text)"


class HubNode:
    """``ws13 serve --redis URL`` on a free port (kept across restarts), its stderr in a file."""

    def __init__(self, redis_url: str, ticker: float) -> None:
        self.redis_url = redis_url
        self.ticker = ticker
        self.port = free_port()
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by close)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the node; return once it accepts connections."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ws13", "serve", "--port", str(self.port),
             "--redis", self.redis_url, "--hub-ticker", str(self.ticker)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=ENV,
        )  # fmt: skip
        wait_for_port(self.port, self.process)

    def page_url(self, query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/chat.html{query}"

    def stop(self) -> None:
        """SIGTERM (the hub closes its connections with 1001), SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=TIMEOUT)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.log.close()

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()


class HubChatPageTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        await asyncio.to_thread(self.redis.start)
        self.node1 = HubNode(self.redis.url, ticker=0.2)
        self.addCleanup(self.node1.close)
        self.node2 = HubNode(self.redis.url, ticker=0)
        self.addCleanup(self.node2.close)
        for node in (self.node1, self.node2):
            await asyncio.to_thread(node.start)
        self.browser = await self.enterAsyncContext(Chromium())

    async def js(self, page: Page, expression: str) -> Any:
        return await asyncio.wait_for(page.evaluate(expression), TIMEOUT)

    async def wait_for(self, page: Page, condition: str) -> None:
        try:
            await self.js(page, WAIT_FOR % condition)
        except TimeoutError:
            state = await page.evaluate(
                "JSON.stringify({messages: demo.messages, members: demo.members, "
                "notices: demo.notices, tickerUpdates: demo.tickerUpdates})"
            )
            raise AssertionError(
                f"still false after {TIMEOUT} s: {condition}\npage: {state}\n"
                f"node 1: {self.node1.stderr()[-2000:]}\nnode 2: {self.node2.stderr()[-2000:]}"
            ) from None

    async def open_page(self, url: str) -> Page:
        page = await self.browser.new_page()
        await self.browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1360, "height": 860, "deviceScaleFactor": 1, "mobile": False},
            page.session,
        )
        await page.navigate(url)
        return page

    async def reload(self, page: Page) -> None:
        loaded = self.browser.event("Page.loadEventFired", page.session)
        try:
            await self.browser.send("Page.reload", session=page.session)
            async with asyncio.timeout(TIMEOUT):
                await loaded
        finally:
            self.browser.forget(loaded)

    async def say(self, page: Page, text: str) -> None:
        """Type ``text`` in the page's message field and click Send."""
        await self.js(
            page,
            f"document.getElementById('chat-text').value = {json.dumps(text)};"
            "document.getElementById('chat-send').click()",
        )

    async def test_chat_through_two_nodes(self) -> None:
        room = "?room=interop"
        a = await self.open_page(self.node1.page_url(room + "&nick=ann"))
        b = await self.open_page(self.node2.page_url(room + "&nick=bob"))
        for page in (a, b):
            await self.wait_for(page, JOINED)
            self.assertEqual(await self.js(page, "demo.channel"), "chat:interop")

        # Presence: each tab lists both, whichever node it is on.
        for page in (a, b):
            await self.wait_for(page, f"{NICKS} === 'ann,bob'")
            shown = await self.js(page, "document.getElementById('members').textContent")
            self.assertIn("ann", shown)
            self.assertIn("bob", shown)
            self.assertEqual(
                await self.js(page, "document.getElementById('people-count').textContent"), "2"
            )
        await self.wait_for(a, "demo.notices.some((n) => n.text === 'bob joined')")

        # A (node 1) sends, B (node 2) sees it; and back.
        await self.say(a, "hello from node 1")
        await self.wait_for(b, "demo.messages.some((m) => m.text === 'hello from node 1')")
        await self.say(b, "hi ann, node 2 here")
        await self.wait_for(a, "demo.messages.length >= 2")
        expected = ["ann: hello from node 1", "bob: hi ann, node 2 here"]
        for page in (a, b):
            await self.wait_for(page, "demo.messages.length >= 2")
            self.assertEqual(await self.js(page, TEXTS), expected)
            log = await self.js(page, "document.getElementById('chat-log').textContent")
            self.assertIn("hello from node 1", log)
            self.assertIn("hi ann, node 2 here", log)

        # B reloads: a new connection (same nickname, this tab's), and the
        # conversation comes back as history on join.
        old_client = await self.js(b, "demo.hub.clientId")
        await self.reload(b)
        await self.wait_for(b, JOINED)
        self.assertEqual(await self.js(b, "demo.nick"), "bob")
        self.assertNotEqual(await self.js(b, "demo.hub.clientId"), old_client)
        await self.wait_for(b, "demo.messages.length >= 2")
        self.assertEqual(await self.js(b, TEXTS), expected)
        self.assertIn(
            "hi ann, node 2 here",
            await self.js(b, "document.getElementById('chat-log').textContent"),
        )
        # A saw B leave and come back; both list exactly ann and bob again.
        new_client = await self.js(b, "demo.hub.clientId")
        await self.wait_for(a, f"demo.members[{json.dumps(new_client)}] !== undefined")
        await self.wait_for(a, f"demo.members[{json.dumps(old_client)}] === undefined")
        await self.wait_for(a, "demo.notices.some((n) => n.text === 'bob left')")
        for page in (a, b):
            await self.wait_for(page, f"{NICKS} === 'ann,bob'")

        # Live messages still flow after the reload.
        await self.say(a, "welcome back")
        await self.wait_for(b, "demo.messages.some((m) => m.text === 'welcome back')")
        await self.screenshot(a)

    async def test_node_restart_then_page_recovers_missed_messages(self) -> None:
        room = "?room=recovery"
        a = await self.open_page(self.node1.page_url(room + "&nick=ann"))
        b = await self.open_page(self.node2.page_url(room + "&nick=bob"))
        for page in (a, b):
            await self.wait_for(page, JOINED)
        await self.say(a, "before")
        await self.wait_for(b, "demo.messages.length >= 1")

        # Node 2 goes away: B's page says so and keeps trying; A goes on talking.
        await asyncio.to_thread(self.node2.stop)
        await self.wait_for(b, "demo.notices.some((n) => n.text.startsWith('disconnected'))")
        self.assertEqual(
            await self.js(b, "document.getElementById('chat-state').textContent"), "CLOSED"
        )
        await self.wait_for(a, f"{NICKS} === 'ann'")
        await self.say(a, "while you were away")
        await self.say(a, "and again")
        await self.wait_for(a, "demo.messages.length >= 3")

        # Node 2 is back on its port: B reconnects by itself and gets exactly
        # the missed messages, in order, once.
        await asyncio.to_thread(self.node2.start)
        await self.wait_for(b, "demo.reconnects >= 1 && demo.hub._open")
        await self.wait_for(b, "demo.messages.length >= 3")
        expected = ["ann: before", "ann: while you were away", "ann: and again"]
        self.assertEqual(await self.js(b, TEXTS), expected)
        self.assertEqual(await self.js(b, "demo.gaps"), 0)
        for page in (a, b):
            await self.wait_for(page, f"{NICKS} === 'ann,bob'")
        await self.say(b, "back")
        for page in (a, b):
            await self.wait_for(page, "demo.messages.some((m) => m.text === 'back')")
        self.assertEqual(await self.js(b, TEXTS), [*expected, "bob: back"])

    async def test_ticker_panel_on_both_nodes(self) -> None:
        # Node 1 publishes; node 2's page gets the same prices through Redis.
        for node in (self.node1, self.node2):
            page = await self.open_page(node.page_url("?nick=watcher"))
            await self.wait_for(page, "demo.tickerUpdates >= 3")
            symbols = await self.js(page, "Object.keys(demo.quotes).sort()")
            self.assertEqual(symbols, ["ASYNC", "JSON", "RFC", "WS13"])
            rows = await self.js(
                page,
                "Array.from(document.querySelectorAll('#quotes-body tr'), (row) => "
                "[row.dataset.symbol, row.children[1].textContent, row.className])",
            )
            self.assertEqual([row[0] for row in rows], symbols)
            for symbol, price, direction in rows:
                self.assertRegex(price, r"^\d+\.\d\d$", symbol)
                self.assertIn(direction.split()[0], ("up", "down", "flat"))
            self.assertEqual(
                await self.js(page, "document.getElementById('ticker-state').textContent"), "OPEN"
            )
            self.assertTrue(await self.js(page, "document.getElementById('ticker-empty').hidden"))
            # The prices keep moving.
            seen = await self.js(page, "demo.tickerUpdates")
            await self.wait_for(page, f"demo.tickerUpdates > {seen}")
            await page.close()

    async def screenshot(self, page: Page) -> None:
        shot = await self.browser.send("Page.captureScreenshot", {"format": "png"}, page.session)
        png = base64.b64decode(shot["data"])
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        path = os.environ.get("WS13_SCREENSHOT_CHAT")
        if path:
            with open(path, "wb") as file:
                file.write(png)

"""Headless Chromium against ws13's uvicorn protocol: permessage-deflate as browsers use it.

A Chromium tab loads the Starlette app's page from uvicorn and opens
``new WebSocket(...)`` to the same server: the extension is negotiated,
compressible text and binary are echoed, and closes go both ways. uvicorn's
``websockets-sansio`` protocol runs the same page as the control.
"""

from __future__ import annotations

import asyncio
import json
import unittest
from typing import Any, ClassVar

from ..interop.browser import Chromium, Page
from ..utils import MS
from .server import CONTROL, WS13, Uvicorn, recorded

TIMEOUT = 60_000 * MS

SCRIPT = r"""
(async () => {
  const ws = new WebSocket(URL + "/echo?key=" + KEY);
  ws.binaryType = "arraybuffer";
  const messages = [];
  let notify = null;
  ws.onmessage = (event) => { messages.push(event.data); if (notify) notify(); };
  const closed = new Promise((resolve) => {
    ws.onclose = (event) => resolve({ code: event.code, reason: event.reason });
  });
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const next = async () => {
    while (!messages.length) await new Promise((resolve) => { notify = resolve; });
    return messages.shift();
  };
  const text = "ws13 ☃ under uvicorn ".repeat(5000);
  ws.send(text);
  const textEcho = await next();
  const bytes = new Uint8Array(100000).map((_, i) => i % 7);
  ws.send(bytes);
  const bytesEcho = new Uint8Array(await next());
  ws.close(4003, "tab done");
  return {
    extensions: ws.extensions,
    textOk: textEcho === text,
    bytesOk: bytesEcho.length === bytes.length && bytesEcho.every((b, i) => b === bytes[i]),
    closed: await closed,
  };
})()
"""


class ChromiumTests(unittest.IsolatedAsyncioTestCase):
    servers: ClassVar[dict[str, Uvicorn]]

    @classmethod
    def setUpClass(cls) -> None:
        cls.servers = {}
        try:
            for ws in (WS13, CONTROL):
                cls.servers[ws] = Uvicorn("tests.uvicorn.apps:starlette_app", ws=ws)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        for server in cls.servers.values():
            server.close()

    async def asyncSetUp(self) -> None:
        self.browser = await self.enterAsyncContext(Chromium())

    async def run_page(self, server: Uvicorn, key: str) -> dict[str, Any]:
        origin = f"http://127.0.0.1:{server.port}"
        page: Page = await self.browser.new_page(origin + "/")
        script = SCRIPT.replace("URL", json.dumps(f"ws://127.0.0.1:{server.port}"), 1)
        script = script.replace("KEY", json.dumps(key), 1)
        async with asyncio.timeout(TIMEOUT):
            result: dict[str, Any] = await page.evaluate(script)
        return result

    async def test_permessage_deflate_with_chromium(self) -> None:
        for ws, server in self.servers.items():
            with self.subTest(ws=ws):
                result = await self.run_page(server, f"chromium-{len(ws)}")
                self.assertTrue(result["extensions"].startswith("permessage-deflate"), result)
                self.assertTrue(result["textOk"])
                self.assertTrue(result["bytesOk"])
                # The client's close: Chromium sees its code echoed (ws13's
                # core echoes the code only, websockets the reason too:
                # RFC 6455 section 5.5.1 allows both) and the app gets both.
                self.assertEqual(result["closed"]["code"], 4003)
                key = f"chromium-{len(ws)}"
                self.assertEqual(await recorded(server, key), {"code": 4003, "reason": "tab done"})

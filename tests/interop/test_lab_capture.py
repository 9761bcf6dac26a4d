"""The lab page's "download capture" in a real headless Chromium, read by tshark.

``ws13 serve`` runs as a subprocess; the page (driven over DevTools, see
``browser.py``) connects to its echo, sends a text and a 300-byte binary
message, then the test clicks "download capture" with Chromium's downloads
going to a temporary directory. The file that arrives is read by tshark: the
upgrade request and 101, and the same frames, with the same masking keys, as
the page's frame inspector shows.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any

from tests.cli.helpers import ENV, wait_for_port
from tests.tshark import tshark, tshark_fields, websocket_frames
from tests.utils import MS, free_port

from .browser import Chromium, Page

TIMEOUT = 60_000 * MS
WAIT_FOR = """
new Promise((resolve) => {
  const check = () => { if (%s) resolve(true); else setTimeout(check, 20); };
  check();
})
"""


def wait_for_file(path: str) -> None:
    """Chromium writes NAME.crdownload, then renames it NAME when complete."""
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"no download at {path}"
        time.sleep(20 * MS)


class LabCaptureTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.port = free_port()
        self.server = subprocess.Popen(
            [sys.executable, "-m", "ws13", "serve", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        self.addCleanup(self.stop_server)
        await asyncio.to_thread(wait_for_port, self.port, self.server)
        self.browser = await self.enterAsyncContext(Chromium())
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.downloads = directory.name

    def stop_server(self) -> None:
        if self.server.poll() is None:
            self.server.terminate()
        self.server.wait(timeout=TIMEOUT)

    async def js(self, page: Page, expression: str) -> Any:
        return await asyncio.wait_for(page.evaluate(expression), TIMEOUT)

    async def wait_for(self, page: Page, condition: str) -> None:
        await self.js(page, WAIT_FOR % condition)

    async def send(self, page: Page, field: str, value: str, button: str) -> None:
        count = await self.js(page, "lab.messages.length")
        await self.js(page, f"document.getElementById({field!r}).value = {value!r}")
        await self.js(page, f"document.getElementById({button!r}).click()")
        await self.wait_for(page, f"lab.messages.length >= {count + 2}")

    async def test_download_capture(self) -> None:
        page = await self.browser.new_page(f"http://127.0.0.1:{self.port}/")
        await self.wait_for(page, "lab.ws && lab.ws.readyState === 1")
        await self.send(page, "text", "capture me", "send-text")
        await self.send(page, "hex", "ab" * 300, "send-binary")
        await self.browser.send(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": self.downloads, "eventsEnabled": True},
        )
        link = await self.js(
            page,
            "(() => { const a = document.getElementById('download-capture');"
            " return [a.hidden, a.getAttribute('href'), a.download]; })()",
        )
        inspector = await self.js(page, "lab.inspectorId")
        name = f"ws13-lab-{inspector}.pcapng"
        self.assertEqual(link, [False, f"/capture?inspect={inspector}", name])

        await self.js(page, "document.getElementById('download-capture').click()")
        path = os.path.join(self.downloads, name)
        await asyncio.to_thread(wait_for_file, path)

        http = tshark_fields(path, "http", "http.request.uri", "http.response.code")
        self.assertEqual(http, [["/echo?inspect=" + inspector, ""], ["", "101"]])
        self.assertEqual(tshark(path, "-Y", "tcp.analysis.flags"), "")
        frames = websocket_frames(path)
        texts = [f.get("websocket.payload.text") for f in frames if f["websocket.opcode"] == "1"]
        self.assertEqual(texts, ["capture me", "capture me"])
        # The inspector's frames, in the same order with the same masking keys.
        shown = await self.js(
            page,
            "lab.records.filter((r) => r.type === 'frame')"
            ".map((r) => [r.opcode, r.masking_key || ''])",
        )
        captured = [
            [int(f["websocket.opcode"]), f.get("websocket.masking_key", "").replace(":", "")]
            for f in frames
        ]
        self.assertEqual(captured, shown)
        self.assertEqual(len(captured), 4)

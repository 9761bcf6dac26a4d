"""The lab page of ``ws13 serve`` in a real headless Chromium.

``ws13 serve`` runs as a subprocess; Chromium (``tests/interop/browser.py``,
driven over DevTools by ws13's own client) loads its page, which connects to
its own echo at once (the first view shows an open connection and its
handshake dissected); the test then echoes a
text message, a 1 KiB and a 100 KiB random binary message and a file, and
closes with 4000. The frame inspector's records are checked against the raw
header bytes they carry: client frames masked, server frames not, the 1 KiB
payload with the 7+16-bit length, the 100 KiB one with the 7+64-bit length,
RSV1 shown exactly when the frame is compressed (Chromium negotiates
permessage-deflate, and random payloads don't shrink, so the lengths stay in
their encodings), and the inflated payload equal to what the page sent.

Set ``WS13_SCREENSHOT=docs/lab.png`` to save a screenshot of the first view
after two echoes (a short text, and a longer one that both sides compress)
there: the README's picture. Otherwise it is only checked to be a PNG.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.cli.helpers import ENV, wait_for_port
from tests.utils import MS, free_port

from .browser import Chromium, Page

TIMEOUT = 60_000 * MS
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PREVIEW = 256  # ws13.cli.trace.PREVIEW

#: Wait in the page until ``condition`` (a JS expression) is true.
WAIT_FOR = """
new Promise((resolve) => {
  const check = () => { if (%s) resolve(true); else setTimeout(check, 20); };
  check();
})
"""


def parse_header(header: bytes) -> dict[str, Any]:
    """RFC 6455 section 5.2, independently of ws13.cli.trace."""
    b0, b1 = header[0], header[1]
    code = b1 & 0x7F
    if code == 126:
        length, rest = int.from_bytes(header[2:4], "big"), header[4:]
    elif code == 127:
        length, rest = int.from_bytes(header[2:10], "big"), header[10:]
    else:
        length, rest = code, header[2:]
    masked = bool(b1 & 0x80)
    assert len(rest) == (4 if masked else 0), header.hex()
    return {
        "fin": bool(b0 & 0x80),
        "rsv1": bool(b0 & 0x40),
        "rsv2": bool(b0 & 0x20),
        "rsv3": bool(b0 & 0x10),
        "opcode": b0 & 0x0F,
        "mask": masked,
        "masking_key": rest.hex() if masked else None,
        "length": length,
        "length_code": code,
    }


class LabPageTests(unittest.IsolatedAsyncioTestCase):
    #: The page's scheme; its WebSocket URL's is the matching ws / wss.
    scheme = "http"

    async def asyncSetUp(self) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by cleanup)
        self.addCleanup(self.log.close)
        self.server = subprocess.Popen(
            [sys.executable, "-m", "ws13", "serve", "--port", str(self.port), *self.serve_args()],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=ENV,
        )
        self.addCleanup(self.stop_server)
        await asyncio.to_thread(wait_for_port, self.port, self.server)
        self.browser = await self.enterAsyncContext(Chromium(flags=self.browser_flags()))

    def serve_args(self) -> list[str]:
        return []

    def browser_flags(self) -> list[str]:
        return []

    def stop_server(self) -> None:
        if self.server.poll() is None:
            self.server.terminate()
        self.server.wait(timeout=TIMEOUT)

    def server_log(self) -> str:
        self.log.seek(0)
        return self.log.read()

    async def js(self, page: Page, expression: str) -> Any:
        return await asyncio.wait_for(page.evaluate(expression), TIMEOUT)

    async def wait_for(self, page: Page, condition: str) -> None:
        await self.js(page, WAIT_FOR % condition)

    async def send_and_wait_echo(self, page: Page, button: str) -> None:
        count = await self.js(page, "lab.messages.length")
        await self.js(page, f"document.getElementById({button!r}).click()")
        await self.wait_for(page, f"lab.messages.length >= {count + 2}")

    def check_frame(self, record: dict[str, Any], payload: bytes) -> None:
        """``record`` matches its raw header, and carries ``payload`` (inflated if RSV1)."""
        header = bytes.fromhex(record["header_hex"])
        parsed = parse_header(header)
        for name in ("fin", "rsv1", "rsv2", "rsv3", "opcode", "mask", "masking_key", "length"):
            self.assertEqual(record[name], parsed[name], name)
        self.assertEqual(record["length_code"], parsed["length_code"])
        expected_encoding = (
            "7" if parsed["length"] < 126 else "7+16" if parsed["length"] < 65536 else "7+64"
        )
        self.assertEqual(record["length_encoding"], expected_encoding)
        self.assertTrue(record["fin"])
        self.assertFalse(record["rsv2"] or record["rsv3"])
        # Client frames are masked, server frames are not (RFC 6455 section 5.1).
        self.assertEqual(record["mask"], record["from"] == "client")
        if record["mask"]:
            self.assertEqual(len(record["masking_key"]), 8)
        shown = payload[:PREVIEW]
        if record["rsv1"]:
            self.assertEqual(record["inflated_length"], len(payload))
            self.assertEqual(record["inflated_hex"], shown.hex())
        else:
            self.assertEqual(record["length"], len(payload))
            self.assertEqual(record["payload_hex"], shown.hex())
            self.assertNotIn("inflated_length", record)

    def find(
        self, frames: list[dict[str, Any]], sender: str, opcode: int, payload: bytes
    ) -> dict[str, Any]:
        for record in frames:
            if record["from"] != sender or record["opcode"] != opcode:
                continue
            content = record["inflated_hex"] if record["rsv1"] else record["payload_hex"]
            size = record["inflated_length"] if record["rsv1"] else record["length"]
            if content == payload[:PREVIEW].hex() and size == len(payload):
                return record
        raise AssertionError(f"no {sender} frame with opcode {opcode} of {len(payload)} bytes")

    async def test_lab_page(self) -> None:
        page = await self.browser.new_page()
        await self.browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1360, "height": 860, "deviceScaleFactor": 1, "mobile": False},
            page.session,
        )
        await page.navigate(f"{self.scheme}://127.0.0.1:{self.port}/")
        await self.wait_for(page, "lab.inspectorId")
        url = await self.js(page, "document.getElementById('url').value")
        ws_scheme = "wss" if self.scheme == "https" else "ws"
        self.assertEqual(url, f"{ws_scheme}://127.0.0.1:{self.port}/echo")

        # The first view: connected on load, without a click.
        await self.wait_for(page, "lab.ws && lab.ws.readyState === 1")
        state = await self.js(page, "document.getElementById('state').textContent")
        self.assertEqual(state, "OPEN")
        extensions = await self.js(page, "lab.ws.extensions")

        text = "Hello, ws13!"
        await self.js(page, f"document.getElementById('text').value = {json.dumps(text)}")
        await self.send_and_wait_echo(page, "send-text")
        payloads = {}
        for size in (1024, 100 * 1024):
            data = os.urandom(size)  # incompressible: the length encodings stay put
            payloads[size] = data
            await self.js(page, f"document.getElementById('hex').value = '{data.hex()}'")
            await self.send_and_wait_echo(page, "send-binary")
        messages = await self.js(page, "lab.messages")
        self.assertEqual(
            [(m["dir"], m["kind"], m["size"]) for m in messages],
            [
                ("out", "text", 12),
                ("in", "text", 12),
                ("out", "binary", 1024),
                ("in", "binary", 1024),
                ("out", "binary", 102400),
                ("in", "binary", 102400),
            ],
        )
        self.assertTrue(all(m["rtt"] is not None and m["rtt"] >= 0 for m in messages[1::2]))

        # Every frame reaches the inspector: 3 messages each way.
        await self.wait_for(
            page, "lab.records.filter((r) => r.type === 'frame' && r.opcode < 8).length >= 6"
        )
        records = json.loads(await self.js(page, "JSON.stringify(lab.records)"))
        frames = [record for record in records if record["type"] == "frame"]
        for sender in ("client", "server"):
            record = self.find(frames, sender, 0x1, text.encode())
            self.check_frame(record, text.encode())
            if not record["rsv1"]:
                self.assertEqual(record["payload_text"], text)
            else:
                self.assertEqual(record["inflated_text"], text)
            small = self.find(frames, sender, 0x2, payloads[1024])
            self.check_frame(small, payloads[1024])
            self.assertEqual(small["length_encoding"], "7+16")
            self.assertEqual(small["length_code"], 126)
            large = self.find(frames, sender, 0x2, payloads[100 * 1024])
            self.check_frame(large, payloads[100 * 1024])
            self.assertEqual(large["length_encoding"], "7+64")
            self.assertEqual(large["length_code"], 127)
            self.assertTrue(large["truncated"])
            self.assertEqual(len(large["payload_hex"]), 2 * PREVIEW)
        # Chromium compresses every message once permessage-deflate is on, and
        # the inspector says so with RSV1; our server skips messages < 32 bytes.
        client_frames = [f for f in frames if f["from"] == "client" and f["opcode"] < 8]
        if "permessage-deflate" in extensions:
            self.assertTrue(all(f["rsv1"] for f in client_frames))
            self.assertFalse(self.find(frames, "server", 0x1, text.encode())["rsv1"])
        else:
            self.assertFalse(any(f["rsv1"] for f in client_frames))

        # The opening handshake, with the accept value computed from the key.
        (handshake,) = [record for record in records if record["type"] == "handshake"]
        request_headers = dict(handshake["request"]["headers"])
        response_headers = dict(handshake["response"]["headers"])
        key = request_headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        self.assertEqual(handshake["accept_expected"], accept)
        self.assertEqual(response_headers["Sec-WebSocket-Accept"], accept)
        self.assertTrue(handshake["accept_ok"])
        self.assertEqual(handshake["response"]["line"], "HTTP/1.1 101 Switching Protocols")
        self.assertTrue(handshake["request"]["line"].startswith("GET /echo?inspect="))

        # The page renders them.
        shown = await self.js(page, "document.getElementById('frames').textContent")
        for label in ("browser → server", "server → browser", "7+16-bit", "7+64-bit", "✓ matches"):
            self.assertIn(label, shown)

        # A file goes out as one binary message.
        with tempfile.NamedTemporaryFile(suffix=".bin") as file:
            file.write(b"file \x00\xff contents")
            file.flush()
            document = await self.browser.send("DOM.getDocument", session=page.session)
            node = await self.browser.send(
                "DOM.querySelector",
                {"nodeId": document["root"]["nodeId"], "selector": "#file"},
                page.session,
            )
            await self.browser.send(
                "DOM.setFileInputFiles",
                {"files": [file.name], "nodeId": node["nodeId"]},
                page.session,
            )
            await self.send_and_wait_echo(page, "send-file")
        messages = await self.js(page, "lab.messages.slice(-2)")
        self.assertEqual(
            [(m["dir"], m["kind"], m["size"]) for m in messages],
            [("out", "binary", 16), ("in", "binary", 16)],
        )

        # Close with 4000: the log says so, the inspector shows both Close frames.
        await self.js(
            page,
            "document.getElementById('code').value = '4000';"
            "document.getElementById('reason').value = 'lab done';"
            "document.getElementById('close').click()",
        )
        await self.wait_for(page, "lab.closed")
        closed = await self.js(page, "lab.closed")
        # ws13 echoes the code of a Close frame, not its reason (RFC 6455 5.5.1).
        self.assertEqual(closed, {"code": 4000, "reason": "", "wasClean": True})
        log = await self.js(page, "document.getElementById('log').textContent")
        self.assertIn("closed: code 4000", log)
        await self.wait_for(page, "lab.records.some((r) => r.type === 'close')")
        records = json.loads(await self.js(page, "JSON.stringify(lab.records)"))
        closes = [r for r in records if r["type"] == "frame" and r["opcode"] == 0x8]
        self.assertEqual(
            [(r["from"], r["close_code"], r["mask"]) for r in closes],
            [("client", 4000, True), ("server", 4000, False)],
        )
        self.assertEqual(closes[0]["close_reason"], "lab done")
        (close,) = [r for r in records if r["type"] == "close"]
        self.assertEqual((close["code"], close["reason"]), (4000, "lab done"))
        self.assertIn("code=4000", self.server_log())

    async def open_page(self) -> Page:
        page = await self.browser.new_page()
        await self.browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1360, "height": 860, "deviceScaleFactor": 1, "mobile": False},
            page.session,
        )
        await page.navigate(f"{self.scheme}://127.0.0.1:{self.port}/")
        return page

    async def log_lines(self, page: Page) -> list[str]:
        """The message log's lines, as the page shows them."""
        lines: list[str] = await self.js(
            page,
            "Array.from(document.querySelectorAll('#log .msg .body'), (n) => n.textContent)",
        )
        return lines

    async def test_first_view(self) -> None:
        # No click: the page connects to its own echo once the inspector is on,
        # and the inspector shows that connection's handshake, dissected.
        page = await self.open_page()
        await self.wait_for(page, "lab.ws && lab.ws.readyState === 1")
        self.assertEqual(
            await self.js(page, "document.getElementById('state').textContent"), "OPEN"
        )
        await self.wait_for(page, "document.querySelector('#frames details.hs') !== null")
        shown = await self.js(page, "document.getElementById('frames').textContent")
        ws_scheme = "wss" if self.scheme == "https" else "ws"
        for expected in (
            "Opening handshake (HTTP Upgrade)",
            "GET /echo?inspect=",
            "HTTP/1.1 101 Switching Protocols",
            "Sec-WebSocket-Accept = base64(SHA-1(key + ",
            "✓ matches",
        ):
            self.assertIn(expected, shown)
        self.assertIn(
            f"connecting to {ws_scheme}://127.0.0.1:{self.port}/echo?inspect=",
            "\n".join(await self.log_lines(page)),
        )
        # Two echoes, for the README's picture: a short text the server sends
        # uncompressed, and a longer one both sides compress.
        long = json.dumps(
            {"type": "chat", "room": "lab", "text": "frames, dissected: RSV1 set when compressed"}
        )
        for text in ("Hello, ws13!", long):
            await self.js(page, f"document.getElementById('text').value = {json.dumps(text)}")
            await self.send_and_wait_echo(page, "send-text")
        await self.js(page, "document.getElementById('text').value = 'Hello, ws13!'")
        await self.wait_for(
            page, "lab.records.filter((r) => r.type === 'frame' && r.opcode === 1).length >= 4"
        )
        await self.screenshot(page)

    async def test_close_codes_explained(self) -> None:
        page = await self.open_page()
        await self.wait_for(page, "lab.ws && lab.ws.readyState === 1")
        # Disconnect closes without a code: the browser reports 1005, explained.
        await self.js(page, "document.getElementById('disconnect').click()")
        await self.wait_for(page, "lab.closed")
        self.assertEqual(await self.js(page, "lab.closed.code"), 1005)
        lines = await self.log_lines(page)
        self.assertTrue(lines[-1].startswith("closed: code 1005 — no status code: "), lines)
        # A connection that fails: the error line's promise is kept by the next line.
        port = free_port()
        await self.js(
            page,
            f"document.getElementById('url').value = 'ws://127.0.0.1:{port}/';"
            "document.getElementById('connect').click()",
        )
        await self.wait_for(page, "lab.closed && lab.closed.code === 1006")
        lines = await self.log_lines(page)
        error = lines.index("error (the close event below says more)")
        self.assertTrue(
            lines[error + 1].startswith("closed: code 1006 (not clean) — could not connect. "),
            lines,
        )
        self.assertIn("ws13 connect URL", lines[error + 1])

    async def test_favicon(self) -> None:
        # The icon the page links and the one browsers ask for by themselves.
        page = await self.open_page()
        answers = await self.js(
            page,
            "Promise.all([document.querySelector('link[rel=icon]').href, '/favicon.ico'].map("
            "(url) => fetch(url).then((r) => [r.status, r.headers.get('Content-Type')])))",
        )
        self.assertEqual(answers, [[200, "image/svg+xml"], [200, "image/svg+xml"]])

    async def screenshot(self, page: Page) -> None:
        # Scroll the inspector to its first frame, the handshake just above it.
        await self.js(page, "document.querySelector('#frames details.frame').scrollIntoView()")
        shot = await self.browser.send("Page.captureScreenshot", {"format": "png"}, page.session)
        png = base64.b64decode(shot["data"])
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        path = os.environ.get("WS13_SCREENSHOT")
        if path and self.scheme == "http":
            with open(path, "wb") as file:
                file.write(png)


class LabPageTLSTests(LabPageTests):
    """The same, with ``ws13 serve --tls-cert/--tls-key``: the page over
    https:// and its WebSocket over wss://, through Chromium's own TLS stack.

    The certificate is made by trustme for 127.0.0.1; Chromium accepts it
    because its public key's SHA-256 is pinned with
    ``--ignore-certificate-errors-spki-list`` (this key only, not any error).
    """

    scheme = "https"

    def serve_args(self) -> list[str]:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        directory = tempfile.mkdtemp(prefix="ws13-tls-")
        self.addCleanup(shutil.rmtree, directory)
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        cert.cert_chain_pems[0].write_to_path(cert_path)
        cert.private_key_pem.write_to_path(key_path)
        loaded = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
        spki = loaded.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        self.spki_hash = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        return ["--tls-cert", cert_path, "--tls-key", key_path]

    def browser_flags(self) -> list[str]:
        return [f"--ignore-certificate-errors-spki-list={self.spki_hash}"]

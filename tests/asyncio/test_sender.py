"""Tests for the whole-message send of ``send()`` and ``send_nowait()``:
one ``Protocol.send_message()`` and the buffers it returns, written as a
peer reads them.

The same tests run with the C speedups and under ``WS13_NO_EXTENSIONS=1``
(``scripts/test.sh`` runs the suite twice).
"""

from __future__ import annotations

import pytest

from tests.asyncio.helpers import ServerClientTestCase, raw_client, read_frame, wait
from ws13.protocol import COPY_MAX

OP_TEXT, OP_BINARY = 0x1, 0x2


class SendWholeTests(ServerClientTestCase):
    async def test_frames_as_a_peer_reads_them(self) -> None:
        # Server side: unmasked; one buffer up to COPY_MAX, header and
        # payload side by side above it (RFC 6455 section 5.2 lengths).
        messages: list[str | bytes] = ["☃ snow", b"\x00\xff", "x" * (COPY_MAX + 1), bytes(70_000)]

        async def handler(ws):  # type: ignore[no-untyped-def]
            for message in messages:
                await ws.send(message)
            ws.send_nowait("nowait")
            await ws.wait_closed()

        server = await self.start_server(handler)
        reader, writer, _ = await raw_client(server.port)
        for message in [*messages, "nowait"]:
            opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
            data = message.encode() if isinstance(message, str) else message
            assert await wait(read_frame(reader)) == (True, opcode, data)
        writer.close()

    async def test_a_client_masks_each_frame(self) -> None:
        client = await self.connect_to(await self.start_server())
        for message in ("first", b"second", "third é"):
            await client.send(message)
            assert await wait(client.recv()) == message

    async def test_compressed_when_deflate_is_on(self) -> None:
        client = await self.connect_to(
            await self.start_server(compression="deflate"), compression="deflate"
        )
        assert client.response is not None
        assert "permessage-deflate" in client.response.headers["Sec-WebSocket-Extensions"]
        text = '{"symbol": "BTC-USD", "bid": 1234.5}' * 20
        for message in (text, text.encode()):
            await client.send(message)
            assert await wait(client.recv()) == message

    async def test_other_bytes_like_messages_and_errors(self) -> None:
        client = await self.connect_to(await self.start_server())
        with pytest.raises(TypeError, match="str or bytes-like, not int"):
            await client.send(42)  # type: ignore[arg-type]
        await client.send(bytearray(b"ba"))
        assert await wait(client.recv()) == b"ba"

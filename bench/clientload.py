"""A fixed number of round trips from one client library, for counting its cost.

Usage: python bench/clientload.py CLIENT PORT CONNS ROUND_TRIPS [SIZE]

CLIENT is one of ``CLIENTS``: ``ws13`` (``await ws.send(m); await
ws.recv()`` per round trip, the high-level API), ``ws13-callback``
(``set_message_handler()`` answering with ``send_nowait()``), ``picows``
(its frame callback, the load client of ``run.py``) and ``websockets`` (its
asyncio client, as ``ws13``). Each of ``CONNS`` connections to
``ws://127.0.0.1:PORT/`` does ``ROUND_TRIPS`` round trips of a binary
message of ``SIZE`` bytes (32), one at a time, then closes; on uvloop,
compression off. ``bench/instructions.py`` runs it under callgrind with a
few and with many round trips: the difference is the client's cost per round
trip, whatever the server costs.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvloop

CLIENTS = ["ws13", "ws13-callback", "picows", "websockets"]


async def ws13_client(url: str, count: int, payload: bytes) -> None:
    from ws13.asyncio import connect

    async with connect(url, compression=None) as ws:
        for _ in range(count):
            await ws.send(payload)
            await ws.recv()


async def ws13_callback_client(url: str, count: int, payload: bytes) -> None:
    from ws13.asyncio import connect

    async with connect(url, compression=None) as ws:
        done = asyncio.get_running_loop().create_future()
        left = count

        def echoed(message: str | bytes) -> None:
            nonlocal left
            left -= 1
            if left > 0:
                ws.send_nowait(payload)
            elif not done.done():
                done.set_result(None)

        ws.set_message_handler(echoed)
        if count:
            ws.send_nowait(payload)
            await done


async def picows_client(url: str, count: int, payload: bytes) -> None:
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    done = asyncio.get_running_loop().create_future()

    class RoundTrips(WSListener):  # type: ignore[misc]
        left = count

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            self.left -= 1
            if self.left > 0:
                transport.send(WSMsgType.BINARY, payload)
            elif not done.done():
                done.set_result(None)

    transport, _ = await ws_connect(RoundTrips, url)
    if count:
        transport.send(WSMsgType.BINARY, payload)
        await done
    transport.send_close(WSCloseCode.OK)
    await transport.wait_disconnected()


async def websockets_client(url: str, count: int, payload: bytes) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None) as ws:
        for _ in range(count):
            await ws.send(payload)
            await ws.recv()


RUN = {
    "ws13": ws13_client,
    "ws13-callback": ws13_callback_client,
    "picows": picows_client,
    "websockets": websockets_client,
}


async def main(client: str, port: int, conns: int, count: int, size: int) -> None:
    url = f"ws://127.0.0.1:{port}/"
    payload = bytes(i % 251 for i in range(size))
    await asyncio.gather(*(RUN[client](url, count, payload) for _ in range(conns)))


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6) or sys.argv[1] not in CLIENTS:
        sys.exit(__doc__)
    size = int(sys.argv[5]) if len(sys.argv) == 6 else 32
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), size))

"""The lab's exercise, scripted, with a capture for Wireshark (docs/lab.md).

Usage: python examples/lab_capture.py [URL] [CAPTURE]

Connects to URL (default ws://127.0.0.1:8765/echo, what ``ws13 serve``
serves), writes the client's side of the connection to CAPTURE (default
client.pcapng), and sends what the lab looks at, each echoed back: a short
text (7-bit length), 200 bytes (16-bit length), 70,000 bytes (64-bit
length), a message in three fragments with a ping between them, a text that
permessage-deflate compresses, then a close with 1000 and a reason.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from ws13.asyncio import connect


async def main(url: str, capture: str) -> None:
    async with connect(url, pcap=capture, ping_interval=None) as ws:
        # compress=False: the lengths on the wire are the message sizes.
        await ws.send("Hello, ws13!", compress=False)
        await ws.recv()
        await ws.send(bytes(range(200)), compress=False)
        await ws.recv()
        await ws.send(b"\x00" * 70_000, compress=False)
        await ws.recv()

        async def fragments() -> AsyncIterator[str]:
            # A frame goes out when the next piece comes (the last has FIN
            # set), so the ping goes between "one " and "two ".
            yield "one "
            yield "two "
            await ws.ping(b"between fragments")
            yield "three"

        await ws.send(fragments(), compress=False)
        await ws.recv()
        await ws.send("compress me! " * 20)  # compressed: RSV1 set
        await ws.recv()
        await ws.close(1000, "lab done")


if __name__ == "__main__":
    args = sys.argv[1:]
    url = args[0] if args else "ws://127.0.0.1:8765/echo"
    capture = args[1] if len(args) > 1 else "client.pcapng"
    asyncio.run(main(url, capture))

"""A deflate bomb against a real ws13 server process: 1009, and memory stays flat.

RFC 7692 section 8.1 warns that a small compressed message can expand into a
huge one. ws13 bounds decompression by max_size while it runs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import unittest
import zlib

from ws13.asyncio import connect
from ws13.exceptions import ConnectionClosedError
from ws13.frames import Frame, Opcode

from ..utils import MS, free_port, memory_kib

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from ws13.asyncio import serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def main():
        async with serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=16 * 2**20):
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def gigabyte_of_zeros_deflated() -> bytes:
    """1 GiB of zeros as one raw DEFLATE stream (about 1 MiB), built in chunks."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(2**20)
    parts = [compressor.compress(chunk) for _ in range(1024)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


class DeflateBombTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.port = free_port()
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert self.server.stdout is not None
        ready = await asyncio.to_thread(self.server.stdout.readline)
        self.assertEqual(ready.strip(), "ready")

    async def asyncTearDown(self) -> None:
        self.server.kill()
        self.server.wait()
        assert self.server.stdout is not None
        self.server.stdout.close()

    async def test_one_gigabyte_bomb_closes_with_1009_and_memory_stays_bounded(self) -> None:
        payload = gigabyte_of_zeros_deflated()
        self.assertLess(len(payload), 2 * 2**20)
        async with connect(f"ws://127.0.0.1:{self.port}/", max_size=None) as ws:
            # Warm up: a compressed round trip allocates the zlib state first.
            await ws.send("warm up " * 100)
            await ws.recv()
            before = memory_kib(self.server.pid)
            # Write the bomb as one raw masked frame with RSV1 (compressed).
            frame = Frame(Opcode.BINARY, payload, rsv1=True).serialize(mask=os.urandom(4))
            assert ws.transport is not None
            ws.transport.write(frame)
            with self.assertRaises(ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), 30_000 * MS)
            after = memory_kib(self.server.pid)
        self.assertEqual(ws.close_code, 1009)
        self.assertLess(after - before, 50 * 1024, f"RSS grew from {before} to {after} KiB")
        # The server is still serving.
        async with connect(f"ws://127.0.0.1:{self.port}/") as ws:
            await ws.send("still here")
            self.assertEqual(await ws.recv(), "still here")

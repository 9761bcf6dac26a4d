"""Receive uploads of any size without holding them in memory (docs/messages.md).

Usage: python examples/upload.py [DIRECTORY] [--host 127.0.0.1] [--port 8766]

Serves ws://HOST:PORT/. Each message a client sends is an upload: it is
written to a new file in DIRECTORY (default: the current directory) piece by
piece as it arrives, with ``recv_streaming()``. Clients send a message in
one frame (websockets, Node's ws) or in frames of about 128 KiB (Chromium),
and ws13 hands a large frame on a piece per read, so memory stays at about
``max_queue`` pieces whatever the upload's size. When the message
is complete the server answers with one text message, JSON:
``{"file": path, "bytes": size, "sha256": hex}``. Uploads are limited to
``MAX_SIZE`` (4 GiB): a larger one closes the connection with 1009 and its
file is removed.

From a browser's console::

    const ws = new WebSocket("ws://127.0.0.1:8766/");
    ws.onmessage = (event) => console.log(JSON.parse(event.data));
    ws.onopen = () => ws.send(new Uint8Array(100 * 2 ** 20));  // or a File
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import tempfile
from pathlib import Path

from ws13.asyncio import ServerConnection, serve

MAX_SIZE = 4 * 2**30


async def receive_uploads(ws: ServerConnection, directory: Path) -> None:
    """Store each message the client sends in its own file; answer with its digest."""
    while True:
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as file:
                # decode=False: a text message is stored as its UTF-8 bytes.
                async for piece in ws.recv_streaming(decode=False):
                    assert isinstance(piece, bytes)  # what decode=False gives
                    # Writes to the page cache are quick; a slow disk would
                    # call for `await asyncio.to_thread(file.write, piece)`.
                    file.write(piece)
                    digest.update(piece)
                    size += len(piece)
        except BaseException:
            # The connection closed (normally between uploads, or in the
            # middle of one, or over MAX_SIZE): no partial file is kept.
            os.unlink(name)
            raise
        await ws.send(json.dumps({"file": name, "bytes": size, "sha256": digest.hexdigest()}))


async def main(directory: Path, host: str, port: int) -> None:
    async def handler(ws: ServerConnection) -> None:
        await receive_uploads(ws, directory)

    async with serve(handler, host, port, max_size=MAX_SIZE) as server:
        print(f"upload server on ws://{host}:{server.port}/, files in {directory}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, default=Path.cwd())
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.directory, args.host, args.port))
    except KeyboardInterrupt:
        pass

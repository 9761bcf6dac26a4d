#!/usr/bin/env python3
"""ws13 echo server for Autobahn|Testsuite (`wstest -m fuzzingclient`).

usage: python compliance/echo_server.py PORT [HOST]

Echoes every text/binary message back unchanged, with no message size limit
and permessage-deflate on (see settings.py). compliance/run.py starts it and stops it with SIGTERM.
Log level: $WS13_COMPLIANCE_LOG (default WARNING).
"""

import asyncio
import logging
import os
import signal
import sys

from settings import compression_kwargs

from ws13.asyncio import serve


async def handler(ws):
    async for message in ws:
        await ws.send(message)


async def main(host, port):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(handler, host, port, max_size=None, **compression_kwargs()) as server:
        print(f"ws13 echo server listening on ws://{host}:{port}", flush=True)
        forever = asyncio.ensure_future(server.serve_forever())
        await asyncio.wait([forever, stop], return_when=asyncio.FIRST_COMPLETED)
        if not forever.done():
            forever.cancel()
        else:
            forever.result()  # re-raise if serve_forever() failed


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    logging.basicConfig(
        level=os.environ.get("WS13_COMPLIANCE_LOG", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    port = int(sys.argv[1])
    host = sys.argv[2] if len(sys.argv) == 3 else "127.0.0.1"
    try:
        asyncio.run(main(host, port))
    except KeyboardInterrupt:
        pass

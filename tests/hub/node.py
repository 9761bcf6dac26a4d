"""A hub node as ``ws13 serve --redis URL`` runs it, for the multi-node tests.

Until the CLI wiring lands this calls the same code ``ws13 serve`` will:
``start_hub(args)`` and ``mount(...)`` from ``ws13.hub.cli``. It prints
``ready PORT`` once listening and stops cleanly on SIGTERM.

Usage: python -m tests.hub.node --port PORT [--redis URL] [--hub-ticker 0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from ws13.asyncio import serve
from ws13.hub import SUBPROTOCOL
from ws13.hub.cli import add_serve_arguments, mount, start_hub


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    hub = await start_hub(args)
    handler, process_request = mount(hub, None, None, path=args.hub_path)
    server = await serve(
        handler, "127.0.0.1", args.port, process_request=process_request, subprotocols=[SUBPROTOCOL]
    )
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    print("ready", server.port, flush=True)
    await stop
    server.close()
    await server.wait_closed()
    await hub.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

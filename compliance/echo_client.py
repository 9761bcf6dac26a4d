#!/usr/bin/env python3
"""ws13 echo client for Autobahn|Testsuite (`wstest -m fuzzingserver`).

usage: python compliance/echo_client.py URL AGENT

URL is the fuzzing server, e.g. ws://127.0.0.1:9002. Asks it for the number
of cases (/getCaseCount), runs every case (/runCase?case=i&agent=AGENT) by
echoing each message back, then asks it to write the reports
(/updateReports?agent=AGENT). A case that ends in an error never stops the
loop. Per-case timeout: $WS13_CASE_TIMEOUT seconds (default 120).
Log level: $WS13_COMPLIANCE_LOG (default WARNING).

Prints "case count: N" first and "done: N cases, E errors" last (stdout);
per-case errors go to stderr as "case I: ExcType: message".
"""

import asyncio
import logging
import os
import sys
import traceback
from urllib.parse import quote

from settings import compression_kwargs

import ws13.exceptions
from ws13.asyncio import connect

CASE_TIMEOUT = float(os.environ.get("WS13_CASE_TIMEOUT", "120"))


async def run_case(url, i, agent):
    async with connect(
        f"{url}/runCase?case={i}&agent={agent}", max_size=None, **compression_kwargs()
    ) as ws:
        async for msg in ws:
            await ws.send(msg)


async def main(url, agent):
    url = url.rstrip("/")
    agent = quote(agent, safe="")
    async with connect(f"{url}/getCaseCount") as ws:
        n = int(await ws.recv())
    print(f"case count: {n}", flush=True)

    errors = 0
    for i in range(1, n + 1):
        try:
            async with asyncio.timeout(CASE_TIMEOUT):
                await run_case(url, i, agent)
        except (ws13.exceptions.WebSocketError, OSError) as exc:
            # Expected for many cases: the fuzzing server sends bad frames.
            print(f"case {i}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        except TimeoutError:
            errors += 1
            print(f"case {i}: TIMEOUT after {CASE_TIMEOUT:g} s", file=sys.stderr, flush=True)
        except Exception as exc:  # a bug in ws13: report it, keep going
            errors += 1
            print(f"case {i}: UNEXPECTED {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            traceback.print_exc()

    try:
        async with asyncio.timeout(120):
            async with connect(f"{url}/updateReports?agent={agent}") as ws:
                # The server writes the reports, then closes; wait for that.
                async for _ in ws:
                    pass
    except (ws13.exceptions.WebSocketError, OSError) as exc:
        # The reports are written as soon as the handshake completes.
        print(f"updateReports: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    print(f"done: {n} cases, {errors} errors", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    logging.basicConfig(
        level=os.environ.get("WS13_COMPLIANCE_LOG", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(main(sys.argv[1], sys.argv[2]))

"""``ws13 connect URL``: a command-line WebSocket client.

Each line read on stdin is sent as a text message; each message received is
printed on stdout, a line each (binary messages as hex). At the end of stdin
the client closes the connection normally and exits 0 once the server has
answered; an abnormal close or a failure to connect exits 1 with one line on
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import threading
from typing import Any

from ..asyncio.client import ClientConnection, connect
from ..exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from . import fail

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "connect",
        help="connect to a WebSocket server; stdin lines out, messages in",
        description="Send each stdin line as a text message and print each message received.",
    )
    parser.add_argument("url", help="ws:// or wss:// URL")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a request header (repeatable)",
    )
    parser.add_argument(
        "--subprotocol", action="append", default=[], help="offer a subprotocol (repeatable)"
    )
    parser.add_argument("--origin", help="send this Origin header")
    parser.add_argument(
        "--max-size",
        type=int,
        default=2**20,
        help="largest message accepted, in bytes (1048576); 0 for no limit",
    )
    parser.add_argument("--cafile", help="trust the CA certificates in this PEM file (wss)")
    parser.add_argument(
        "--insecure", action="store_true", help="skip TLS certificate and hostname checks (wss)"
    )
    parser.set_defaults(run=run)


def _headers(values: list[str]) -> list[tuple[str, str]]:
    headers = []
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"invalid header {value!r}; expected 'Name: value'")
        headers.append((name.strip(), rest.strip()))
    return headers


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.url.lower().startswith("wss:"):
        return None
    context = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin lines in a daemon thread: works for pipes, files and terminals alike."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line.removesuffix("\n").removesuffix("\r"))
    loop.call_soon_threadsafe(queue.put_nowait, None)


#: At the end of stdin, seconds to wait for the server's next message before closing.
LINGER = 1.0


class _Tally:
    """Messages sent and received, so the end of stdin can wait for the replies."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.arrived = asyncio.Event()


async def _send_lines(
    ws: ClientConnection, queue: asyncio.Queue[str | None], tally: _Tally
) -> None:
    while True:
        line = await queue.get()
        if line is None:
            # Closing at once would lose the replies still on their way (the
            # server can't send after the closing handshake), so `echo hi |
            # ws13 connect` printed nothing now and then: wait until as many
            # messages came back as went out, or the server is quiet for LINGER.
            while tally.received < tally.sent:
                tally.arrived.clear()
                try:
                    await asyncio.wait_for(tally.arrived.wait(), LINGER)
                except TimeoutError:
                    break
            await ws.close()
            return
        try:
            await ws.send(line)
        except ConnectionClosed:
            return
        tally.sent += 1


async def _print_messages(ws: ClientConnection, tally: _Tally) -> None:
    out = sys.stdout
    try:
        async for message in ws:
            if isinstance(message, str):
                out.write(message + "\n")
            else:
                out.write(message.hex() + "\n")
            out.flush()
            tally.received += 1
            tally.arrived.set()
    except ConnectionClosed:
        pass
    except BrokenPipeError:
        # stdout is gone (`ws13 connect URL | head -1`): end without a traceback.
        # Point stdout at devnull so the flush at exit doesn't fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        await ws.close()
        raise


async def _connect(args: argparse.Namespace) -> int:
    try:
        headers = _headers(args.header)
        ws = await connect(
            args.url,
            additional_headers=headers,
            subprotocols=args.subprotocol or None,
            origin=args.origin,
            max_size=args.max_size or None,
            ssl=_ssl_context(args),
        )
    except ssl.SSLError as exc:
        # Before ValueError: SSLCertVerificationError is a ValueError too.
        return fail(f"TLS error: {exc.reason or exc}")
    except (InvalidURI, ValueError) as exc:
        return fail(str(exc), 2)
    except InvalidStatus as exc:
        phrase = exc.response.reason_phrase if exc.response is not None else ""
        return fail(f"server rejected the connection: HTTP {exc.status} {phrase}".rstrip())
    except InvalidHandshake as exc:
        return fail(f"opening handshake failed: {exc}")
    except TimeoutError:
        return fail(f"timed out connecting to {args.url}")
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return fail(f"cannot connect to {args.url}: {reason}")

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(loop, queue), daemon=True).start()
    tally = _Tally()
    sender = asyncio.create_task(_send_lines(ws, queue, tally))
    try:
        await _print_messages(ws, tally)
        await ws.wait_closed()
    except BrokenPipeError:
        return 1
    finally:
        sender.cancel()
    code, sent = ws.close_code, ws.protocol.close_sent
    if code in (1000, 1001) or (code == 1005 and sent is not None and sent.code == 1000):
        return 0
    detail = f"{code}" + (f" {ws.close_reason}" if ws.close_reason else "")
    return fail(f"connection closed abnormally: {detail}")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_connect(args))

"""``ws13 connect URL``: a command-line WebSocket client.

On a terminal (stdin and stdout both TTYs) it is interactive: see
``interactive.py``. Otherwise it is a pipe: each line read on stdin is sent as
a message (text; with ``--binary``, bytes decoded from hex or base64); each
message received is printed on stdout, a line each (binary messages as hex,
or base64 with ``--base64``). At the end of stdin the client waits for the
replies to what it sent (at most ``LINGER`` seconds of quiet, then ``SETTLE`` of
quiet for more), closes the
connection normally and exits 0; a failure exits 1 with one line on stderr.

``--trace`` prints the opening handshake and every frame, both ways,
dissected (``trace.py``) with a hex dump, on stderr. ``--keylog FILE`` (or
the ``SSLKEYLOGFILE`` environment variable) writes the TLS session keys in
the NSS key log format, so Wireshark can decrypt a ``wss://`` capture.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import os
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Literal

from ..asyncio.client import ClientConnection, connect
from ..client import ClientProtocol
from ..exceptions import (
    ConnectionClosed,
    InvalidHandshake,
)
from ..proxy import get_proxy, parse_proxy
from ..uri import WebSocketURI, parse_uri
from . import fail
from .capture import add_pcap_arguments, pcap_writer
from .errors import ConnectFailed, connect_failed, unless_plain_http
from .trace import Dissector, format_frame, format_handshake, handshake_record

__all__ = ["ConnectFailed", "Session", "add_parser", "reconnecting", "run"]

#: At the end of stdin, seconds to wait for the server's next message before closing.
LINGER = 1.0
#: Then, once as many messages came back as went out, seconds of quiet that end
#: the wait: a server may answer one message with several (``--exec-pty`` splits
#: a line longer than 64 KiB), and closing at the first would lose the rest.
SETTLE = 0.2
#: ``--reconnect``: the first wait, the factor between waits, and the longest wait.
BACKOFF_INITIAL, BACKOFF_FACTOR, BACKOFF_MAX = 0.5, 2.0, 30.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "connect",
        help="connect to a WebSocket server: interactive on a terminal, else a pipe",
        description="Talk to a WebSocket server. On a terminal: type messages and "
        "/commands (/help lists them). In a pipe: each stdin line is sent as a message "
        "and each message received is printed as a line.",
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
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="send a keepalive ping this often (20); 0 turns keepalive off",
    )
    parser.add_argument(
        "--no-compression", action="store_true", help="don't offer permessage-deflate"
    )
    parser.add_argument("--cafile", help="trust the CA certificates in this PEM file (wss)")
    parser.add_argument(
        "--insecure", action="store_true", help="skip TLS certificate and hostname checks (wss)"
    )
    parser.add_argument(
        "--keylog",
        metavar="FILE",
        help="append TLS session keys to FILE (NSS key log format, for Wireshark); "
        "SSLKEYLOGFILE does the same",
    )
    parser.add_argument(
        "--binary",
        action="store_true",
        help="send each stdin line as a binary message, decoded from hex (or --base64)",
    )
    parser.add_argument(
        "--base64",
        action="store_true",
        help="binary messages as base64 instead of hex, both ways",
    )
    parser.add_argument("--json", action="store_true", help="pretty-print JSON messages")
    parser.add_argument(
        "--count", type=int, metavar="N", help="close and exit after receiving N messages"
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="reconnect when the connection fails or closes, waiting "
        f"{BACKOFF_INITIAL:g} s, then twice as long each time, up to {BACKOFF_MAX:g} s",
    )
    proxies = parser.add_mutually_exclusive_group()
    proxies.add_argument(
        "--proxy",
        metavar="URL",
        help="connect through this proxy: http://[user:pass@]host:port, https://..., "
        "socks5h://..., socks5://..., socks4a://..., socks4://... (default: the "
        "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY environment variables)",
    )
    proxies.add_argument(
        "--no-proxy",
        action="store_true",
        help="connect directly, whatever the environment says",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print the handshake and every frame, dissected with a hex dump, on stderr",
    )
    add_pcap_arguments(parser, many=False)
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
        if args.keylog:
            raise ValueError("--keylog needs a wss:// URL: ws:// isn't encrypted")
        return None
    # create_default_context() also honours SSLKEYLOGFILE.
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except OSError as exc:
        raise ValueError(f"cannot read --cafile {args.cafile}: {exc.strerror}") from None
    except ssl.SSLError as exc:
        raise ValueError(f"no certificate in --cafile {args.cafile}: {exc.reason}") from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if args.keylog:
        try:
            context.keylog_filename = args.keylog
        except OSError as exc:
            raise ValueError(f"cannot write --keylog {args.keylog}: {exc.strerror}") from None
    return context


def check_args(args: argparse.Namespace) -> None:
    """Raise ValueError with a one-line message for bad options."""
    parse_uri(args.url)  # InvalidURI is a ValueError
    if args.proxy is not None:
        parse_proxy(args.proxy)  # InvalidProxy too
    _headers(args.header)
    if args.max_size < 0:
        raise ValueError(f"--max-size {args.max_size}: must be 0 (no limit) or more")
    if args.ping_interval < 0:
        raise ValueError(f"--ping-interval {args.ping_interval:g}: must be 0 (off) or more")
    if args.count is not None and args.count < 1:
        raise ValueError(f"--count {args.count}: must be 1 or more")
    if args.pcap_tls and not args.url.lower().startswith("wss:"):
        raise ValueError("--pcap-tls needs a wss:// URL: ws:// has no TLS records")
    if args.pcap_tls and args.proxy is not None:
        raise ValueError("--pcap-tls can't be used with --proxy: it captures direct connections")


class Tracer:
    """``--trace``: the handshake and every frame of one connection, on stderr."""

    def __init__(self) -> None:
        self.protocol: ClientProtocol | None = None
        self._dissector = Dissector()
        self._announced = False

    def announce(self) -> None:
        """Print the opening handshake, once (before the first frame)."""
        if self._announced or self.protocol is None or self.protocol.request is None:
            return
        self._announced = True
        record = handshake_record(self.protocol.request, self.protocol.response)
        _stderr(format_handshake(record))

    def __call__(self, outgoing: bool, header: bytes, payload: bytes) -> None:
        self.announce()
        _stderr(format_frame(self._dissector.frame(outgoing, header, payload), outgoing))


def _stderr(text: str) -> None:
    # sys.stderr is looked up each time: prompt_toolkit's patch_stdout replaces it.
    print(text, file=sys.stderr, flush=True)


class _Opener(connect):
    """``connect()`` as the options say, with the CLI's extras on each attempt.

    ``--trace`` gets each connection's handshake and frames; a ``wss://``
    handshake that goes unanswered is checked for a plain HTTP server
    (``unless_plain_http``); ``--reconnect`` decides what is retried, prints
    one line per wait, and waits ``BACKOFF_INITIAL`` seconds, then twice as
    long each time up to ``BACKOFF_MAX``.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tracer: Tracer | None = None
        #: Why the last attempt failed, printed with the next wait.
        self.failure: str | None = None
        proxy: str | Literal[True] | None = True
        if args.no_proxy or args.pcap_tls:
            proxy = None
        elif args.proxy is not None:
            proxy = args.proxy
        super().__init__(
            args.url,
            additional_headers=_headers(args.header),
            subprotocols=args.subprotocol or None,
            origin=args.origin,
            max_size=args.max_size or None,
            ping_interval=args.ping_interval or None,
            compression=None if args.no_compression else "deflate",
            ssl=_ssl_context(args),
            proxy=proxy,
            process_exception=self._process_exception,
            reconnect_delays=self._delays,
            pcap=getattr(args, "pcap_writer", None),
            pcap_tls=args.pcap_tls,
        )
        if args.trace:
            make = self.factory

            def factory(
                uri: WebSocketURI, headers: Iterable[tuple[str, str]] | None
            ) -> ClientConnection:
                # Set the tracer before the first byte arrives: a frame may
                # come in the same TCP segment as the handshake response.
                connection = make(uri, headers)
                self.tracer = Tracer()
                self.tracer.protocol = connection.protocol
                connection.protocol.tracer = self.tracer
                return connection

            self.factory = factory

    async def connect(self) -> ClientConnection:
        try:
            connection = await unless_plain_http(super().connect(), self.args.url)
        except InvalidHandshake:
            if self.tracer is not None:
                self.tracer.announce()
            raise
        if self.tracer is not None:
            self.tracer.announce()
        return connection

    def _process_exception(self, exc: Exception) -> Exception | None:
        failed = connect_failed(self.args.url, exc, self._proxy_url())
        if not (self.args.reconnect and failed.retry):
            return failed
        self.failure = str(failed)
        return None

    def _proxy_url(self) -> str | None:
        if self.proxy is True:
            return get_proxy(self.uri)
        return self.proxy

    def _delays(self) -> Iterator[float]:
        delay = BACKOFF_INITIAL
        while True:
            failure, self.failure = self.failure, None
            prefix = "" if failure is None else f"{failure}; "
            _stderr(f"ws13: {prefix}reconnecting in {delay:g} s")
            yield delay
            delay = min(delay * BACKOFF_FACTOR, BACKOFF_MAX)


async def reconnecting(
    args: argparse.Namespace, run_one: Callable[[ClientConnection], Awaitable[int | None]]
) -> int:
    """Connect and run ``run_one`` until it returns an exit status.

    ``run_one`` returns ``None`` to connect again (``--reconnect``): the
    reconnecting loop of ``ws13.asyncio.connect`` then waits and reconnects.
    """
    try:
        opener = _Opener(args)
    except ValueError as exc:
        failed = connect_failed(args.url, exc)
        return fail(str(failed), failed.status)
    try:
        async with contextlib.aclosing(aiter(opener)) as connections:
            async for ws in connections:
                status = await run_one(ws)
                if status is not None:
                    return status
    except ConnectFailed as exc:
        return fail(str(exc), exc.status)
    # The loop of connections never ends by itself.
    raise AssertionError("unreachable")


def format_message(message: str | bytes, args: argparse.Namespace) -> str:
    """A received message as printed: text as is (or pretty JSON), binary as hex or base64."""
    if isinstance(message, str):
        if args.json:
            try:
                return json.dumps(json.loads(message), indent=2, ensure_ascii=False)
            except ValueError:
                pass
        return message
    if args.base64:
        return base64.b64encode(message).decode()
    return message.hex()


def decode_binary(line: str, args: argparse.Namespace) -> bytes:
    """A ``--binary`` input line as bytes; ValueError with a one-line reason."""
    try:
        if args.base64:
            return base64.b64decode(line.strip(), validate=True)
        return bytes.fromhex(line.replace(":", " "))
    except (ValueError, binascii.Error):
        kind = "base64" if args.base64 else "hex"
        raise ValueError(f"not {kind}: {line[:40]!r}") from None


def close_status(ws: ClientConnection) -> int:
    """0 after a normal close, else a one-line error and 1."""
    code, reason, sent = ws.close_code, ws.close_reason, ws.protocol.close_sent
    if code in (1000, 1001) or (code == 1005 and sent is not None and sent.code == 1000):
        return 0
    if (
        code == 1006
        and sent is not None
        and sent.code != 1000
        and ws.protocol.close_rcvd_then_sent is False
    ):
        # This side failed the connection (e.g. 1009, a message over --max-size)
        # and the server closed TCP without echoing: its Close frame says why.
        code, reason = sent.code, sent.reason
    detail = f"{code}" + (f" {reason}" if reason else "")
    return fail(f"connection closed abnormally: {detail}")


# -- pipe mode ------------------------------------------------------------------


class Session:
    """The state of pipe mode that outlives one connection (``--reconnect``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        #: A line read but not sent when the connection closed.
        self.unsent: str | None = None
        self.stdin_done = False
        self.line_number = 0
        self.received = 0
        self.error: str | None = None

    def start_reading(self) -> None:
        loop = asyncio.get_running_loop()
        threading.Thread(target=_read_stdin, args=(loop, self.lines), daemon=True).start()


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin lines in a daemon thread: works for pipes, files and terminals alike."""
    try:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.removesuffix("\n").removesuffix("\r"))
        loop.call_soon_threadsafe(queue.put_nowait, None)
    except RuntimeError:
        # The loop closed while lines were still coming (the program is
        # exiting, e.g. its stdout was closed): nobody wants them.
        return


class _Tally:
    """Messages sent and received, so the end of stdin can wait for the replies."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.arrived = asyncio.Event()


async def _wait_replies(tally: _Tally) -> None:
    """Wait until as many messages came back as went out, then ``SETTLE`` seconds
    of quiet; or ``LINGER`` seconds of quiet before that.

    Closing at once would lose the replies still on their way (the server
    can't send after the closing handshake): `echo hi | ws13 connect` printed
    nothing now and then.
    """
    while True:
        tally.arrived.clear()
        quiet = LINGER if tally.received < tally.sent else SETTLE
        try:
            await asyncio.wait_for(tally.arrived.wait(), quiet)
        except TimeoutError:
            break


async def _send_lines(ws: ClientConnection, session: Session, tally: _Tally) -> None:
    while True:
        line = session.unsent
        session.unsent = None
        if line is None:
            line = await session.lines.get()
        if line is None:
            session.stdin_done = True
            await _wait_replies(tally)
            await ws.close()
            return
        session.line_number += 1
        message: str | bytes = line
        if session.args.binary:
            try:
                message = decode_binary(line, session.args)
            except ValueError as exc:
                session.error = f"stdin line {session.line_number}: {exc}"
                session.stdin_done = True
                await _wait_replies(tally)
                await ws.close()
                return
        try:
            await ws.send(message)
        except ConnectionClosed:
            # Not sent: the next connection (--reconnect) sends it.
            session.unsent = line
            session.line_number -= 1
            return
        tally.sent += 1


async def _print_messages(ws: ClientConnection, session: Session, tally: _Tally) -> None:
    out = sys.stdout
    args = session.args
    try:
        async for message in ws:
            out.write(format_message(message, args) + "\n")
            out.flush()
            tally.received += 1
            session.received += 1
            tally.arrived.set()
            if args.count is not None and session.received >= args.count:
                session.stdin_done = True
                await ws.close()
                return
    except ConnectionClosed:
        pass
    except BrokenPipeError:
        # stdout is gone (`ws13 connect URL | head -1`): end without a traceback.
        # Point stdout at devnull so the flush at exit doesn't fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        await ws.close()
        raise


async def _pipe_once(ws: ClientConnection, session: Session) -> int | None:
    """Run one connection in pipe mode; return an exit status, or None to reconnect."""
    tally = _Tally()
    sender = asyncio.create_task(_send_lines(ws, session, tally))
    try:
        await _print_messages(ws, session, tally)
        await ws.wait_closed()
    except BrokenPipeError:
        return 1
    finally:
        sender.cancel()
    if session.error is not None:
        return fail(session.error)
    if session.args.reconnect and not session.stdin_done:
        code = ws.close_code
        reason = f" {ws.close_reason}" if ws.close_reason else ""
        _stderr(f"ws13: connection closed: {code}{reason}")
        return None
    return close_status(ws)


async def _pipe(args: argparse.Namespace) -> int:
    session = Session(args)
    session.start_reading()
    return await reconnecting(args, lambda ws: _pipe_once(ws, session))


def run(args: argparse.Namespace) -> int:
    try:
        check_args(args)
        # Opened before connecting: an unwritable path is a usage error.
        args.pcap_writer = pcap_writer(args)
    except ValueError as exc:
        return fail(str(exc), 2)
    if sys.stdin.isatty() and sys.stdout.isatty():
        from .interactive import run_interactive

        return asyncio.run(run_interactive(args))
    return asyncio.run(_pipe(args))

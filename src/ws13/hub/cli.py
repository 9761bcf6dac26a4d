"""The hub's command-line pieces: ``ws13 sub``, ``ws13 pub`` and ``ws13 serve --redis``.

``add_parser(commands)`` adds ``sub`` and ``pub`` to the ``ws13`` command;
``add_serve_arguments(parser)`` adds ``--redis``, ``--hub-path``,
``--hub-ticker`` and ``--hub-publish-rate`` to ``ws13 serve``, whose code then
calls ``start_hub(args)`` and ``mount(hub, handler, process_request,
path=args.hub_path)``.

``ws13 sub`` prints one JSON line per message:
``{"channel": ..., "epoch": ..., "offset": ..., "time": ..., "data": ...}``.
Exit status: 0 done (``--count`` reached, or ``pub`` accepted everything),
1 failure (connection, refusal, error reply), 2 bad arguments, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251 - the CLI does I/O
import json
import logging
import random
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any

from ..cli.errors import connect_failed, unless_plain_http
from ..exceptions import InvalidURI
from ..http11 import Request
from ..uri import parse_uri
from .auth import Principal
from .backplanes import open_backplane
from .channels import ChannelOptions, Policy
from .client import Client, Gap, NotAHub
from .mounting import mount
from .server import Hub
from .wire import SUBPROTOCOL, HubError

if TYPE_CHECKING:
    from ..metrics import Metrics

__all__ = [
    "DEMO_CHANNELS",
    "add_parser",
    "add_serve_arguments",
    "demo_authorize",
    "main",
    "mount",
    "run_pub",
    "run_sub",
    "start_hub",
    "ticker",
]

logger = logging.getLogger("ws13.hub")

#: The channels of ``ws13 serve``'s hub: chat rooms keep an hour of history
#: with presence, and close slow readers (they recover on reconnect); tickers
#: drop the oldest prices for slow readers.
DEMO_CHANNELS = {
    "chat:*": ChannelOptions(
        history_size=200, history_ttl=3600, presence=True, join_leave=True, policy=Policy.DISCONNECT
    ),
    "ticker*": ChannelOptions(history_size=60, history_ttl=600, policy=Policy.DROP_OLDEST),
}

#: The longest nickname ``demo_authorize`` keeps, in characters.
MAX_NICK = 32


def _fail(message: str, status: int = 1) -> int:
    print(f"ws13: error: {message}", file=sys.stderr, flush=True)
    return status


def _printable(text: str) -> str:
    """Escape what a terminal would interpret (JSON-valid ``\\uXXXX`` escapes)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


# -- ws13 serve ------------------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the hub's options to ``ws13 serve``."""
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="share the hub's channels with other nodes through Redis "
        "(redis://HOST:PORT/DB) or a Redis Cluster (redis+cluster://HOST:PORT[,HOST:PORT...], "
        "rediss+cluster:// for TLS); "
        "needs ws13[redis]; default: in memory",
    )
    parser.add_argument("--hub-path", default="/hub", help="where the hub is mounted (/hub)")
    parser.add_argument(
        "--hub-ticker",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="publish demo prices on channel 'ticker' every SECONDS (1.0); 0: off",
    )
    parser.add_argument(
        "--hub-publish-rate",
        type=float,
        default=100.0,
        metavar="N",
        help="publishes per second a hub connection may make (100; burst twice that); 0: no limit",
    )


def demo_authorize(request: Request) -> Principal:
    """``ws13 serve``'s hub: anyone may do anything, and ``/hub?nick=NAME`` puts
    ``{"nick": NAME}`` in the connection's presence entry (the chat's member list).

    The nickname is untrusted display text: control characters are removed,
    spaces trimmed, and it is cut to ``MAX_NICK`` characters; none or an empty
    one gives an anonymous entry.
    """
    query = urllib.parse.urlsplit(request.path).query
    values = urllib.parse.parse_qs(query).get("nick")
    nick = "".join(c for c in values[0] if c.isprintable()).strip()[:MAX_NICK] if values else ""
    return Principal(info={"nick": nick} if nick else None)


async def start_hub(args: argparse.Namespace, metrics: Metrics | None = None) -> Hub:
    """The started hub for ``ws13 serve``'s options; ValueError/ImportError for a bad --redis.

    ``metrics`` (``--metrics``) reports the hub's figures.
    """
    rate = getattr(args, "hub_publish_rate", 100.0)
    if rate < 0:
        raise ValueError("--hub-publish-rate must be >= 0")
    if getattr(args, "hub_ticker", 0) < 0:
        raise ValueError("--hub-ticker must be >= 0 (0: off)")
    hub_path = getattr(args, "hub_path", "/hub")
    if not hub_path.startswith("/"):
        raise ValueError(f"--hub-path {hub_path}: must start with /")
    # ws13 serve --workers N sets backplane_url to its local backplane.
    url = getattr(args, "backplane_url", None) or getattr(args, "redis", None)
    backplane = open_backplane(url)
    hub = Hub(
        backplane,
        channels=DEMO_CHANNELS,
        authorize=demo_authorize,
        publish_rate=rate,
        publish_burst=max(1, round(2 * rate)),
        metrics=metrics,
    )
    await hub.start()
    if not backplane.healthy:
        logger.warning("hub backplane %s unreachable; serving degraded", url)
    interval = getattr(args, "hub_ticker", 0)
    if interval and interval > 0:
        hub._spawn(ticker(hub, interval=interval))
    return hub


async def ticker(hub: Hub, channel: str = "ticker", *, interval: float = 1.0) -> None:
    """Publish random-walk prices for a few symbols on ``channel`` every ``interval`` s."""
    prices = {"WS13": 100.0, "RFC": 64.55, "ASYNC": 42.0, "JSON": 7.5}
    while True:
        for symbol, price in prices.items():
            prices[symbol] = round(max(0.01, price * (1 + random.gauss(0, 0.004))), 2)
        try:
            await hub.publish(channel, dict(prices))
        except Exception as exc:  # the backplane may be down: keep ticking
            logger.debug("ticker: %s", exc)
        await asyncio.sleep(interval)


# -- ws13 sub / ws13 pub -----------------------------------------------------------


def add_parser(commands: Any) -> None:
    """Add ``ws13 sub`` and ``ws13 pub`` to the ``ws13`` subcommands."""
    sub = commands.add_parser(
        "sub",
        help="subscribe to a hub channel and print messages as JSON lines",
        description="Print each message of CHANNEL as a JSON line with its offset; "
        "reconnect and recover by itself.",
    )
    sub.add_argument("url", metavar="URL", help="the hub, e.g. ws://127.0.0.1:8765/hub")
    sub.add_argument("channel", metavar="CHANNEL")
    sub.add_argument("--since", type=int, metavar="OFFSET", help="start after this offset")
    sub.add_argument("--epoch", help="the epoch --since belongs to (fail if it changed)")
    sub.add_argument("--history", type=int, metavar="N", help="first print the last N messages")
    sub.add_argument("--count", type=int, metavar="N", help="exit 0 after N messages")
    sub.add_argument("--token", help="sent as Authorization: Bearer TOKEN")
    sub.set_defaults(run=run_sub)

    pub = commands.add_parser(
        "pub",
        help="publish messages on a hub channel",
        description="Publish MESSAGE, or each line of stdin, on CHANNEL; "
        "exit 0 once the hub accepted them all.",
    )
    pub.add_argument("url", metavar="URL")
    pub.add_argument("channel", metavar="CHANNEL")
    pub.add_argument("message", metavar="MESSAGE", nargs="?", help="default: lines of stdin")
    pub.add_argument("--json", action="store_true", help="messages are JSON values, not strings")
    pub.add_argument("--token", help="sent as Authorization: Bearer TOKEN")
    pub.set_defaults(run=run_pub)


def _check_url(url: str) -> str | None:
    """The one-line error for a URL that isn't a ws:// or wss:// URL, else None."""
    try:
        parse_uri(url)
    except InvalidURI as exc:
        return str(exc)
    return None


async def _connect(client: Client, url: str) -> int | None:
    """Open ``client``'s connection; None, or the status after a one-line error.

    The wording is ``ws13 connect``'s (``ws13.cli.errors``): a refused
    connection, a name that doesn't resolve, an HTTP refusal, TLS, and a
    WebSocket endpoint that isn't a hub (``NotAHub``) each read the same.
    """
    try:
        await unless_plain_http(client.connect(), url)
    except NotAHub:
        await client.close()
        return _fail(
            f"cannot connect to {url}: the endpoint did not speak the {SUBPROTOCOL} "
            "subprotocol; is it the hub's URL (ws://HOST:PORT/hub)?"
        )
    except HubError as exc:
        await client.close()
        return _fail(f"cannot connect to {url}: {exc.message}")
    except Exception as exc:
        await client.close()
        failed = connect_failed(url, exc)
        return _fail(str(failed), failed.status)
    return None


def run_sub(args: argparse.Namespace) -> int:
    error = _check_url(args.url)
    if error is not None:
        return _fail(error, 2)
    if args.history is not None and args.history < 0:
        return _fail("--history must be >= 0", 2)
    if args.count is not None and args.count < 0:
        return _fail("--count must be >= 0", 2)
    if args.since is not None and args.since < 0:
        return _fail("--since must be >= 0", 2)
    if args.epoch is not None and args.since is None:
        return _fail("--epoch needs --since", 2)
    return asyncio.run(_sub(args))


async def _sub(args: argparse.Namespace) -> int:
    client = Client(args.url, token=args.token)
    status = await _connect(client, args.url)
    if status is not None:
        return status
    try:
        if args.count == 0:
            return 0
        subscription = await client.subscribe(
            args.channel, since=args.since, epoch=args.epoch, history=args.history
        )
        seen = 0
        async for item in subscription:
            if isinstance(item, Gap):
                print(
                    f"ws13: warning: messages may be missing before offset {item.offset} "
                    f"(epoch {item.epoch}): {item.reason}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            line = json.dumps(
                {
                    "channel": item.channel,
                    "epoch": item.epoch,
                    "offset": item.offset,
                    "time": item.time,
                    "data": item.data,
                },
                ensure_ascii=False,
            )
            print(_printable(line), flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return 0
        return _fail("the subscription ended")
    except HubError as exc:
        return _fail(f"{exc.code} {exc.message}")
    finally:
        await client.close()


def run_pub(args: argparse.Namespace) -> int:
    error = _check_url(args.url)
    if error is not None:
        return _fail(error, 2)
    if args.message is not None:
        texts = [args.message]
    else:
        if sys.stdin.isatty():
            print("ws13: publishing each line typed; Ctrl-D to end", file=sys.stderr, flush=True)
        texts = [line.rstrip("\r\n") for line in sys.stdin]
    messages: list[Any] = []
    for text in texts:
        if args.json:
            try:
                messages.append(json.loads(text))
            except ValueError as exc:
                return _fail(f"invalid JSON message {text[:40]!r}: {exc}", 2)
        else:
            messages.append(text)
    return asyncio.run(_pub(args, messages))


async def _pub(args: argparse.Namespace, messages: list[Any]) -> int:
    client = Client(args.url, token=args.token, reconnect=False)
    status = await _connect(client, args.url)
    if status is not None:
        return status
    try:
        for message in messages:
            await client.publish(args.channel, message)
        return 0
    except HubError as exc:
        return _fail(f"{exc.code} {exc.message}")
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m ws13.hub.cli sub|pub ...``: the same commands as ``ws13 sub|pub``."""
    parser = argparse.ArgumentParser(prog="ws13", description="ws13 hub client commands.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(commands)
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())

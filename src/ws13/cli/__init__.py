"""The ``ws13`` command: ``ws13 serve``, ``ws13 connect``, ``ws13 sub`` and ``ws13 pub``.

Every failure ends with a one-line ``ws13: error: ...`` on stderr and a
non-zero exit status, never a traceback; the commands that connect word
their failures alike (``errors.py``):

* 0 — done (a normal close, or the server stopped by Ctrl-C / SIGTERM);
* 1 — the connection failed or closed abnormally;
* 2 — bad command-line arguments (argparse's convention);
* 130 — interrupted with Ctrl-C while connected.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..version import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    from ..hub import cli as hub_cli
    from . import connect, serve

    parser = argparse.ArgumentParser(
        prog="ws13", description="WebSocket server and client (RFC 6455)."
    )
    parser.add_argument("--version", action="version", version=f"ws13 {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    connect.add_parser(commands)
    hub_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ws13`` command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return status


def fail(message: str, status: int = 1) -> int:
    """Print a one-line error on stderr and return ``status``."""
    print(f"ws13: error: {message}", file=sys.stderr, flush=True)
    return status

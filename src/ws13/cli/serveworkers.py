"""``ws13 serve --workers N``: the parent's side (``ws13.workers`` does the forking).

The parent checks the options, reserves the port (binding it with
``SO_REUSEPORT`` without listening, so that ``--port 0`` gives every worker
the same port and a port taken by another program fails once, here), starts
the hub's local backplane unless ``--redis`` is given, then forks the
workers; each binds the port with ``SO_REUSEPORT`` and runs the full server
(``serve.py``'s ``_serve`` with its ``Worker``). What is per worker:

* ``/health`` answers with the ``worker`` index and ``pid`` of the worker
  that served it;
* log lines: text lines read ``worker N: ...``; JSON ones have ``"worker": N``;
* ``--pcap FILE``: worker N writes ``FILE`` with ``.workerN`` before its
  extension (``cap.pcapng`` → ``cap.worker0.pcapng``, rotated alike);
* ``--metrics``: worker N serves its own metrics at ``--metrics-port`` + N
  (required with workers; Prometheus scrapes each as a target) instead of on
  the shared port, where a scrape would reach any one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ..hub.backplanes.localowner import run_owner
from ..logs import JSONFormatter
from ..workers import Worker, supervise
from . import fail
from .errors import os_error_reason

__all__ = ["add_worker_arguments", "parse_workers", "run_workers", "worker_path"]

Serve = Callable[[argparse.Namespace, Worker | None], Coroutine[Any, Any, int]]


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        metavar="N",
        default="1",
        help="serve from N processes on one port with SO_REUSEPORT, under a supervising "
        "parent; 'auto': one per CPU (1: one process, no parent)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        default=None,
        help="with --workers and --metrics: worker N serves its metrics on PORT+N",
    )


def parse_workers(text: str) -> int:
    """The worker count for ``--workers TEXT``; ValueError with a one-line reason."""
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"--workers {text}: must be a number of processes or 'auto'") from None
    if count < 1:
        raise ValueError(f"--workers {text}: must be 1 or more")
    return count


def worker_path(path: str, index: int) -> str:
    """``cap.pcapng`` → ``cap.worker0.pcapng``: worker ``index``'s own file."""
    file = Path(path)
    return str(file.with_name(f"{file.stem}.worker{index}{file.suffix}"))


def _reserve(host: str, port: int) -> list[socket.socket]:
    """Bind ``host:port`` with SO_REUSEPORT (not listening); OSError if taken.

    Port 0 picks one free port for every address of ``host``. The sockets
    stay open in the parent, so a restarted worker finds its port free of
    other programs; they never listen, so connections reach the workers only.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # As asyncio does: "::" must not take the IPv4 port too.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _log_as(args: argparse.Namespace, worker: Worker) -> None:
    """Make every log line of this process say which worker wrote it."""
    index = worker.index

    def tag(record: logging.LogRecord) -> bool:
        record.worker = index
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)
        if args.log_format != "json":
            handler.setFormatter(logging.Formatter(f"%(asctime)s {worker.name}: %(message)s"))
        else:
            handler.setFormatter(JSONFormatter())


def run_workers(
    args: argparse.Namespace,
    count: int,
    serve: Serve,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
    started: Callable[[], None],
) -> int:
    """Run ``ws13 serve`` as ``count`` workers; the parent's exit status."""
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(os, "fork"):
        return _error(args, "--workers needs SO_REUSEPORT and fork(), which this system lacks", 2)
    if args.metrics and args.metrics_port is None:
        return _error(
            args,
            "--metrics with --workers needs --metrics-port PORT: worker N serves its "
            "metrics on PORT+N",
            2,
        )
    if args.metrics_port is not None:
        if not args.metrics:
            return _error(args, "--metrics-port needs --metrics", 2)
        if not 0 < args.metrics_port <= 65536 - count:
            top = 65536 - count
            return _error(args, f"--metrics-port {args.metrics_port}: must be 1 to {top}", 2)
    try:
        reserved = _reserve(args.host, args.port)
    except OSError as exc:
        reason = os_error_reason(exc, args.host)
        return _error(args, f"cannot listen on {args.host}:{args.port}: {reason}", 1)
    args.port = reserved[0].getsockname()[1]
    pcap = args.pcap
    private = tempfile.mkdtemp(prefix="ws13-")
    services: list[tuple[str, Callable[[Worker], int]]] = []
    if args.redis is None:
        path = os.path.join(private, "backplane.sock")
        args.backplane_url = f"local://{path}"

        def owner(worker: Worker) -> int:
            _close(reserved)
            _log_as(args, worker)
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                return runner.run(run_owner(path, ready=worker.ready, lifeline=worker.lifeline))

        services.append(("backplane", owner))

    def target(worker: Worker) -> int:
        _close(reserved)
        _log_as(args, worker)
        if pcap is not None:
            args.pcap = worker_path(pcap, worker.index)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve(args, worker))

    try:
        return supervise(count, target, services=services, started=started)
    finally:
        _close(reserved)
        shutil.rmtree(private, ignore_errors=True)


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _error(args: argparse.Namespace, message: str, status: int) -> int:
    if args.log_format == "json":
        logging.getLogger("ws13.serve").error("%s", message, extra={"event": "error"})
        return status
    return fail(message, status)

"""A Starlette echo app under uvicorn: ws13's protocol against uvicorn's own three.

Usage: python bench/uvicorn_echo.py [--protocols ws13,websockets,websockets-sansio,wsproto]
                                    [--reference picows]
                                    [--conns 1,100] [--size 32] [--repeat 5]
                                    [--duration 5] [--warmup 1] [--instructions] [--quick]
                                    [--output results.json]

Each protocol's server is ``servers.py uvicorn-NAME``: uvicorn in-process on
uvloop and httptools, ``--ws`` set to ``ws13.uvicorn:WebSocketProtocol`` or to
one of uvicorn's (``websockets``, ``websockets-sansio``, ``wsproto``),
permessage-deflate off, access log off, serving ``make_app()`` below: the
usual Starlette endpoint, ``receive_bytes()`` then ``send_bytes()`` in a
loop. The load is ``loadclient.py``'s picows client (CPU 0; the server on
CPU 1), binary messages of ``--size`` bytes, one round trip in flight per
connection, for 1 and 100 connections: msgs/s and server CPU µs per message.
Repetitions are interleaved (every protocol once, then again) and the table
shows each cell's median; the ratios compare ws13 with the best of uvicorn's
protocols in that cell. ``--instructions`` adds callgrind's instructions per
echo at one connection (``instructions.py``'s method: the count of a long
run minus a short one). A benchmark, not a test: it never judges the
figures, it prints them (and ``--output`` writes them as JSON).

``--reference picows`` adds picows's bare echo server (``servers.py
picows``: no uvicorn, no ASGI) to the same interleaved runs and a row of
its figures over the best of uvicorn's protocols: at one connection a round
trip is mostly the client, the kernel and the wake-ups, so that row is the
most any server under uvicorn could show there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PROTOCOLS = {
    "ws13": "ws13.uvicorn:WebSocketProtocol",
    "websockets": "websockets",
    "websockets-sansio": "websockets-sansio",
    "wsproto": "wsproto",
}
#: Servers outside uvicorn, run beside the protocols as a reference (``--reference``):
#: picows's bare echo (``servers.py picows``), the fastest Python-land server
#: under the same client, sets the ceiling any server under uvicorn can reach.
REFERENCES = {"picows": "picows"}
START_TIMEOUT = 60.0


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same echo as a bare ASGI app, no framework (``--app asgi``)."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "bytes": message.get("bytes")})


def make_app() -> Any:
    """The echo app (uvicorn's ``factory``): binary messages, any path.

    Starlette's endpoint, unless ``UVICORN_ECHO_APP=asgi`` (what ``--app
    asgi`` sets for the servers it starts) asks for ``asgi_echo``.
    """
    if os.environ.get("UVICORN_ECHO_APP") == "asgi":
        return asgi_echo
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_bytes(await websocket.receive_bytes())
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/", echo)])


async def serve_uvicorn(protocol: str, port: int, ready: Callable[[int], None]) -> None:
    """Run uvicorn with ``--ws`` = ``PROTOCOLS[protocol]`` on 127.0.0.1:``port`` (0: any)."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    config = uvicorn.Config(
        make_app,
        factory=True,
        ws=PROTOCOLS[protocol],
        http="httptools",
        ws_max_size=64 * 2**20,
        ws_per_message_deflate=False,
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    ready(sock.getsockname()[1])
    await uvicorn.Server(config).serve(sockets=[sock])


# -- the timed runs -----------------------------------------------------------


def start_server(name: str) -> tuple[subprocess.Popen[str], int]:
    server = REFERENCES.get(name, f"uvicorn-{name}")
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "servers.py"), server, "--cpu", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{server} did not start: {line!r}")
    return proc, int(line.split()[1])


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_load(
    name: str, conns: list[int], size: int, warmup: float, duration: float
) -> list[dict[str, Any]]:
    """One server process, the round-trip load at each connection count in turn."""
    proc, port = start_server(name)
    try:
        specs = [
            {
                "mode": "roundtrip",
                "client": "picows",
                "port": port,
                "server_pid": proc.pid,
                "conns": n,
                "size": size,
                "warmup": warmup,
                "duration": duration,
                "latency": False,
                "cpu": 0,
            }
            for n in conns
        ]
        out = subprocess.run(
            [sys.executable, str(BENCH / "loadclient.py"), json.dumps(specs)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + len(conns) * (warmup + duration + 30),
            check=True,
        ).stdout
        results: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
        return results
    finally:
        stop_server(proc)


def timed(args: argparse.Namespace, names: list[str], conns: list[int]) -> dict[str, Any]:
    """Interleaved repetitions: {name: {conns: [result per repetition]}}."""
    runs: dict[str, Any] = {name: {n: [] for n in conns} for name in names}
    for repetition in range(args.repeat):
        for name in names:
            results = run_load(name, conns, args.size, args.warmup, args.duration)
            for n, result in zip(conns, results, strict=True):
                runs[name][n].append(result)
                if "error" in result:
                    print(f"  {name} {n} conn: {result['error']}", flush=True)
                else:
                    print(
                        f"  rep {repetition + 1} {name:18} {n:3} conn "
                        f"{result['msgs_per_s']:9,.0f} msgs/s "
                        f"{result['server_cpu_us_per_msg']:6.1f} µs/msg "
                        f"({result['server_sys_us_per_msg']:4.1f} in the kernel) "
                        f"(other load {result['other_cpu_pct']:.0f} %)",
                        flush=True,
                    )
    return runs


def median_of(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if "error" not in r and r.get(key) is not None]
    return statistics.median(values) if values else None


# -- instructions -------------------------------------------------------------


def instructions(names: list[str], messages: int, size: int) -> dict[str, float]:
    """Instructions per echo at one connection, per protocol (callgrind)."""
    sys.path.insert(0, str(BENCH))
    from instructions import measure, round_trips, round_trips_per_conn

    low, high = round_trips_per_conn(messages, 1)

    def load(per_conn: int) -> Any:
        async def run(port: int) -> None:
            await round_trips(port, 1, per_conn, size)

        return run

    counts = {}
    for name in names:
        result = measure(f"uvicorn-{name}", load(low), load(low + high), high, False)
        counts[name] = result["instructions_per_msg"]
        print(f"  {name:18} {counts[name]:10,.0f} instructions per echo", flush=True)
    return counts


# -- report -------------------------------------------------------------------


def table(runs: dict[str, Any], conns: list[int], counts: dict[str, float]) -> str:
    """The Markdown table: medians, and ws13 against the best of uvicorn's protocols."""
    lines = [
        "| protocol | "
        + " | ".join(f"{n} conn msgs/s | {n} conn µs/msg (in the kernel)" for n in conns)
    ]
    lines[0] += " | instructions/echo |" if counts else " |"
    lines.append("|---" * (1 + 2 * len(conns) + bool(counts)) + "|")
    medians = {
        name: {
            n: (median_of(by_n[n], "msgs_per_s"), median_of(by_n[n], "server_cpu_us_per_msg"))
            for n in conns
        }
        for name, by_n in runs.items()
    }
    for name, by_n in medians.items():
        cells = []
        for n in conns:
            rate, cpu = by_n[n]
            kernel = median_of(runs[name][n], "server_sys_us_per_msg")
            cells.append("n/a" if rate is None else f"{rate:,.0f}")
            in_kernel = "" if kernel is None else f" ({kernel:.1f})"
            cells.append("n/a" if cpu is None else f"{cpu:.1f}{in_kernel}")
        if counts:
            cells.append(f"{counts[name]:,.0f}" if name in counts else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    others = [name for name in medians if name != "ws13" and name not in REFERENCES]

    def against_best(name: str) -> list[str]:
        """``name``'s cells over the best of uvicorn's protocols in each column."""
        cells = []
        for n in conns:
            rates = [medians[o][n][0] for o in others if medians[o][n][0] is not None]
            cpus = [medians[o][n][1] for o in others if medians[o][n][1] is not None]
            rate, cpu = medians[name][n]
            cells.append(f"{rate / max(rates):.2f}x" if rate and rates else "")
            cells.append(f"{cpu / min(cpus):.2f}x" if cpu and cpus else "")
        return cells

    if "ws13" in medians and others:
        cells = against_best("ws13")
        if counts:
            best = counts.get("websockets-sansio")
            cells.append(f"{counts['ws13'] / best:.2f}x" if best and "ws13" in counts else "")
        lines.append("| **ws13 / best of uvicorn's** | " + " | ".join(cells) + " |")
    for name in REFERENCES:
        if name in medians and others:
            cells = against_best(name) + ([""] if counts else [])
            lines.append(f"| {name} (no uvicorn) / best of uvicorn's | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument(
        "--reference",
        default="",
        help="servers outside uvicorn to run beside them: picows (its bare echo)",
    )
    parser.add_argument("--conns", default="1,100")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--instructions", action="store_true", help="callgrind counts too")
    parser.add_argument("--messages", type=int, default=3000, help="for --instructions")
    parser.add_argument(
        "--app", choices=["starlette", "asgi"], default="starlette", help="the echo app"
    )
    parser.add_argument("--quick", action="store_true", help="smoke: tiny windows, 1 repetition")
    parser.add_argument("--output", help="results JSON")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.duration, args.warmup, args.messages = 1, 0.2, 0.1, 30
    names = args.protocols.split(",")
    unknown = set(names) - set(PROTOCOLS)
    if unknown:
        parser.error(f"unknown protocols: {', '.join(sorted(unknown))}")
    references = [name for name in args.reference.split(",") if name]
    if set(references) - set(REFERENCES):
        parser.error(f"unknown references: {args.reference} (known: {', '.join(REFERENCES)})")
    names += references
    conns = [int(n) for n in args.conns.split(",")]
    # Inherited by the servers this starts (servers.py uvicorn-NAME).
    os.environ["UVICORN_ECHO_APP"] = args.app
    load0 = os.getloadavg()
    started = time.time()
    runs = timed(args, names, conns)
    counts = (
        instructions([name for name in names if name not in REFERENCES], args.messages, args.size)
        if args.instructions
        else {}
    )
    report = table(runs, conns, counts)
    print()
    print(f"{args.app} app, {args.size} B binary echo, uvloop + httptools, median of {args.repeat}")
    print(f"load average before: {load0[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(report)
    if args.output:
        Path(args.output).write_text(
            json.dumps(
                {
                    "started": started,
                    "args": vars(args),
                    "loadavg_before": load0,
                    "loadavg_after": os.getloadavg(),
                    "runs": {
                        name: {str(n): r for n, r in by_n.items()} for name, by_n in runs.items()
                    },
                    "instructions_per_echo": counts,
                    "table": report,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()

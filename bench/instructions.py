"""Server cost per message that doesn't move with the machine: instructions and system calls.

Usage: python bench/instructions.py [--servers ws13,picows,...] [--conns 1,100]
                                    [--sizes 32] [--messages 3000] [--syscalls] [--quick]
                                    [--clients ws13,ws13-callback,picows,websockets]

On a shared VM the timed benchmark (``run.py``) moves by 10-20 % between runs,
more than most single changes to a hot path are worth. This one counts: each
echo server of ``servers.py`` runs under ``valgrind --tool=callgrind``, which
counts the user-space instructions it executes, whatever else the machine is
doing. A plain asyncio client (in this process) opens the connections and does
a fixed number of round trips on each; the server runs twice, with a few and
with many messages, and the difference divided by the extra messages is the
cost of one message, with start-up, imports and handshakes cancelled out.
``PYTHONHASHSEED=0`` makes a run repeat to the instruction (checked: the same
count twice, to within ~0.1 %). Clients are counted the other way round: each
client library (``clientload.py``) runs under callgrind against ws13's server,
and the difference is the client's cost per round trip.

What it leaves out: the kernel's work (the system calls themselves) and
everything that makes one instruction cost more than another (cache misses,
page faults). And large copies count far more than they cost: glibc's
``memcpy`` copies big blocks with ``rep movsb``, which callgrind counts once
per byte, so a 64 KiB message's one copy into a new ``bytes`` shows as 65,536
instructions. Read large-message rows for what else they show, not as times.
``--syscalls`` runs the same load under ``strace -f -c`` instead, for the
system calls per message; every server on uvloop makes three per
round trip at one connection (read, write, epoll_pwait) and a little over two
at 100 connections, so user-space instructions are what separates them.

The floor servers (``floor-callback``, ``floor-coro``, ``floor-step``,
``floor-task``) parse and frame with ws13's C speedups and differ only in how
the echo is run: from ``data_received`` itself (a callback API), from a
coroutine stepped by ``data_received``, from a task whose coroutine
``data_received`` steps inside the task (what ws13's handler was until issue
22 removed stepping: it relied on asyncio's private API),
or from a task woken through a future per message (what ``async for message
in ws`` costs on asyncio when the task is woken).

Writes ``bench/results/instructions.json`` and ``docs/instructions.md``
(``--quick``: ``bench/results/instructions-quick.*``). Needs valgrind (and
strace for ``--syscalls``): ``apt-get install valgrind strace``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("WS13_BENCH_ROOT") or BENCH.parent).resolve()
RESULTS = ROOT / "bench" / "results"

#: The servers of ``ALL_SERVERS`` that implement permessage-deflate.
DEFLATE_SERVERS = ["ws13", "ws13-callback", "aiohttp", "websockets"]
ALL_SERVERS = [
    "ws13",
    "ws13-callback",
    "picows",
    "aiohttp",
    "websockets",
    "raw-asyncio",
    "raw-asyncio-task",
    "floor-callback",
    "floor-coro",
    "floor-step",
    "floor-task",
]
#: Measured only when asked for (``--servers``): ws13 with ``serve(metrics=...)``,
#: for the cost of Prometheus metrics (``docs/metrics.md``).
EXTRA_SERVERS = ["ws13-metrics", "ws13-callback-metrics"]
REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
KEY = b"\x37\xfa\x21\x3d"
# Close 1000, masked with KEY.
CLOSE = bytes([0x88, 0x82]) + KEY + bytes([0x03 ^ KEY[0], 0xE8 ^ KEY[1]])
START_TIMEOUT = 120.0
HANDSHAKES_BASE = 10


def masked_frame(size: int) -> tuple[bytes, int]:
    """A masked binary frame of ``size`` bytes, and the size of its unmasked echo."""
    payload = bytes(i % 251 for i in range(size))
    masked = bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))
    if size < 126:
        return bytes([0x82, 0x80 | size]) + KEY + masked, 2 + size
    if size < 65536:
        return bytes([0x82, 0xFE]) + size.to_bytes(2, "big") + KEY + masked, 4 + size
    return bytes([0x82, 0xFF]) + size.to_bytes(8, "big") + KEY + masked, 10 + size


async def round_trips(port: int, conns: int, per_conn: int, size: int) -> None:
    frame, reply = masked_frame(size)

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:40]!r}")
        for _ in range(per_conn):
            writer.write(frame)
            await reader.readexactly(reply)
        writer.write(CLOSE)
        await asyncio.wait_for(reader.read(), START_TIMEOUT)  # the server's Close, then EOF
        writer.close()

    await asyncio.gather(*(one() for _ in range(conns)))


async def deflate_round_trips(port: int, conns: int, per_conn: int, size: int) -> None:
    """Round trips of ``size`` bytes of varied JSON text, compressed (``rawdeflate``'s client)."""
    sys.path.insert(0, str(BENCH))
    from loadclient import make_texts
    from rawdeflate import open_raw_deflate

    messages = make_texts(size)

    async def one() -> None:
        ws = await open_raw_deflate(f"ws://127.0.0.1:{port}/")
        for i in range(per_conn):
            message = messages[i % len(messages)]
            await ws.send(message)
            if await ws.recv() != message:
                raise RuntimeError("the echo differs from the message")
        await ws.close()

    await asyncio.gather(*(one() for _ in range(conns)))


async def handshakes(port: int, count: int) -> None:
    """``count`` connections, one after the other: open, handshake, Close, EOF."""
    for _ in range(count):
        await round_trips(port, 1, 0, 0)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_server(
    wrapper: list[str], server: str, deflate: bool, env: dict[str, str]
) -> tuple[subprocess.Popen[str], int]:
    """Start ``servers.py server`` (under ``wrapper``); return it and its port once ready."""
    proc = subprocess.Popen(
        [*wrapper, sys.executable, str(BENCH / "servers.py"), server, "--port", "0"]
        + (["--deflate"] if deflate else []),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # A shell's background job starts with SIGINT ignored, and a child
        # inherits that: without this, the server would never stop.
        preexec_fn=_default_sigint,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{server} did not start: {line!r}")
    return proc, int(line.split()[1])


def measure_once(
    tool: str, server: str, load: Callable[[int], Awaitable[None]], deflate: bool = False
) -> Any:
    """Run ``server`` under ``tool`` while ``load(port)`` runs against it."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        if tool == "callgrind":
            wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        else:
            wrapper = ["strace", "-f", "-c", "-o", out]
        proc, port = start_server(wrapper, server, deflate, env)
        try:
            asyncio.run(load(port))
        finally:
            # SIGINT to the Python process (strace's child, or valgrind itself,
            # which forwards it): servers.py exits normally and the tool
            # writes its totals.
            target = proc.pid
            if tool == "strace":
                children = subprocess.run(
                    ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
                ).stdout.split()
                if children:
                    target = int(children[0])
            time.sleep(0.2)
            os.kill(target, signal.SIGINT)
            proc.wait(START_TIMEOUT)
        text = Path(out).read_text()
    if tool == "callgrind":
        return callgrind_total(text)
    calls: dict[str, int] = {}
    for row in text.splitlines():
        fields = row.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    return calls


def callgrind_total(text: str) -> int:
    """The instructions counted in a callgrind output file's text."""
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if match is None:
        raise RuntimeError("no totals in callgrind's output")
    return int(match.group(1))


def measure_client(client: str, conns: int, low: int, high: int, size: int) -> dict[str, Any]:
    """Instructions per round trip in ``client``'s process against ws13's server.

    ``clientload.py`` runs under callgrind with ``low`` and with ``high``
    round trips per connection; the server runs as it is.
    """
    env = dict(os.environ, PYTHONHASHSEED="0")
    server, port = start_server([], "ws13", False, env)
    try:
        counts = []
        for round_trips in (low, high):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "out")
                command = [sys.executable, str(BENCH / "clientload.py"), client, str(port)]
                command += [str(conns), str(round_trips), str(size)]
                subprocess.run(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=START_TIMEOUT * 5,
                )
                counts.append(callgrind_total(Path(out).read_text()))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(START_TIMEOUT)
    return {"instructions_per_msg": (counts[1] - counts[0]) / (conns * (high - low))}


def measure(
    server: str,
    low_load: Callable[[int], Awaitable[None]],
    high_load: Callable[[int], Awaitable[None]],
    units: int,
    syscalls: bool,
    deflate: bool = False,
) -> Any:
    """Instructions (and system calls) per unit: ``high_load`` does ``units`` more."""
    low = measure_once("callgrind", server, low_load, deflate)
    high = measure_once("callgrind", server, high_load, deflate)
    result: dict[str, Any] = {"instructions_per_msg": (high - low) / units}
    if syscalls:
        low_calls = measure_once("strace", server, low_load, deflate)
        high_calls = measure_once("strace", server, high_load, deflate)
        per = {
            name: (high_calls.get(name, 0) - low_calls.get(name, 0)) / units
            for name in set(low_calls) | set(high_calls)
        }
        result["syscalls_per_msg"] = sum(per.values())
        result["syscalls"] = {k: round(v, 3) for k, v in sorted(per.items()) if abs(v) >= 0.005}
    return result


def run_case(
    case: dict[str, Any], measure_case: Callable[[], dict[str, Any]], unit: str
) -> dict[str, Any]:
    """``measure_case()`` into ``case``; print a line; errors go in the case."""
    try:
        case.update(measure_case())
    except Exception as exc:  # reported, not fatal: a peer library may be missing
        case["error"] = f"{type(exc).__name__}: {exc}"
    kind = case["kind"]
    name = case["server"] + " (client)" * (kind == "client")
    what = (
        "handshake + close"
        if kind == "handshake"
        else f"{case['conns']:4} conn {case['size']:7} B" + (" deflate" * (kind == "deflate"))
    )
    shown = case.get("instructions_per_msg")
    print(
        f"{name:18} {what}  " + (f"{shown:10,.0f} {unit}" if shown else case.get("error", "")),
        flush=True,
    )
    return case


def round_trips_per_conn(messages: int, conns: int) -> tuple[int, int]:
    """(the low load's round trips per connection, how many more the high load makes)."""
    per_conn = max(2, messages // conns)
    return max(1, per_conn // 10), per_conn


def tool_version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "not found"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("ws13", "picows", "aiohttp", "websockets", "uvloop"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    found["valgrind"] = tool_version(["valgrind", "--version"])
    return found


def fmt(value: float) -> str:
    return f"{value:,.0f}"


def _table(
    head: list[str], rows: list[tuple[list[str], dict[str, Any], float | None]], calls: bool
) -> list[str]:
    """Markdown rows: the label cells, the count, its ratio to ``ref``, system calls."""
    if calls:
        head = [*head, "syscalls"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for labels, r, ref in rows:
        if "error" in r:
            cells = [*labels, f"error: {r['error']}", ""]
        else:
            count = r["instructions_per_msg"]
            cells = [*labels, fmt(count), f"{count / ref:.2f}x" if ref else "n/a"]
        if calls:
            per = r.get("syscalls") or {}
            total = r.get("syscalls_per_msg")
            detail = ", ".join(f"{k} {v:g}" for k, v in per.items())
            cells.append(f"{total:.2f} ({detail})" if total is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _counts_of(cases: list[dict[str, Any]], server: str) -> dict[tuple[int, int], float]:
    """``server``'s counts in ``cases`` by (conns, size): what the others are compared to."""
    return {
        (r["conns"], r["size"]): r["instructions_per_msg"]
        for r in cases
        if r["server"] == server and "instructions_per_msg" in r
    }


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "# Instructions per message",
        "",
        "Generated by `bench/instructions.py` (see its docstring); don't edit by hand.",
        f"Raw results: `{meta['json']}`.",
        "",
        f"Command: `{meta['command']}` ({meta['date']}, {meta['elapsed_s']:.0f} s)",
        "",
        "User-space instructions the echo server executes per round trip (read a",
        "masked binary message, write it back), counted by callgrind over",
        f"{meta['messages']:,} extra round trips per case, PYTHONHASHSEED=0: the same",
        "code gives the same count on any machine state. The kernel's work is not in",
        "it (every server here makes the same system calls per message; see",
        "*syscalls/msg* where measured). Every server runs on uvloop, compression off.",
        "Large copies are overstated: callgrind counts `rep movsb` (glibc's memcpy",
        "for big blocks) once per byte.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
    ]
    show_calls = any("syscalls_per_msg" in r for r in results["cases"])
    echoes = [r for r in results["cases"] if r.get("kind", "echo") == "echo"]
    opens = [r for r in results["cases"] if r.get("kind") == "handshake"]
    deflates = [r for r in results["cases"] if r.get("kind") == "deflate"]
    picows = _counts_of(echoes, "picows")
    rows = []
    for r in echoes:
        ref = picows.get((r["conns"], r["size"]))
        rows.append(([r["server"], str(r["conns"]), f"{r['size']} B"], r, ref))
    lines += _table(["server", "conns", "size", "instructions/msg", "vs picows"], rows, show_calls)
    if opens:
        ref = next(
            (r.get("instructions_per_msg") for r in opens if r["server"] == "websockets"), None
        )
        lines += [
            "",
            "Per connection: open, opening handshake, Close from the client, the",
            "server's Close and TCP close (one connection at a time).",
            "",
        ]
        lines += _table(
            ["server", "instructions/connection", "vs websockets"],
            [([r["server"]], r, ref) for r in opens],
            show_calls,
        )
    clients = [r for r in results["cases"] if r.get("kind") == "client"]
    if clients:
        picows_client = _counts_of(clients, "picows")
        lines += [
            "",
            "Clients: instructions per round trip in the client's process (send a",
            "32 B binary message, receive its echo from ws13's server; `ws13` is",
            "`await ws.send(m); await ws.recv()`, `ws13-callback` answers from",
            "`set_message_handler()`; `bench/clientload.py`).",
            "",
        ]
        lines += _table(
            ["client", "conns", "instructions/round trip", "vs picows"],
            [
                ([r["server"], str(r["conns"])], r, picows_client.get((r["conns"], r["size"])))
                for r in clients
            ],
            False,
        )
    if deflates:
        websockets = _counts_of(deflates, "websockets")
        lines += [
            "",
            "With permessage-deflate: JSON text echoed compressed both ways, from",
            "`bench/rawdeflate.py`'s client (what browsers offer, zlib level 6 in the",
            "window the server grants), each server with its own defaults.",
            "",
        ]
        lines += _table(
            ["server", "conns", "size", "instructions/msg", "vs websockets"],
            [
                (
                    [r["server"], str(r["conns"]), f"{r['size']} B"],
                    r,
                    websockets.get((r["conns"], r["size"])),
                )
                for r in deflates
            ],
            show_calls,
        )
    lines += [
        "",
        "The floor servers parse and frame with ws13's C speedups and differ only",
        "in how the echo is run: `floor-callback` from `data_received` itself (a",
        "callback API such as picows's), `floor-coro` from a coroutine that",
        "`data_received` steps, `floor-step` from a task whose coroutine",
        "`data_received` steps inside the task (ws13's handler before issue 22),",
        "`floor-task` from a task woken through a future per message (the",
        "least an `async for message in ws` API costs when its task is woken).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--servers", default=",".join(ALL_SERVERS))
    parser.add_argument("--conns", default="1,100", help="comma-separated connection counts")
    parser.add_argument("--sizes", default="32", help="comma-separated message sizes (bytes)")
    parser.add_argument(
        "--messages", type=int, default=3000, help="extra round trips counted per case (3000)"
    )
    parser.add_argument(
        "--handshakes",
        type=int,
        default=300,
        help="extra connections counted (open, handshake, Close) per server; 0: none (300)",
    )
    parser.add_argument(
        "--deflate-sizes",
        default="1024",
        help="JSON text sizes (bytes) echoed compressed, at each --conns; '' for none (1024)",
    )
    parser.add_argument(
        "--clients",
        default="ws13,ws13-callback,picows,websockets",
        help="client libraries counted per round trip against ws13's server, at each --conns"
        " ('' for none)",
    )
    parser.add_argument("--syscalls", action="store_true", help="strace the same loads too")
    parser.add_argument("--quick", action="store_true", help="ws13, 1 conn, 30 messages: smoke")
    parser.add_argument("--output", help="results JSON")
    parser.add_argument("--report", help="Markdown report ('' for none)")
    args = parser.parse_args()
    if args.quick:
        args.servers, args.conns, args.messages, args.handshakes = "ws13", "1", 30, 5
        args.clients = "ws13"
        args.deflate_sizes = "1024"
    if args.output is None:
        name = "instructions-quick" if args.quick else "instructions"
        args.output = str(RESULTS / f"{name}.json")
    if args.report is None:
        args.report = str(
            RESULTS / "instructions-quick.md" if args.quick else ROOT / "docs" / "instructions.md"
        )
    for tool in ("valgrind",) + (("strace",) if args.syscalls else ()):
        if shutil.which(tool) is None:
            print(f"instructions.py: {tool} not found (apt-get install {tool})", file=sys.stderr)
            return 2
    servers = [s for s in args.servers.split(",") if s]
    unknown = sorted(set(servers) - set(ALL_SERVERS) - set(EXTRA_SERVERS))
    if unknown:
        print(f"instructions.py: unknown servers {', '.join(unknown)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    cases: list[dict[str, Any]] = []
    loads = [("echo", round_trips, s, servers) for s in args.sizes.split(",") if s]
    deflating = [s for s in servers if s in DEFLATE_SERVERS]
    loads += [
        ("deflate", deflate_round_trips, s, deflating) for s in args.deflate_sizes.split(",") if s
    ]
    for kind, load, size_text, names in loads:
        size = int(size_text)
        for conns in (int(c) for c in args.conns.split(",")):
            base, per_conn = round_trips_per_conn(args.messages, conns)
            for server in names:
                low = functools.partial(load, conns=conns, per_conn=base, size=size)
                high = functools.partial(load, conns=conns, per_conn=base + per_conn, size=size)
                units = conns * per_conn
                case = {"kind": kind, "server": server, "conns": conns, "size": size}
                deflate = kind == "deflate"
                measure_case = functools.partial(
                    measure, server, low, high, units, args.syscalls, deflate
                )
                cases.append(run_case(case, measure_case, "instructions/msg"))
    for conns in (int(c) for c in args.conns.split(",")) if args.clients else ():
        base, per_conn = round_trips_per_conn(args.messages, conns)
        for client in (c for c in args.clients.split(",") if c):
            case = {"kind": "client", "server": client, "conns": conns, "size": 32}
            measure_case = functools.partial(
                measure_client, client, conns, base, base + per_conn, 32
            )
            cases.append(run_case(case, measure_case, "instructions/round trip"))
    for server in servers if args.handshakes else ():
        low = functools.partial(handshakes, count=HANDSHAKES_BASE)
        high = functools.partial(handshakes, count=HANDSHAKES_BASE + args.handshakes)
        case = {"kind": "handshake", "server": server}
        measure_case = functools.partial(measure, server, low, high, args.handshakes, args.syscalls)
        cases.append(run_case(case, measure_case, "instructions"))
    output = Path(args.output)
    results = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python bench/instructions.py " + " ".join(sys.argv[1:]),
            "elapsed_s": time.monotonic() - started,
            "messages": args.messages,
            "versions": versions(),
            "json": str(output.relative_to(ROOT)) if output.is_relative_to(ROOT) else str(output),
        },
        "cases": cases,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    if args.report:
        Path(args.report).write_text(report(results))
        print(f"wrote {args.report}")
    failed = [c for c in cases if "error" in c and c["server"] == "ws13"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

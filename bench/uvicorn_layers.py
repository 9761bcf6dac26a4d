"""Where a uvicorn echo's instructions go, by layer (callgrind, one connection).

Usage: python bench/uvicorn_layers.py [--app asgi|starlette] [--protocol ws13]
                                      [--messages 3000]

Runs ``servers.py uvicorn-PROTOCOL`` (``uvicorn_echo.py``'s server: uvloop,
httptools, compression off) under callgrind twice, with a tenth of
``--messages`` 32 B binary round trips and with that plus ``--messages``, as
``instructions.py`` does, keeps both output files, and reads them with
``callgrind_annotate --inclusive=yes``: for each C function named below, the
difference of its inclusive count divided by ``--messages`` is its cost per
echo. The layers are C entry points, so Python bytecode (ws13's glue and the
app alike) is what remains of a path once the C calls inside it are taken
out. A benchmark: it prints, it judges nothing. Takes about a minute
(callgrind_annotate included) on ws13's protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from instructions import START_TIMEOUT, callgrind_total, round_trips, start_server  # noqa: E402

#: (label, callgrind function name): inclusive counts read per echo.
FUNCTIONS = [
    ("event loop, all", "uv_run"),
    ("read path: epoll, read(), the protocol's data_received()", "uv__io_poll"),
    ("  uvloop's read callback (GIL, bytes, context)", "__pyx_f_6uvloop_4loop___uv_stream_on_read"),
    ("  data_received() and all it calls", "__pyx_f_6uvloop_4loop_run_in_context1"),
    ("task path: the app's task step, from the call_soon queue", "uv__run_idle"),
    ("  uvloop's Handle._run", "__pyx_f_6uvloop_4loop_6Handle__run"),
    ("  the task step (the app's coroutine and all it calls)", "task_step_impl"),
    ("ws13 core, receive() (C)", "corebase_receive"),
    ("ws13 core, send_message() (C)", "corebase_send_message"),
    ("asyncio: Future.set_result() (with call_soon)", "_asyncio_Future_set_result"),
    ("asyncio: loop.create_future()", "__pyx_pw_6uvloop_4loop_4Loop_37create_future"),
    (
        "uvloop: transport.write() (with the write(2) call)",
        "__pyx_pw_6uvloop_4loop_8UVStream_5write",
    ),
    ("dicts built by bytecode ({...} literals)", "_PyDict_FromItems"),
]


def run(out: str, server: str, per_conn: int, app: str) -> int:
    """One callgrind run of ``server`` with ``per_conn`` round trips; its total."""
    env = dict(os.environ, PYTHONHASHSEED="0", UVICORN_ECHO_APP=app)
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    proc, port = start_server(wrapper, server, False, env)
    try:
        asyncio.run(round_trips(port, 1, per_conn, 32))
    finally:
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(START_TIMEOUT)
    return callgrind_total(Path(out).read_text())


def inclusive(out: str) -> dict[str, int]:
    """Inclusive instructions by function name (all files and objects summed)."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=yes", "--auto=no", out],
        capture_output=True,
        text=True,
        check=True,
        # Elsewhere than the checkout: callgrind_annotate lists a function
        # twice when its source path also resolves relative to the directory.
        cwd="/",
    ).stdout
    counts: dict[str, int] = {}
    for line in text.splitlines():
        # "count (percent)  file:function [object]"; "=> file:function" lines are calls.
        match = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?([^\s:]+:\S+)", line)
        if match:
            name = match.group(2).split(":", 1)[1]
            counts[name] = counts.get(name, 0) + int(match.group(1).replace(",", ""))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=["asgi", "starlette"], default="asgi")
    parser.add_argument("--protocol", default="ws13", help="uvicorn_echo.py's name")
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    low = max(1, args.messages // 10)
    server = f"uvicorn-{args.protocol}"
    with tempfile.TemporaryDirectory() as tmp:
        low_out, high_out = f"{tmp}/low.out", f"{tmp}/high.out"
        total = run(high_out, server, low + args.messages, args.app) - run(
            low_out, server, low, args.app
        )
        before, after = inclusive(low_out), inclusive(high_out)
    print(f"{server}, --app {args.app}: {total / args.messages:,.0f} instructions per echo")
    for label, name in FUNCTIONS:
        per_echo = (after.get(name, 0) - before.get(name, 0)) / args.messages
        print(f"{per_echo:9,.0f}  {label}  [{name}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Turn bench/results/*.json into docs/performance.md and docs/performance.png.

Usage: python bench/report.py [RESULTS_JSON] [--report MD] [--chart PNG]

bench/run.py calls ``write_report()`` itself; this is for re-rendering.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVER_ORDER = [
    "ws13",
    "ws13-callback",
    "websockets",
    "aiohttp",
    "picows",
    "raw-asyncio",
    "raw-asyncio-task",
    "node-ws",
]


# -- formatting ---------------------------------------------------------------


def callback_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """ws13-callback against picows in the round-trip cases: reported beside the targets."""
    rows = []
    for case_name, key, what in (
        ("1conn", "msgs_per_s", "msgs/s"),
        ("100conn", "server_cpu_us_per_msg", "server CPU/msg"),
    ):
        for size, case in (get(results, case_name) or {}).items():
            mine, theirs = case.get("ws13-callback") or {}, case.get("picows") or {}
            r = ratio(mine.get(key), theirs.get(key))
            if r is not None:
                rows.append((f"{case_name} {size}, {what}", f"{r:.2f}x"))
    return rows


def num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def kib(value: Any, digits: int = 1) -> str:
    return num(value / 1024, digits) if isinstance(value, (int, float)) else "—"


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return a / b
    return None


def err(result: dict[str, Any] | None) -> str | None:
    if not result:
        return "not run"
    if "error" in result:
        return "error: " + str(result["error"]).splitlines()[0][:120].replace("|", "/")
    return None


def ordered(servers: dict[str, Any]) -> list[str]:
    return sorted(servers, key=lambda s: SERVER_ORDER.index(s) if s in SERVER_ORDER else 99)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def row_or_error(name: str, result: dict[str, Any] | None, cells: list[str]) -> list[str]:
    problem = err(result)
    if problem:
        return [name, problem] + [""] * (len(cells) - 1)
    return [name, *cells]


# -- targets ------------------------------------------------------------------


def get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results.get("cases", {})
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


NOISY_PCT = 25  # other load (% of a CPU) above which a comparison is flagged


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows."""
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("**met**" if ok else "**missed**")

    def compare(
        label: str,
        a: dict[str, Any] | None,
        b: dict[str, Any] | None,
        key: str,
        want: float,
        higher: bool,
        what: str,
    ) -> None:
        a, b = a or {}, b or {}
        r = ratio(a.get(key), b.get(key))
        if r is None:
            rows.append((label, "not measured", "—"))
            return
        ok = r >= want if higher else r <= want
        noise = max(a.get("other_cpu_pct") or 0, b.get("other_cpu_pct") or 0)
        text = verdict(ok)
        if noise > NOISY_PCT and key != "rss_per_conn":  # memory isn't disturbed by load
            text += f" (unreliable: other load {noise:.0f}%)"
        rows.append((label, f"{r:.2f}x ({what})", text))

    # The performance floor of issue 22 (one hot path), for the default
    # `async for` echo; the callback API's parity with picows beside it.
    # Cases 5 (clients) and 6 (deflate) are reported in their tables.
    for size in ("32 B", "1 KiB"):
        case = get(results, "1conn", size) or {}
        compare(
            f"(1) 1 conn {size}: ws13 ≥ 0.9x picows msgs/s",
            case.get("ws13"),
            case.get("picows"),
            "msgs_per_s",
            0.9,
            True,
            "ws13 / picows",
        )
        compare(
            f"(1) 1 conn {size}: ws13-callback ≥ 0.95x picows msgs/s",
            case.get("ws13-callback"),
            case.get("picows"),
            "msgs_per_s",
            0.95,
            True,
            "ws13-callback / picows",
        )
    for size in ("32 B", "1 KiB"):
        case = get(results, "100conn", size) or {}
        for name, other, want in (
            ("ws13", "raw-asyncio-task", 1.1),
            ("ws13", "websockets", 0.45),
            ("ws13-callback", "picows", 1.15),
        ):
            compare(
                f"(2) 100 conns {size}: {name} server CPU/msg ≤ {want}x {other}"
                + ("'" if other.endswith("s") else "'s"),
                case.get(name),
                case.get(other),
                "server_cpu_us_per_msg",
                want,
                False,
                f"{name} / {other}",
            )
    for size in ("64 KiB", "1 MiB"):
        case = get(results, "large", size) or {}
        compare(
            f"(3) 1 conn {size}: ws13 msgs/s, against picows (before issue 22: 1.02x / 1.00x)",
            case.get("ws13"),
            case.get("picows"),
            "msgs_per_s",
            0.95,
            True,
            "ws13 / picows",
        )
    micro = get(results, "micro") or {}
    mask = (micro.get("masking_GBps") or {}).get("C (_speedups)")
    if mask:
        for size, gbps in mask.items():
            rows.append(
                (f"(3) masking (C) {size} ≥ 5 GB/s", f"{gbps:.1f} GB/s", verdict(gbps >= 5))
            )
    for name, row in (micro.get("utf8_GBps") or {}).items():
        if name == "pure ASCII":
            continue
        for size, gbps in row.items():
            rows.append(
                (
                    f"(3) UTF-8 validation {name} {size} ≥ 2 GB/s",
                    f"{gbps:.2f} GB/s",
                    verdict(gbps >= 2),
                )
            )
    idle_case = next(iter((get(results, "idle") or {}).values()), None) or {}
    ws13_idle = idle_case.get("ws13") or {}
    rss = ws13_idle.get("rss_per_conn")
    if isinstance(rss, (int, float)):
        rows.append(
            ("(4) ≤ 5 KiB server RSS per idle conn", f"{rss / 1024:.1f} KiB", verdict(rss <= 5120))
        )
    else:
        rows.append(("(4) ≤ 5 KiB server RSS per idle conn", "not measured", "—"))
    compare(
        "(4) handshakes/s ≥ 2x websockets",
        ws13_idle,
        idle_case.get("websockets"),
        "handshakes_per_s",
        2.0,
        True,
        "ws13 / websockets",
    )
    return rows


# -- markdown -----------------------------------------------------------------


def roundtrip_tables(case: dict[str, Any], large: bool = False) -> list[str]:
    lines: list[str] = []
    for size, servers in case.items():
        lines.append(f"**{size}**")
        lines.append("")
        header = ["server", "msgs/s", "p50 µs", "p99 µs", "server CPU µs/msg", "server CPU %"]
        if large:
            header.append("server page faults/msg")
        if large:
            header.insert(2, "MB/s each way")
        header += ["client CPU %", "other load %"]
        rows = []
        nbytes = _size_bytes(size)
        for name in ordered(servers):
            r = servers[name]
            cells = [num(r.get("msgs_per_s"))]
            if large:
                cells.append(num((r.get("msgs_per_s") or 0) * nbytes / 1e6, 1))
            cells += [
                num(r.get("p50_us")),
                num(r.get("p99_us")),
                num(r.get("server_cpu_us_per_msg"), 1),
                num(r.get("server_cpu_pct")),
            ]
            if large:
                cells.append(num(r.get("server_faults_per_msg"), 1))
            cells += [num(r.get("client_cpu_pct")), num(r.get("other_cpu_pct"))]
            rows.append(row_or_error(name, r, cells))
        lines += table(header, rows)
    return lines


def _size_bytes(label: str) -> int:
    value, _, unit = label.partition(" ")
    try:
        return int(value) * {"B": 1, "KiB": 1024, "MiB": 1024 * 1024}.get(unit, 1)
    except ValueError:
        return 0


def render(results: dict[str, Any], chart_name: str | None) -> str:
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    params = meta.get("params", {})
    cases = results.get("cases", {})
    lines = ["# Performance", ""]
    lines.append(
        "Generated by `bench/run.py` (see `bench/README.md`); don't edit by hand, "
        "re-run the benchmark. Raw results: `bench/results/latest.json`."
    )
    lines.append("")
    if params.get("quick"):
        lines += [
            "> **Smoke run (`--quick`)**: tiny durations and counts. These numbers only "
            "show that every server and case runs; they say nothing about speed.",
            "",
        ]
    lines += [
        f"Command: `{meta.get('command', '?')}` ({meta.get('date', '?')}, "
        f"{meta.get('elapsed_s', '?')} s)",
        "",
    ]
    if chart_name:
        lines += [f"![benchmark chart]({chart_name})", ""]

    lines += ["## Machine", ""]
    versions = machine.get("versions", {})
    lines.append(
        f"* CPU: {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores; "
        f"Linux {machine.get('kernel', '?')}; Python {machine.get('python', '?')}"
    )
    lines.append(
        "* Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None)
    )
    lines.append(f"* ws13 source: {machine.get('git', '?')}")
    if machine.get("page_fault_us") is not None:
        lines.append(
            f"* A first touch of a fresh memory page (minor page fault) costs "
            f"{machine['page_fault_us']} µs here (bare metal: ~0.1 to 0.3 µs). Cases that "
            "allocate fresh buffers per message (large messages) pay it; see the *page "
            "faults/msg* column."
        )
    if params.get("server_cpu") is not None:
        lines.append(
            f"* Server pinned to CPU {params['server_cpu']}, load client to CPU "
            f"{params['client_cpu']} (`os.sched_setaffinity`); every server on uvloop "
            "(Node: libuv), compression off except case 6."
        )
    else:
        lines.append("* Fewer than 2 CPUs: server and client were not pinned.")
    lines.append(
        f"* Load average (1/5/15 min) at start {' '.join(machine.get('loadavg_start', []))}, "
        f"at end {' '.join(meta.get('loadavg_end', []))}. The *other load %* columns show "
        "the CPU used by everything else on the machine during each measurement "
        "(100 % = one CPU); with 2 CPUs, anything well above 0 means the numbers are noisy."
    )
    if (params.get("repeat") or 1) > 1:
        lines.append(
            f"* Cases 1, 2, 3 and 5 ran {params['repeat']} times, going round the servers "
            "each time; the tables show each server's best repetition (most msgs/s, i.e. "
            "the least disturbed); every repetition is in the JSON (`reps`)."
        )
    lines.append(
        f"* Each run: {params.get('warmup_s')} s warm-up, then {params.get('duration_s')} s "
        "measured. Servers echo binary messages (case 6: text). Server CPU is utime+stime "
        "from /proc/PID/stat over the measured window (10 ms ticks), RSS is VmRSS."
    )
    for m in meta.get("merged", []):
        lines.append(
            f"* Re-measured later and merged in: `{m['command']}` ({m['date']}; cases "
            f"{', '.join(m['cases'])}; servers {', '.join(m['servers'])}; load average "
            f"{' '.join(m['loadavg_start'])} at start; ws13 {m['git']})"
        )
    unavailable = meta.get("unavailable") or {}
    for name, why in unavailable.items():
        lines.append(f"* Not run: {name} ({why})")
    lines.append("")

    target_rows = targets(results)
    if target_rows:
        lines += [
            "## ws13 targets",
            "",
            "The performance floor of issue 22 for the default API (`async for message "
            "in ws: await ws.send(message)`, `ws13`), and the callback API "
            "(`ws13-callback`) beside it, never instead; then masking, UTF-8, memory "
            "and handshakes.",
            "",
        ]
        if params.get("quick"):
            lines += ["Not judged on a smoke run.", ""]
            target_rows = [(t, m, "n/a") for t, m, _ in target_rows]
        lines += table(["target", "measured", "verdict"], [list(r) for r in target_rows])
    beside = callback_rows(results)
    if beside:
        lines += [
            "Beside the targets (never instead): ws13's callback API, "
            "`ws.set_message_handler(ws.send_nowait)`, no task switch per message "
            "(`ws13-callback` in the tables below), against picows's callback API:",
            "",
        ]
        lines += table(["case", "ws13-callback / picows"], [list(r) for r in beside])

    if "1conn" in cases:
        lines += ["## 1. One connection, round trips", ""]
        lines += [
            "Send a message, wait for the echo, repeat. Latency is the round trip seen "
            f"by the load client (the {params.get('client', 'picows')} client).",
            "",
        ]
        lines += roundtrip_tables(cases["1conn"])
    if "100conn" in cases:
        lines += [f"## 2. {params.get('many_conns', 100)} connections, round trips", ""]
        lines += [
            "Every connection does round trips concurrently. **server CPU µs/msg** is "
            "the server's CPU time in the window divided by the messages echoed.",
            "",
        ]
        lines += roundtrip_tables(cases["100conn"])
    if "large" in cases:
        lines += ["## 3. Large messages, one connection", ""]
        lines += roundtrip_tables(cases["large"], large=True)
    if "idle" in cases:
        lines += ["## 4. Idle connections and handshakes", ""]
        for label, servers in cases["idle"].items():
            lines += [
                f"{label} connections opened in batches of 200 (minimal hand-written "
                "client), server VmRSS before and after. Then handshakes: "
                f"{params.get('handshake_concurrency')} concurrent workers each connect, "
                "do the opening handshake, send Close and wait for the server to close TCP, "
                f"for {params.get('handshake_windows', 1)} back-to-back windows of "
                f"{params.get('handshake_duration_s')} s; the table shows each server's best "
                "window (all of them are in the JSON, `hs_windows`).",
                "",
            ]
            rows = []
            for name in ordered(servers):
                r = servers[name]
                rows.append(
                    row_or_error(
                        name,
                        r,
                        [
                            num(r.get("conns")),
                            kib(r.get("rss_per_conn")),
                            num((r.get("server_rss_before") or 0) / 2**20, 1),
                            num((r.get("server_rss_after") or 0) / 2**20, 1),
                            num(r.get("server_cpu_us_per_open")),
                            num(r.get("handshakes_per_s")),
                            num(r.get("hs_server_cpu_us")),
                            num(r.get("hs_server_cpu_pct")),
                            num(r.get("hs_client_cpu_pct")),
                        ],
                    )
                )
            lines += table(
                [
                    "server",
                    "idle conns",
                    "KiB RSS / conn",
                    "RSS before MiB",
                    "RSS after MiB",
                    "server CPU µs / open",
                    "handshakes/s",
                    "server CPU µs / handshake",
                    "server CPU %",
                    "client CPU %",
                ],
                rows,
            )
    if "clients" in cases:
        lines += ["## 5. ws13's client vs picows's client as the load generator", ""]
        lines += [
            "Same round trips, same server; only the client changes. The picows client "
            "runs from its frame callback; the ws13 client is "
            "`await ws.send(m); await ws.recv()` in one task per connection.",
            "",
        ]
        rows = []
        for label, clients in cases["clients"].items():
            p, w = clients.get("picows") or {}, clients.get("ws13") or {}
            r = ratio(w.get("msgs_per_s"), p.get("msgs_per_s"))
            rows.append(
                [
                    label.replace("|", ", "),
                    err(p) or num(p.get("msgs_per_s")),
                    err(w) or num(w.get("msgs_per_s")),
                    f"{r:.2f}x" if r else "—",
                    num(p.get("client_cpu_us_per_msg"), 1),
                    num(w.get("client_cpu_us_per_msg"), 1),
                    num(p.get("p50_us")),
                    num(w.get("p50_us")),
                ]
            )
        lines += table(
            [
                "run",
                "picows client msgs/s",
                "ws13 client msgs/s",
                "ws13 / picows",
                "picows client CPU µs/msg",
                "ws13 client CPU µs/msg",
                "picows p50 µs",
                "ws13 p50 µs",
            ],
            rows,
        )
    if "deflate" in cases:
        lines += ["## 6. permessage-deflate", ""]
        for label, servers in cases["deflate"].items():
            client = params.get("deflate_client")
            described = (
                "`bench/rawdeflate.py`, a minimal zlib client offering "
                "`permessage-deflate; client_max_window_bits` as browsers do,"
                if client == "raw"
                else f"the `{client}` client"
            )
            lines += [
                f"{label}; compression on in server and client ({described} for every "
                "server; library defaults otherwise; Node's ws with `threshold: 128`). RSS per "
                "connection: after each connection exchanged 5 messages, vs before opening "
                "them. Then round trips.",
                "",
            ]
            rows = []
            for name in ordered(servers):
                r = servers[name]
                rows.append(
                    row_or_error(
                        name,
                        r,
                        [
                            num(r.get("msgs_per_s")),
                            num(r.get("p50_us")),
                            num(r.get("p99_us")),
                            num(r.get("server_cpu_us_per_msg"), 1),
                            kib(r.get("rss_per_conn")),
                            num(r.get("client_cpu_pct")),
                            f"`{r.get('extensions')}`",
                        ],
                    )
                )
            lines += table(
                [
                    "server",
                    "msgs/s",
                    "p50 µs",
                    "p99 µs",
                    "server CPU µs/msg",
                    "KiB RSS / conn",
                    "client CPU %",
                    "negotiated",
                ],
                rows,
            )
    if "micro" in cases:
        lines += micro_section(cases["micro"])
    if "profile" in cases:
        lines += profile_section(cases["profile"], params)
    lines += uvicorn_section()
    lines += [
        "## Reproduce",
        "",
        "```sh",
        "pip install -e '.[speed]' -r bench/requirements.txt   # + node/npm for node-ws",
        meta.get("command", "python bench/run.py"),
        "python bench/micro.py",
        "```",
        "",
    ]
    return "\n".join(lines)


#: bench/uvicorn_echo.py's results, by app, when it was run with --output here.
UVICORN_RESULTS = {
    "Starlette endpoint": BENCH / "results" / "uvicorn-starlette.json",
    "bare ASGI app": BENCH / "results" / "uvicorn-asgi.json",
    "Starlette endpoint, a second run": BENCH / "results" / "uvicorn-starlette-2.json",
}


def uvicorn_section() -> list[str]:
    """``## ws13 under uvicorn``: bench/uvicorn_echo.py's tables, if it was run."""
    found = {app: path for app, path in UVICORN_RESULTS.items() if path.exists()}
    if not found:
        return []
    lines = [
        "## ws13 under uvicorn",
        "",
        "`bench/uvicorn_echo.py`: an echo app under uvicorn (uvloop, httptools, compression off)"
        " with `--ws ws13.uvicorn:WebSocketProtocol` and with uvicorn's own protocols; picows's"
        " client (CPU 0) against the server (CPU 1), 32 B binary round trips; each cell is the"
        " median of interleaved repetitions (every protocol once, then again); instructions per"
        " echo are callgrind's at one connection (`instructions.py`'s method). The last row"
        " divides ws13's figure by the best of uvicorn's protocols in that column"
        " (instructions: by websockets-sansio's). See docs/uvicorn.md.",
        "",
    ]
    for app, path in found.items():
        with open(path) as f:
            data = json.load(f)
        args = data["args"]
        command = f"python bench/uvicorn_echo.py --app {args.get('app', 'starlette')}"
        command += f" --repeat {args['repeat']}" + " --instructions" * bool(args["instructions"])
        lines += [
            f"### {app}",
            "",
            f"Command: `{command}`; load average {data['loadavg_before'][0]:.1f} before,"
            f" {data['loadavg_after'][0]:.1f} after (2 CPUs: above 2, others were running).",
            "",
            data["table"],
        ]
        lines += uvicorn_targets(data)
    return lines


def uvicorn_targets(data: dict[str, Any]) -> list[str]:
    """Issue 27's targets, checked on one run of bench/uvicorn_echo.py."""
    import statistics

    def median(name: str, conns: str, key: str) -> float | None:
        values = [r[key] for r in data["runs"].get(name, {}).get(conns, []) if key in r]
        return statistics.median(values) if values else None

    # uvicorn's own protocols only: a --reference server (picows) isn't one.
    reference = set(data.get("args", {}).get("reference", "").split(","))
    others = [name for name in data["runs"] if name != "ws13" and name not in reference]
    checks = []
    cpu = median("ws13", "100", "server_cpu_us_per_msg")
    best_cpu = min(
        filter(None, (median(o, "100", "server_cpu_us_per_msg") for o in others)), default=None
    )
    if cpu and best_cpu:
        checks.append(("server CPU per message at 100 connections", cpu / best_cpu, "<=", 0.45))
    rate = median("ws13", "1", "msgs_per_s")
    best_rate = max(filter(None, (median(o, "1", "msgs_per_s") for o in others)), default=None)
    if rate and best_rate:
        checks.append(("msgs/s at 1 connection", rate / best_rate, ">=", 1.3))
    counts = data.get("instructions_per_echo") or {}
    if counts.get("ws13") and counts.get("websockets-sansio"):
        ratio = counts["ws13"] / counts["websockets-sansio"]
        checks.append(("instructions per echo vs websockets-sansio", ratio, "<=", 0.25))
    lines = []
    for what, value, op, target in checks:
        met = value <= target if op == "<=" else value >= target
        lines.append(
            f"* {what}: {value:.2f}x (target {op} {target}x): {'met' if met else 'missed'}"
        )
    return [*lines, ""] if lines else []


def micro_section(micro: dict[str, Any]) -> list[str]:
    lines = ["## Micro-benchmarks (`bench/micro.py`)", ""]
    if "error" in micro:
        return [*lines, f"Failed: {micro['error']}", ""]
    mask = micro.get("masking_GBps", {})
    if mask:
        sizes = list(next(iter(mask.values())).keys())
        lines += ["Masking, GB/s (10^9 bytes/s):", ""]
        lines += table(
            ["implementation", *sizes],
            [[name, *(num(row.get(s), 2) for s in sizes)] for name, row in mask.items()],
        )
    for key, title in (
        (
            "utf8_GBps",
            "UTF-8 validation, `ws13._accel.utf8_check` (C; what ws13 runs on "
            "fragmented and partly received text), GB/s:",
        ),
        (
            "utf8_decode_GBps",
            "UTF-8 decoding, `bytes.decode('utf-8')` (validation and the `str`: what "
            "a whole text frame costs), GB/s:",
        ),
    ):
        utf8 = micro.get(key, {})
        if utf8:
            sizes = list(next(iter(utf8.values())).keys())
            lines += [title, ""]
            lines += table(
                ["text", *sizes],
                [[name, *(num(row.get(s), 2) for s in sizes)] for name, row in utf8.items()],
            )
    frames = micro.get("frames_per_s", {})
    if frames:
        kinds = [k for k, v in next(iter(frames.values())).items() if isinstance(v, float)]
        lines += [
            "Frame parsing, `Protocol(Side.SERVER).receive_data()` + `events_received()` "
            "on 10,000 small masked frames in 64 KiB chunks, and on large ones in "
            "1448-byte reads (a real network's TCP segments), frames/s:",
            "",
        ]
        lines += table(
            ["build", *kinds],
            [[name, *(num(row.get(k)) for k in kinds)] for name, row in frames.items()],
        )
    return lines


def profile_section(profile: dict[str, Any], params: dict[str, Any]) -> list[str]:
    lines = [
        f"## Profile: ws13 server, {params.get('many_conns', 100)} connections, 32 B",
        "",
    ]
    if "error" in profile:
        return [*lines, f"Not available: {profile['error']}", ""]
    load = profile.get("load", {})
    lines += [
        f"py-spy (250 Hz, {params.get('profile_duration_s')} s, {profile.get('samples')} "
        f"samples, idle time excluded) while the server echoed "
        f"{num(load.get('msgs_per_s'))} msgs/s. Own = innermost Python frame, so C code "
        "(uvloop's socket reads and writes, the event loop itself) counts toward the Python "
        f"function that called it. Raw stacks: `{profile.get('raw_file')}`.",
        "",
    ]
    rows = [
        [str(i + 1), f"`{r['function']}`", num(r["own_pct"], 1), num(r["total_pct"], 1)]
        for i, r in enumerate(profile.get("top", []))
    ]
    lines += table(["#", "function", "own %", "total %"], rows)
    return lines


# -- chart --------------------------------------------------------------------


def write_chart(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results.get("cases", {})
    panels: list[tuple[str, str, dict[str, dict[str, float]]]] = []

    def metric(case: dict[str, Any], key: str, scale: float = 1.0) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for config, servers in case.items():
            for name, r in servers.items():
                value = (r or {}).get(key)
                if isinstance(value, (int, float)) and "error" not in r:
                    out.setdefault(config, {})[name] = value * scale
        return out

    if "1conn" in cases:
        panels.append(("1. One connection: msgs/s", "msgs/s", metric(cases["1conn"], "msgs_per_s")))
        panels.append(("1. One connection: p99 latency", "µs", metric(cases["1conn"], "p99_us")))
    if "100conn" in cases:
        panels.append(
            ("2. Many connections: msgs/s", "msgs/s", metric(cases["100conn"], "msgs_per_s"))
        )
        panels.append(
            (
                "2. Many connections: server CPU per message",
                "µs/msg (lower is better)",
                metric(cases["100conn"], "server_cpu_us_per_msg"),
            )
        )
    if "large" in cases:
        mbps: dict[str, dict[str, float]] = {}
        for config, servers in cases["large"].items():
            for name, r in servers.items():
                if r and "error" not in r and r.get("msgs_per_s"):
                    mbps.setdefault(config, {})[name] = r["msgs_per_s"] * _size_bytes(config) / 1e6
        panels.append(("3. Large messages, one connection", "MB/s each way", mbps))
    if "idle" in cases:
        panels.append(
            (
                "4. Server RSS per idle connection",
                "KiB (lower is better)",
                metric(cases["idle"], "rss_per_conn", 1 / 1024),
            )
        )
        panels.append(
            ("4. Handshakes per second", "handshakes/s", metric(cases["idle"], "handshakes_per_s"))
        )
    if "clients" in cases:
        clients: dict[str, dict[str, float]] = {}
        for label, by_client in cases["clients"].items():
            for client, r in by_client.items():
                if r and "error" not in r and r.get("msgs_per_s"):
                    server, _, rest = label.partition("|")
                    short = server.replace(" server", " srv") + "\n" + rest.replace("|", ", ")
                    clients.setdefault(short, {})[f"{client} client"] = r["msgs_per_s"]
        panels.append(("5. Load generator: ws13 vs picows client", "msgs/s", clients))
    if "deflate" in cases:
        panels.append(
            ("6. permessage-deflate: msgs/s", "msgs/s", metric(cases["deflate"], "msgs_per_s"))
        )
        panels.append(
            (
                "6. permessage-deflate: server RSS per connection",
                "KiB (lower is better)",
                metric(cases["deflate"], "rss_per_conn", 1 / 1024),
            )
        )
    micro = cases.get("micro") or {}
    if micro.get("masking_GBps"):
        panels.append(("Micro: masking", "GB/s (log)", _transpose(micro["masking_GBps"])))
    if micro.get("frames_per_s"):
        frames = {
            build: {k: v for k, v in row.items() if isinstance(v, float)}
            for build, row in micro["frames_per_s"].items()
            if isinstance(row, dict)
        }
        panels.append(("Micro: frame parsing", "frames/s (log)", _transpose(frames)))
    if not panels:
        return
    cols = 4
    rows_n = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.5 * cols, 4.2 * rows_n), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (title, ylabel, data) in zip(axes.flat, panels, strict=False):
        configs = list(data)
        names = sorted(
            {n for v in data.values() for n in v},
            key=lambda s: SERVER_ORDER.index(s) if s in SERVER_ORDER else 50 + len(s),
        )
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            xs = [j + i * width for j in range(len(configs))]
            ys = [data[c].get(name, 0) for c in configs]
            key = name.removesuffix(" client")
            ci = SERVER_ORDER.index(key) if key in SERVER_ORDER else 6 + i
            ax.bar(xs, ys, width, label=name, color=colors(ci % 10))
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(configs))])
        ax.set_xticklabels(configs, fontsize=8 if len(configs) <= 3 else 6.5)
        ax.set_title(title, fontsize=10)
        if "(log)" in ylabel:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    suptitle = (
        f"ws13 benchmarks — {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores, "
        f"Python {machine.get('python', '?')}, server on CPU 1 / client on CPU 0"
    )
    if meta.get("params", {}).get("quick"):
        suptitle += " — SMOKE RUN (--quick), not a measurement"
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _transpose(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """{series: {config: v}} → {config: {series: v}}."""
    out: dict[str, dict[str, float]] = {}
    for series, row in rows.items():
        for config, value in row.items():
            out.setdefault(config, {})[series] = value
    return out


def write_report(results: dict[str, Any], report: str | None, chart: str | None) -> None:
    chart_name = None
    if chart:
        try:
            write_chart(results, chart)
            chart_name = Path(chart).name
        except Exception as exc:  # matplotlib missing or broken: the report still goes out
            print(f"chart not written: {exc!r}", file=sys.stderr)
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(render(results, chart_name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="?", default=str(BENCH / "results" / "latest.json"))
    parser.add_argument("--report", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--chart", default=str(ROOT / "docs" / "performance.png"))
    args = parser.parse_args()
    with open(args.results) as f:
        results = json.load(f)
    write_report(results, args.report or None, args.chart or None)


if __name__ == "__main__":
    main()

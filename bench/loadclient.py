"""The load generator that bench/run.py drives against every server.

Usage: python bench/loadclient.py '<json spec>'  (prints one JSON object)

It runs in its own process on uvloop, pinned to ``spec["cpu"]`` (CPU 0), and
reads the server's CPU time and RSS from /proc itself, so the measurement
window is exactly the load window.

Clients (``spec["client"]``):

* ``picows`` — the default load client for every server: picows's Cython
  WebSocket client, driven from its frame callback (no coroutine per message),
  so it costs a few microseconds of CPU per round trip.
* ``raw`` — ``rawdeflate.RawDeflateClient``, a minimal permessage-deflate
  client (zlib and plain Python): the default for the permessage-deflate
  case, which picows can't drive.
* ``ws13`` / ``websockets`` — the libraries' own asyncio clients
  (``await ws.send(m); await ws.recv()`` per round trip): case 5 (ws13's
  client as the load generator) and, on request, the permessage-deflate case.
* handshakes and idle connections use ``RawClient`` below, a minimal
  hand-written WebSocket client over ``asyncio.Protocol`` (one precomputed
  request, a check for ``101``, a masked Close frame), so that the client's
  own handshake cost stays far below any server's.

Modes (``spec["mode"]``): ``roundtrip``, ``idle``, ``handshake``, ``deflate``.
Every loop is bounded in time and count and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import time
import traceback
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- /proc --------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[float, int, float]:
    """(utime + stime in seconds, minor page faults, stime in seconds: the
    kernel's part) of ``pid``, all threads."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()  # fields[0] is field 3, "state"
    utime, stime = int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    return utime + stime, int(fields[7]), stime


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) in seconds."""
    return proc_stat(pid)[0]


def proc_rss(pid: int) -> int:
    """VmRSS of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def system_busy(*, steal: bool = True) -> float:
    """CPU seconds all CPUs spent busy since boot (for the background-load estimate).

    ``/proc/stat``'s user, nice, system, irq, softirq (which a process's own
    utime + stime leave out: the loopback receive path runs there) and, with
    ``steal``, the time the hypervisor gave to other machines: load for a
    background estimate, not work done here.
    """
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle - (0 if steal else fields[7])) / CLK_TCK


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(sorted_values: list[int], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return float(sorted_values[k])


# -- payloads -----------------------------------------------------------------


def make_payload(size: int, text: bool) -> bytes:
    if text:
        # Compressible, JSON-like, mostly-ASCII text (what deflate is for).
        unit = (
            '{"id": %d, "user": "user-%d", "event": "price_update", "symbol": "ETH-USD", '
            '"bid": 3456.78, "ask": 3456.91, "tags": ["a", "b", "ünïcode"]}, '
        )
        out = []
        i = 0
        while sum(map(len, out)) < size:
            out.append(unit % (i, i * 7 % 1000))
            i += 1
        return "".join(out).encode()[:size].decode("utf-8", "ignore").encode()
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def make_texts(size: int, count: int = 64) -> list[str]:
    """``count`` different JSON-like texts of about ``size`` bytes: the deflate case's messages.

    Ticker-like records whose ids, symbols and prices vary (seeded, so every
    run and every server gets the same ones). One text sent again and again
    would measure the compressor's window, not the server: a repeat within
    the window compresses to a few bytes, so larger windows won by a factor
    that real, varied traffic doesn't show.
    """
    rng = random.Random(size)
    texts = []
    for _ in range(count):
        records: list[str] = []
        while sum(map(len, records)) < size:
            symbol = rng.choice(("ETH-USD", "BTC-USD", "SOL-EUR", "ADA-USD"))
            records.append(
                f'{{"id": {rng.randrange(10**6)}, "user": "user-{rng.randrange(1000)}", '
                f'"event": "price_update", "symbol": "{symbol}", '
                f'"bid": {rng.uniform(1000, 5000):.2f}, "ask": {rng.uniform(1000, 5000):.2f}, '
                '"tags": ["a", "b", "ünïcode"]}, '
            )
        texts.append("".join(records).encode()[:size].decode("utf-8", "ignore"))
    return texts


# -- the round-trip window ----------------------------------------------------


class Window:
    """Counts round trips while recording; snapshots CPU at both ends."""

    def __init__(self, server_pid: int, record_latency: bool) -> None:
        self.server_pid = server_pid
        self.recording = False
        self.running = True
        self.count = 0
        self.errors = 0
        self.record_latency = record_latency
        self.latencies: list[int] = []
        self.t0 = self.t1 = 0.0
        self.server_cpu0 = self.server_cpu1 = 0.0
        self.server_sys0 = self.server_sys1 = 0.0
        self.client_cpu0 = self.client_cpu1 = 0.0
        self.busy0 = self.busy1 = 0.0
        self.faults0 = self.faults1 = 0

    def start(self) -> None:
        self.server_cpu0, self.faults0, self.server_sys0 = proc_stat(self.server_pid)
        self.client_cpu0 = self_cpu()
        self.busy0 = system_busy()
        self.t0 = time.perf_counter()
        self.recording = True

    def stop(self) -> None:
        self.recording = False
        self.running = False
        self.t1 = time.perf_counter()
        self.server_cpu1, self.faults1, self.server_sys1 = proc_stat(self.server_pid)
        self.client_cpu1 = self_cpu()
        self.busy1 = system_busy()

    def result(self) -> dict[str, Any]:
        elapsed = self.t1 - self.t0
        n = self.count
        lat = sorted(self.latencies)
        server_cpu = self.server_cpu1 - self.server_cpu0
        client_cpu = self.client_cpu1 - self.client_cpu0
        out: dict[str, Any] = {
            "msgs": n,
            "seconds": elapsed,
            "msgs_per_s": n / elapsed if elapsed else 0.0,
            "server_cpu_s": server_cpu,
            "server_cpu_pct": 100 * server_cpu / elapsed if elapsed else 0.0,
            "server_cpu_us_per_msg": 1e6 * server_cpu / n if n else None,
            # The kernel's part (stime): system calls, TCP, the loopback path.
            "server_sys_us_per_msg": (
                1e6 * (self.server_sys1 - self.server_sys0) / n if n else None
            ),
            "server_faults_per_msg": (self.faults1 - self.faults0) / n if n else None,
            "client_cpu_s": client_cpu,
            "client_cpu_pct": 100 * client_cpu / elapsed if elapsed else 0.0,
            "client_cpu_us_per_msg": 1e6 * client_cpu / n if n else None,
            "errors": self.errors,
            # CPU used by everything else on the machine during the window
            # (100% = one whole CPU): other processes, interrupts.
            "other_cpu_pct": 100
            * max(0.0, (self.busy1 - self.busy0) - server_cpu - client_cpu)
            / elapsed
            if elapsed
            else 0.0,
        }
        if lat:
            out["p50_us"] = percentile(lat, 50) / 1000
            out["p99_us"] = percentile(lat, 99) / 1000
            out["mean_us"] = sum(lat) / len(lat) / 1000
        return out


async def run_window(window: Window, warmup: float, duration: float) -> None:
    await asyncio.sleep(warmup)
    window.start()
    await asyncio.sleep(duration)
    window.stop()


# -- picows load client -------------------------------------------------------


async def picows_roundtrip(spec: dict[str, Any], payload: bytes, window: Window) -> None:
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    loop = asyncio.get_running_loop()
    msg_type = WSMsgType.TEXT if spec.get("text") else WSMsgType.BINARY
    size = len(payload)
    perf = time.perf_counter_ns
    record_latency = window.record_latency
    latencies = window.latencies

    class RoundTrip(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.sent_at = 0
            self.transport: Any = None
            self.idle: asyncio.Future[None] = loop.create_future()

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def start(self) -> None:
            self.sent_at = perf()
            self.transport.send(msg_type, payload)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if not frame.fin:
                return
            now = perf()
            if frame.payload_size != size and frame.msg_type is msg_type:
                window.errors += 1
            if window.recording:
                window.count += 1
                if record_latency:
                    latencies.append(now - self.sent_at)
            if window.running:
                self.sent_at = now
                transport.send(msg_type, payload)
            elif not self.idle.done():
                self.idle.set_result(None)

        def on_ws_disconnected(self, transport: Any) -> None:
            if not self.idle.done():
                self.idle.set_result(None)

    url = f"ws://127.0.0.1:{spec['port']}/"
    listeners: list[RoundTrip] = []
    for _ in range(spec["conns"]):
        _, listener = await ws_connect(RoundTrip, url, max_frame_size=64 * 2**20)
        listeners.append(listener)
    for listener in listeners:
        listener.start()
    await run_window(window, spec["warmup"], spec["duration"])
    await asyncio.wait([listener.idle for listener in listeners], timeout=10)
    for listener in listeners:
        listener.transport.send_close(WSCloseCode.OK)
    await asyncio.wait(
        [asyncio.ensure_future(listener.transport.wait_disconnected()) for listener in listeners],
        timeout=5,
    )
    for listener in listeners:
        listener.transport.disconnect(graceful=False)


# -- ws13 / websockets asyncio clients ----------------------------------------


def library_connect(client: str, deflate: bool):  # type: ignore[no-untyped-def]
    if client == "raw" and deflate:
        from rawdeflate import open_raw_deflate

        return open_raw_deflate
    if client == "ws13":
        from ws13.asyncio import connect

        def open_ws13(url: str):  # type: ignore[no-untyped-def]
            return connect(url, compression="deflate" if deflate else None, max_size=64 * 2**20)

        return open_ws13
    if client == "websockets":
        from websockets.asyncio.client import connect as wconnect

        def open_websockets(url: str):  # type: ignore[no-untyped-def]
            return wconnect(url, compression="deflate" if deflate else None, max_size=64 * 2**20)

        return open_websockets
    raise ValueError(f"unknown client {client!r}")


async def coroutine_roundtrips(
    connections: list[Any], messages: list[Any], window: Window, warmup: float, duration: float
) -> None:
    """Each connection sends ``messages`` in turn, each after the echo of the one before."""
    perf = time.perf_counter_ns
    latencies = window.latencies
    record_latency = window.record_latency
    count = len(messages)

    async def worker(ws: Any, i: int) -> None:
        while window.running:
            message = messages[i % count]
            i += 1
            t0 = perf()
            await ws.send(message)
            echo = await ws.recv()
            if window.recording:
                window.count += 1
                if record_latency:
                    latencies.append(perf() - t0)
            if len(echo) != len(message):
                window.errors += 1

    tasks = [asyncio.ensure_future(worker(ws, i)) for i, ws in enumerate(connections)]
    await run_window(window, warmup, duration)
    await asyncio.wait(tasks, timeout=10)


async def close_all(connections: list[Any]) -> None:
    await asyncio.wait([asyncio.ensure_future(ws.close()) for ws in connections], timeout=10)


async def library_roundtrip(spec: dict[str, Any], payload: bytes, window: Window) -> None:
    open_ws = library_connect(spec["client"], spec.get("deflate", False))
    url = f"ws://127.0.0.1:{spec['port']}/"
    message: Any = payload.decode() if spec.get("text") else payload
    connections = [await open_ws(url) for _ in range(spec["conns"])]
    await coroutine_roundtrips(connections, [message], window, spec["warmup"], spec["duration"])
    await close_all(connections)


async def mode_roundtrip(spec: dict[str, Any]) -> dict[str, Any]:
    payload = make_payload(spec["size"], spec.get("text", False))
    window = Window(spec["server_pid"], spec.get("latency", True))
    rss0 = proc_rss(spec["server_pid"])
    if spec["client"] == "picows":
        await picows_roundtrip(spec, payload, window)
    else:
        await library_roundtrip(spec, payload, window)
    result = window.result()
    result["server_rss_before"] = rss0
    result["server_rss_after"] = proc_rss(spec["server_pid"])
    return result


# -- deflate: RSS per connection, then throughput ------------------------------


async def mode_deflate(spec: dict[str, Any]) -> dict[str, Any]:
    """100 deflate connections, each exchanging a few messages; RSS; then round trips."""
    pid = spec["server_pid"]
    open_ws = library_connect(spec["client"], True)
    url = f"ws://127.0.0.1:{spec['port']}/"
    messages = make_texts(spec["size"])

    # Warm up the server (imports, zlib, first allocations), then let it settle.
    warm = [await open_ws(url) for _ in range(5)]
    for ws in warm:
        for _ in range(spec["exchanges"]):
            await ws.send(messages[0])
            await ws.recv()
    await close_all(warm)
    await asyncio.sleep(spec.get("settle", 1.0))
    rss0 = proc_rss(pid)
    connections = [await open_ws(url) for _ in range(spec["conns"])]
    for ws in connections:
        for i in range(spec["exchanges"]):
            await ws.send(messages[i % len(messages)])
            await ws.recv()
    extensions = _negotiated(connections[0])
    await asyncio.sleep(spec.get("settle", 1.0))
    rss1 = proc_rss(pid)

    window = Window(pid, spec.get("latency", True))
    await coroutine_roundtrips(connections, messages, window, spec["warmup"], spec["duration"])
    await close_all(connections)
    result = window.result()
    result.update(
        server_rss_before=rss0,
        server_rss_after=rss1,
        rss_per_conn=(rss1 - rss0) / spec["conns"],
        message_bytes=len(messages[0].encode()),
        extensions=extensions,
    )
    return result


def _negotiated(ws: Any) -> str | None:
    response = getattr(ws, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        return headers.get("Sec-WebSocket-Extensions")  # type: ignore[no-any-return]
    except Exception:
        return None


# -- a minimal hand-written client for handshakes and idle connections --------

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
CLOSE_FRAME = bytes((0x88, 0x82)) + b"\x00\x00\x00\x00" + (1000).to_bytes(2, "big")


def request_bytes(port: int) -> bytes:
    return (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (port, KEY)
    )


class RawClient(asyncio.Protocol):
    """Opening handshake, then idle; ``close()`` sends Close and waits for TCP close."""

    def __init__(self, request: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.transport: Any = None
        self.buf = b""
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            return  # the Close echo, or a keepalive Ping: ignored
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end >= 0:
            if self.buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_result(None)
            else:
                self.opened.set_exception(RuntimeError(self.buf[:end].decode(errors="replace")))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(CLOSE_FRAME)


async def raw_open(loop: asyncio.AbstractEventLoop, port: int, request: bytes) -> RawClient:
    _, client = await loop.create_connection(lambda: RawClient(request, loop), "127.0.0.1", port)
    await client.opened
    return client


async def raw_close_all(clients: list[RawClient], wait: float = 10) -> None:
    for client in clients:
        client.close()
    pending = [client.closed for client in clients if not client.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=wait)
    for client in clients:
        if not client.closed.done():
            client.transport.abort()


async def mode_idle(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pid, port, n, batch = spec["server_pid"], spec["port"], spec["conns"], spec["batch"]
    request = request_bytes(port)
    # Warm up: a few connections opened and closed, then let the server settle.
    warm = await asyncio.gather(*(raw_open(loop, port, request) for _ in range(50)))
    await raw_close_all(list(warm))
    await asyncio.sleep(spec.get("settle", 1.0))
    rss0 = proc_rss(pid)
    cpu0 = proc_cpu(pid)
    t0 = time.perf_counter()
    clients: list[RawClient] = []
    error = None
    try:
        while len(clients) < n:
            k = min(batch, n - len(clients))
            clients.extend(await asyncio.gather(*(raw_open(loop, port, request) for _ in range(k))))
    except Exception as exc:
        error = f"opened {len(clients)} of {n}: {exc!r}"
    open_seconds = time.perf_counter() - t0
    await asyncio.sleep(spec.get("settle", 1.0))
    rss1 = proc_rss(pid)
    cpu1 = proc_cpu(pid)
    opened = len(clients)
    await raw_close_all(clients, wait=30)
    await asyncio.sleep(spec.get("settle", 1.0) / 2)
    result: dict[str, Any] = {
        "conns": opened,
        "server_rss_before": rss0,
        "server_rss_after": rss1,
        "rss_per_conn": (rss1 - rss0) / opened if opened else None,
        "open_seconds": open_seconds,
        "server_cpu_us_per_open": 1e6 * (cpu1 - cpu0) / opened if opened else None,
    }
    if error:
        result["error"] = error
    result.update(await handshakes(spec, loop, request))
    return result


async def handshakes(
    spec: dict[str, Any], loop: asyncio.AbstractEventLoop, request: bytes
) -> dict[str, Any]:
    """Open, handshake, close, repeat, with ``concurrency`` workers for ``duration``."""
    pid, port = spec["server_pid"], spec["port"]
    count = 0
    failures = 0
    running = True

    async def worker() -> None:
        nonlocal count, failures
        while running:
            try:
                client = await raw_open(loop, port, request)
                client.close()
                await asyncio.wait_for(client.closed, 5)
            except Exception:
                failures += 1
                await asyncio.sleep(0.01)
                continue
            count += 1

    workers = [asyncio.ensure_future(worker()) for _ in range(spec["hs_concurrency"])]
    await asyncio.sleep(spec["warmup"])
    # Several back-to-back windows; the best one (most handshakes/s, the least
    # disturbed on a noisy machine) is reported, every window is kept.
    windows: list[dict[str, Any]] = []
    for _ in range(spec.get("hs_windows", 1)):
        c0, cpu0, ccpu0, t0 = count, proc_cpu(pid), self_cpu(), time.perf_counter()
        await asyncio.sleep(spec["hs_duration"])
        c1, cpu1, ccpu1, t1 = count, proc_cpu(pid), self_cpu(), time.perf_counter()
        n = c1 - c0
        windows.append(
            {
                "handshakes": n,
                "handshakes_per_s": n / (t1 - t0),
                "hs_server_cpu_us": 1e6 * (cpu1 - cpu0) / n if n else None,
                "hs_server_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
                "hs_client_cpu_pct": 100 * (ccpu1 - ccpu0) / (t1 - t0),
            }
        )
    running = False
    await asyncio.wait(workers, timeout=10)
    best = max(windows, key=lambda w: w["handshakes_per_s"])
    return {
        **best,
        "hs_failures": failures,
        "hs_windows": [round(w["handshakes_per_s"]) for w in windows],
    }


MODES = {"roundtrip": mode_roundtrip, "idle": mode_idle, "deflate": mode_deflate}


async def run_specs(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    for spec in specs:
        try:
            result = await asyncio.wait_for(MODES[spec["mode"]](spec), spec.get("timeout", 300))
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        results.append(result)
    return results


def main() -> None:
    """Run one spec (a JSON object) or several in turn (a JSON list); print the result(s)."""
    arg = json.loads(sys.argv[1])
    specs = arg if isinstance(arg, list) else [arg]
    cpu = specs[0].get("cpu") if specs else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run  # type: ignore[assignment]
    results = runner(run_specs(specs))
    print(json.dumps(results if isinstance(arg, list) else results[0]), flush=True)


if __name__ == "__main__":
    main()

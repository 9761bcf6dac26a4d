"""Run the ws13 benchmark suite and write docs/performance.md.

Usage:
    python bench/run.py [--quick] [--cases 1conn,100conn,...] [--servers ws13,picows,...]

Each server runs in its own process pinned to CPU 1; the load client runs in
another pinned to CPU 0 (bench/loadclient.py). Everything targets 127.0.0.1.
Results go to bench/results/latest.json, docs/performance.md and
docs/performance.png. ``--quick`` is a smoke run (tiny durations and counts,
under a minute): it checks that everything works and never judges speed.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# The repository whose docs/ and bench/results/ get the output. WS13_BENCH_ROOT
# lets a copy of bench/ (say, in /tmp, safe from a `git stash -u` in the work
# tree during a long run) write into the real repository.
ROOT = Path(os.environ.get("WS13_BENCH_ROOT") or BENCH.parent).resolve()
NODE_DIR = BENCH / "node"
RESULTS = ROOT / "bench" / "results"

ALL_SERVERS = [
    "ws13",
    "ws13-callback",
    "websockets",
    "aiohttp",
    "picows",
    "raw-asyncio",
    "raw-asyncio-task",
    "node-ws",
]
DEFLATE_SERVERS = ["ws13", "ws13-callback", "websockets", "aiohttp", "node-ws"]
ROUNDTRIP_CASES = ["1conn", "100conn", "large"]
ALL_CASES = ["1conn", "100conn", "large", "idle", "clients", "deflate", "micro", "profile"]

KiB, MiB = 1024, 1024 * 1024


def size_label(size: int) -> str:
    if size >= MiB:
        return f"{size // MiB} MiB"
    if size >= KiB:
        return f"{size // KiB} KiB"
    return f"{size} B"


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- CPUs ---------------------------------------------------------------------


def pick_cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU): 1 and 0 when both are available to us."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return (1, 0) if {0, 1} <= set(cpus) else (cpus[1], cpus[0])
    return None, None


def pinner(cpu: int | None):  # type: ignore[no-untyped-def]
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


# -- servers ------------------------------------------------------------------


class ServerError(Exception):
    pass


class Server:
    """One echo server process; ``start()`` waits for its ``READY <port>`` line."""

    def __init__(self, name: str, cpu: int | None, deflate: bool = False) -> None:
        self.name = name
        self.cpu = cpu
        self.deflate = deflate
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.stderr: Any = None
        self._stderr_pos = 0

    def command(self) -> list[str]:
        if self.name == "node-ws":
            cmd = ["node", str(NODE_DIR / "server.js"), "0"]
            return cmd + (["deflate"] if self.deflate else [])
        cmd = [sys.executable, str(BENCH / "servers.py"), self.name]
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        return cmd + (["--deflate"] if self.deflate else [])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30) -> Server:
        # stderr to a file, not a pipe: a server that logs a lot must never block.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self._stderr_pos = 0
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            preexec_fn=pinner(self.cpu),
            cwd=str(ROOT),
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(b"READY "):
                    self.port = int(line.split()[1])
                    return self
                if not line:
                    break
            elif self.proc.poll() is not None:
                break
        err = self.stop()
        raise ServerError(f"{self.name} did not start: {err or line.decode(errors='replace')}")

    def new_stderr(self) -> str:
        """What the server wrote to stderr since the last call."""
        if self.stderr is None:
            return ""
        self.stderr.seek(self._stderr_pos)
        data: bytes = self.stderr.read()
        self._stderr_pos += len(data)
        self.stderr.seek(0, 2)
        return data.decode(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> str:
        """Stop the server; return the tail of its stderr."""
        proc = self.proc
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        self.proc = None
        self.stderr.seek(0)
        err: bytes = self.stderr.read()
        self.stderr.close()
        return err.decode(errors="replace").strip()[-2000:]


def available_servers(requested: list[str]) -> dict[str, str | None]:
    """name → None if runnable, else why not."""
    out: dict[str, str | None] = {}
    for name in requested:
        reason = None
        if name == "node-ws":
            if shutil.which("node") is None:
                reason = "node is not installed"
            elif not (NODE_DIR / "node_modules" / "ws").is_dir():
                reason = npm_install()
        else:
            module = "ws13" if name.startswith(("raw-asyncio", "ws13")) else name
            if (
                importlib.util.find_spec(module) is None
                or importlib.util.find_spec("uvloop") is None
            ):
                reason = (
                    f"{module} or uvloop is not installed (pip install -r bench/requirements.txt)"
                )
        out[name] = reason
    return out


def npm_install() -> str | None:
    if shutil.which("npm") is None:
        return "npm is not installed"
    log("installing Node's ws into bench/node (npm ci)")
    try:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
            capture_output=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"npm ci failed: {exc}"
    return None


# -- the load client ----------------------------------------------------------


def run_client(specs: list[dict[str, Any]], cpu: int | None) -> list[dict[str, Any]]:
    """Run the load client once on ``specs`` (in turn); one result per spec, never raises."""
    timeout = sum(spec["timeout"] for spec in specs) + 30
    try:
        proc = subprocess.run(
            [sys.executable, str(BENCH / "loadclient.py"), json.dumps(specs)],
            capture_output=True,
            timeout=timeout,
            preexec_fn=pinner(cpu),
            cwd=str(ROOT),
        )
    except subprocess.TimeoutExpired:
        return [{"error": f"load client timed out after {timeout:.0f} s"} for _ in specs]
    try:
        results: list[dict[str, Any]] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        if not isinstance(results, list) or len(results) != len(specs):
            raise ValueError("wrong number of results")
    except (ValueError, IndexError):
        error = (
            f"load client failed (exit {proc.returncode}): "
            + proc.stderr.decode(errors="replace")[-1500:]
        )
        return [{"error": error} for _ in specs]
    return results


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.server_cpu, self.client_cpu = pick_cpus()
        q = self.quick
        self.duration = args.duration if args.duration is not None else (0.2 if q else 5.0)
        self.warmup = args.warmup if args.warmup is not None else (0.05 if q else 1.0)
        self.many = 20 if q else 100
        self.idle_conns = args.idle_conns or (1000 if q else 10000)
        self.hs_duration = 0.2 if q else 3.0
        self.hs_windows = 1 if q else max(3, args.repeat)
        self.profile_duration = 1.0 if q else 10.0
        self.results: dict[str, Any] = {}

    @property
    def params(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "many_conns": self.many,
            "idle_conns": self.idle_conns,
            "handshake_duration_s": self.hs_duration,
            "handshake_windows": self.hs_windows,
            "handshake_concurrency": self.args.hs_concurrency,
            "server_cpu": self.server_cpu,
            "client_cpu": self.client_cpu,
            "client": self.args.client,
            "repeat": self.args.repeat,
            "deflate_client": self.args.deflate_client,
            "profile_duration_s": self.profile_duration,
        }

    def spec(self, server: Server, **kw: Any) -> dict[str, Any]:
        base = {
            "port": server.port,
            "server_pid": server.pid,
            "cpu": self.client_cpu,
            "warmup": self.warmup,
            "duration": self.duration,
            "client": self.args.client,
            "settle": 0.2 if self.quick else 1.0,
        }
        base.update(kw)
        return base

    def timeout(self, extra: float = 0) -> float:
        return 60 + 3 * (self.warmup + self.duration) + extra

    def with_server(
        self, name: str, runs: list[tuple[str, dict[str, Any]]], deflate: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Start ``name`` once; run each (label, spec) against it from one load-client process."""
        out: dict[str, dict[str, Any]] = {}
        if self.args.wait_quiet:
            wait_quiet(self.args.wait_quiet)
        server = Server(name, self.server_cpu, deflate)
        try:
            server.start()
            t0 = time.monotonic()
            specs = [
                self.spec(server, timeout=self.timeout(kw.pop("extra", 0)), **kw) for _, kw in runs
            ]
            results = run_client(specs, self.client_cpu)
            wall = (time.monotonic() - t0) / len(runs)
            log_text = server.new_stderr()
            dead = not server.alive()
            for (label, _), result in zip(runs, results, strict=True):
                result["wall_s"] = wall
                if dead:
                    result.setdefault("error", f"server exited: {server.stop()}")
                if log_text:
                    result["server_stderr"] = log_text[-1500:]
                out[label] = result
                log(f"  {name:12} {label:34} {summary(result)}")
            if log_text:
                log(f"  {name:12} wrote to stderr: {log_text.strip().splitlines()[-1][:200]}")
        except ServerError as exc:
            for label, _ in runs:
                out.setdefault(label, {"error": str(exc)})
            log(f"  {name:12} {exc}")
        finally:
            server.stop()
        return out

    # -- cases ----------------------------------------------------------------

    def roundtrip_configs(self) -> dict[str, tuple[int, list[int]]]:
        """Round-trip cases: name → (connections, message sizes)."""
        return {
            "1conn": (1, [32, KiB]),
            "100conn": (self.many, [32, KiB, 64 * KiB]),
            "large": (1, [64 * KiB, MiB]),
        }

    def roundtrip_cases(self, cases: list[str], servers: list[str]) -> dict[str, Any]:
        """Cases 1-3 together: one server process and one client process per server."""
        configs = self.roundtrip_configs()
        tables: dict[str, Any] = {
            case: {size_label(s): {} for s in configs[case][1]} for case in cases
        }
        collected: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        # Repetitions go round all servers in turn, so that a burst of background
        # load hits one repetition of each rather than every run of one server.
        for rep in range(self.args.repeat):
            if self.args.repeat > 1:
                log(f"-- repetition {rep + 1} of {self.args.repeat}")
            for name in servers:
                runs = [
                    (
                        f"{case}|{size_label(size)}",
                        {"mode": "roundtrip", "conns": conns, "size": size},
                    )
                    for case in cases
                    for conns, sizes in [configs[case]]
                    for size in sizes
                ]
                for label, result in self.with_server(name, runs).items():
                    case, _, size = label.partition("|")
                    collected.setdefault((case, size, name), []).append(result)
        for (case, size, name), results in collected.items():
            tables[case][size][name] = best_of(results)
        return tables

    def case_idle(self, servers: list[str]) -> Any:
        table: dict[str, Any] = {}
        for name in servers:
            spec = {
                "mode": "idle",
                "conns": self.idle_conns,
                "batch": 200,
                "hs_duration": self.hs_duration,
                "hs_windows": self.hs_windows,
                "hs_concurrency": self.args.hs_concurrency,
                "extra": 120,
            }
            table[name] = self.with_server(name, [("idle", spec)])["idle"]
        return {f"{self.idle_conns} idle": table}

    def case_clients(self, servers: list[str]) -> Any:
        """Case 5: ws13's client vs picows's as the load generator."""
        targets = [s for s in ("ws13", "picows") if s in servers] or ["ws13"]
        if self.quick:
            targets = targets[:1]
        configs = [(1, 32), (1, KiB), (self.many, 32)]
        collected: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(self.args.repeat):
            for name in targets:
                runs = []
                for conns, size in configs:
                    for client in ("picows", "ws13"):
                        label = f"{name} server|{conns} conn|{size_label(size)}|{client}"
                        spec = {"mode": "roundtrip", "conns": conns, "size": size, "client": client}
                        runs.append((label, spec))
                for label, result in self.with_server(name, runs).items():
                    row, _, client = label.rpartition("|")
                    collected.setdefault((row, client), []).append(result)
        table: dict[str, Any] = {}
        for (row, client), results in collected.items():
            table.setdefault(row, {})[client] = best_of(results)
        return table

    def case_deflate(self, servers: list[str]) -> Any:
        """Case 6 at 256 B (tickers, chat) and 1 KiB; one server process per size.

        A fresh process per size keeps each RSS-per-connection figure clean
        (the first size's freed zlib state would otherwise be reused by the
        second). With ``--repeat``, servers take turns and the best run is kept.
        """
        collected: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(self.args.repeat):
            for name in [s for s in DEFLATE_SERVERS if s in servers]:
                for size in (256, KiB):
                    label = f"{self.many} conns, {size_label(size)} JSON text"
                    spec = {
                        "mode": "deflate",
                        "client": self.args.deflate_client,
                        "conns": self.many,
                        "size": size,
                        "exchanges": 5,
                        "latency": True,
                    }
                    run = self.with_server(name, [(label, spec)], deflate=True)
                    collected.setdefault((label, name), []).append(run[label])
        table: dict[str, Any] = {}
        for (label, name), results in collected.items():
            table.setdefault(label, {})[name] = best_of(results)
        return table

    def case_micro(self, servers: list[str]) -> Any:
        cmd = [sys.executable, str(BENCH / "micro.py"), "--json"]
        if self.quick:
            cmd.append("--quick")
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=600, cwd=str(ROOT))
            return json.loads(proc.stdout.decode().strip().splitlines()[-1])
        except Exception as exc:
            return {"error": f"micro.py failed: {exc!r}"}

    def case_profile(self, servers: list[str]) -> Any:
        """py-spy on the ws13 server during the many-connection 32 B case."""
        from profile_summary import summarize

        pyspy = shutil.which("py-spy")
        if pyspy is None:
            return {"error": "py-spy is not installed (pip install py-spy)"}
        server = Server("ws13", self.server_cpu)
        # Next to the results file: bench/results/pyspy-latest.txt for a full
        # run; a smoke run (CI) never overwrites it.
        out = Path(self.args.output)
        raw = out.with_name(f"pyspy-{out.stem}.txt")
        raw.parent.mkdir(parents=True, exist_ok=True)
        try:
            server.start()
            duration = self.profile_duration
            client = subprocess.Popen(
                [
                    sys.executable,
                    str(BENCH / "loadclient.py"),
                    json.dumps(
                        self.spec(
                            server,
                            mode="roundtrip",
                            conns=self.many,
                            size=32,
                            warmup=0.5,
                            duration=duration + 1,
                            timeout=self.timeout(duration),
                        )
                    ),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=pinner(self.client_cpu),
            )
            time.sleep(1.0)
            spy = subprocess.run(
                [
                    pyspy,
                    "record",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(max(1, round(duration))),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--function",
                    "--output",
                    str(raw),
                ],
                capture_output=True,
                timeout=duration + 60,
                preexec_fn=pinner(self.client_cpu),
            )
            out, _ = client.communicate(timeout=self.timeout(duration) + 30)
            load = json.loads(out.decode().strip().splitlines()[-1])
            if spy.returncode != 0 or not raw.exists():
                return {"error": "py-spy failed: " + spy.stderr.decode(errors="replace")[-1500:]}
            summary_ = summarize(raw.read_text(), top=15)
            summary_["load"] = {k: load.get(k) for k in ("msgs_per_s", "server_cpu_us_per_msg")}
            summary_["raw_file"] = (
                str(raw.relative_to(ROOT)) if raw.is_relative_to(ROOT) else str(raw)
            )
            return summary_
        except Exception as exc:
            return {"error": f"profile failed: {exc!r}"}
        finally:
            server.stop()


def best_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The repetition with the most msgs/s (the least disturbed), with all of them listed."""
    good = [r for r in results if "error" not in r and r.get("msgs_per_s")]
    if not good:
        return results[0]
    best = dict(max(good, key=lambda r: r["msgs_per_s"]))
    if len(results) > 1:
        best["reps"] = [
            {
                k: r.get(k)
                for k in ("msgs_per_s", "server_cpu_us_per_msg", "p50_us", "other_cpu_pct", "error")
                if r.get(k) is not None
            }
            for r in results
        ]
    return best


def system_busy() -> float:
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit: float, threshold: float = 0.25) -> None:
    """Wait (at most ``limit`` s) until the machine's CPU use drops below ``threshold`` CPUs."""
    deadline = time.monotonic() + limit
    while True:
        b0 = system_busy()
        time.sleep(0.5)
        busy = (system_busy() - b0) / 0.5
        if busy < threshold or time.monotonic() > deadline:
            return
        log(f"  waiting for a quieter machine (other load {busy * 100:.0f}% of a CPU)")


def summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"].splitlines()[0][:150]
    parts = []
    for key, fmt in (
        ("msgs_per_s", "{:,.0f} msg/s"),
        ("p50_us", "p50 {:.0f} µs"),
        ("p99_us", "p99 {:.0f} µs"),
        ("server_cpu_us_per_msg", "srv {:.1f} µs/msg"),
        ("rss_per_conn", "{:,.0f} B/conn"),
        ("handshakes_per_s", "{:,.0f} hs/s"),
        ("other_cpu_pct", "other {:.0f}%"),
    ):
        value = result.get(key)
        if isinstance(value, (int, float)):
            parts.append(fmt.format(value))
    return ", ".join(parts)


# -- machine and versions -----------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for module in ("ws13", "websockets", "aiohttp", "picows", "aiofastnet", "uvloop", "matplotlib"):
        versions[module] = _dist_version(module)
    try:
        from ws13._accel import USING_SPEEDUPS

        versions["ws13 C speedups"] = "yes" if USING_SPEEDUPS else "no"
    except ImportError:
        pass
    versions["node"] = _out(["node", "--version"])
    try:
        ws_pkg = json.loads((NODE_DIR / "node_modules" / "ws" / "package.json").read_text())
        versions["node ws"] = ws_pkg["version"]
    except (OSError, ValueError, KeyError):
        versions["node ws"] = None
    versions["py-spy"] = _out(["py-spy", "--version"])
    commit = _out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _out(["git", "-C", str(ROOT), "status", "--porcelain", "src"])
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "versions": versions,
        "git": f"{commit}{' + uncommitted changes in src/' if dirty else ''}",
        "src_changes": (dirty or "").splitlines()[:30],
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "page_fault_us": page_fault_cost(),
    }


def page_fault_cost() -> float:
    """Microseconds per first touch of an anonymous page (best of 3 runs over 32 MiB).

    Large-message cases allocate fresh buffers; where a fault is expensive
    (some VMs: several µs rather than ~0.2 µs), that dominates them.
    """
    import mmap

    best = float("inf")
    size = 32 << 20
    for _ in range(3):
        m = mmap.mmap(-1, size)
        t0 = time.perf_counter()
        for i in range(0, size, 4096):
            m[i] = 1
        best = min(best, (time.perf_counter() - t0) / (size // 4096))
        m.close()
    return round(best * 1e6, 2)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _out(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).stdout.decode().strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# -- main ---------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny smoke run (CI); never judges speed"
    )
    parser.add_argument(
        "--cases", default=",".join(ALL_CASES), help="comma-separated: " + ",".join(ALL_CASES)
    )
    parser.add_argument(
        "--servers", default=",".join(ALL_SERVERS), help="comma-separated: " + ",".join(ALL_SERVERS)
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds measured per run (5; quick 0.3)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds of load before measuring (1; quick 0.1)"
    )
    parser.add_argument(
        "--idle-conns", type=int, default=None, help="idle connections (10000; quick 1000)"
    )
    parser.add_argument(
        "--hs-concurrency", type=int, default=8, help="concurrent handshake workers"
    )
    parser.add_argument(
        "--client",
        default="picows",
        choices=["picows", "ws13", "websockets"],
        help="load client for cases 1conn, 100conn, large (default picows)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update the existing results file with these runs instead of replacing it",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="repeat cases 1conn/100conn/large/clients N times, servers in turn; keep the best",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        help="before each server, wait up to this many seconds for other load < 25%% of a CPU",
    )
    parser.add_argument(
        "--deflate-client",
        default="raw",
        choices=["raw", "websockets", "ws13"],
        help="case 6's client: raw (bench/rawdeflate.py, the default), websockets or ws13",
    )
    parser.add_argument(
        "--output", help="results JSON (bench/results/latest.json; quick: quick.json)"
    )
    parser.add_argument(
        "--report",
        help="Markdown report, '' for none (docs/performance.md; quick: bench/results/quick.md)",
    )
    parser.add_argument(
        "--chart",
        help="PNG chart, '' for none (docs/performance.png; quick: bench/results/quick.png)",
    )
    args = parser.parse_args()
    # A smoke run never overwrites the real report.
    if args.output is None:
        args.output = str(RESULTS / ("quick.json" if args.quick else "latest.json"))
    if args.report is None:
        args.report = str(RESULTS / "quick.md" if args.quick else ROOT / "docs" / "performance.md")
    if args.chart is None:
        args.chart = str(RESULTS / "quick.png" if args.quick else ROOT / "docs" / "performance.png")

    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(ALL_CASES)
    requested = [s for s in args.servers.split(",") if s]
    unknown |= set(requested) - set(ALL_SERVERS)
    if unknown:
        parser.error(f"unknown case or server: {', '.join(sorted(unknown))}")

    started = time.monotonic()
    bench = Bench(args)
    availability = available_servers(requested)
    servers = [s for s in requested if availability[s] is None]
    for name, reason in availability.items():
        if reason:
            log(f"skipping {name}: {reason}")
    if bench.server_cpu is None:
        log("fewer than 2 CPUs: server and client are not pinned")

    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python bench/run.py", *sys.argv[1:]]),
            "machine": machine_info(),
            "params": bench.params,
            "servers": servers,
            "unavailable": {k: v for k, v in availability.items() if v},
        },
        "cases": {},
    }
    roundtrip = [c for c in cases if c in ROUNDTRIP_CASES]
    if roundtrip:
        log(f"== {', '.join(roundtrip)}")
        t0 = time.monotonic()
        results["cases"].update(bench.roundtrip_cases(roundtrip, servers))
        log(f"   ({time.monotonic() - t0:.1f} s)")
    for case in cases:
        if case in ROUNDTRIP_CASES:
            continue
        log(f"== {case}")
        t0 = time.monotonic()
        results["cases"][case] = getattr(bench, "case_" + case)(servers)
        log(f"   ({time.monotonic() - t0:.1f} s)")
    results["meta"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)

    out = Path(args.output)
    if args.merge and out.exists():
        results = merge(json.loads(out.read_text()), results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"wrote {out}")
    from report import write_report

    write_report(results, args.report or None, args.chart or None)
    if args.report:
        log(f"wrote {args.report}")
    if args.chart:
        log(f"wrote {args.chart}")
    log(f"done in {results['meta']['elapsed_s']} s")
    broken = ws13_errors(results)
    for where in broken:
        log(f"ws13 failed: {where}")
    # Speed is never judged here; only a ws13 run that broke fails the command.
    return 1 if broken else 0


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` results with every (case, config, server) that ``new`` measured replaced."""
    merged = json.loads(json.dumps(old))
    for case, configs in new["cases"].items():
        if case in ("micro", "profile") or not isinstance(configs, dict):
            merged["cases"][case] = configs
            continue
        target = merged["cases"].setdefault(case, {})
        for config, by_name in configs.items():
            target.setdefault(config, {}).update(by_name)
    meta = merged["meta"]
    meta.setdefault("merged", []).append(
        {
            "date": new["meta"]["date"],
            "command": new["meta"]["command"],
            "cases": list(new["cases"]),
            "servers": new["meta"]["servers"],
            "loadavg_start": new["meta"]["machine"]["loadavg_start"],
            "loadavg_end": new["meta"]["loadavg_end"],
            "git": new["meta"]["machine"]["git"],
        }
    )
    return merged


def ws13_errors(results: dict[str, Any]) -> list[str]:
    """Runs involving ws13 (as server or client) that ended in an error."""
    broken = []
    for case, configs in results["cases"].items():
        if not isinstance(configs, dict) or case in ("micro", "profile"):
            if isinstance(configs, dict) and "error" in configs and case == "micro":
                broken.append(f"{case}: {configs['error'][:200]}")
            continue
        for config, by_name in configs.items():
            for name, result in (by_name or {}).items():
                if (name == "ws13" or config.startswith("ws13 ")) and "error" in (result or {}):
                    broken.append(f"{case} / {config} / {name}: {result['error'][:200]}")
    return broken


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run the Autobahn|Testsuite against ws13 and summarise the results.

usage: python compliance/run.py {server,client,both} [--cases 1.*,2.* ...]
                                [--exclude 9.*,...] [--outdir DIR] ...

server  ws13 as a server: starts compliance/echo_server.py on a free port and
        runs `wstest -m fuzzingclient` against it (reports/servers).
client  ws13 as a client: starts `wstest -m fuzzingserver` on a free port and
        runs compliance/echo_client.py against it (reports/clients).
both    server, then client.

Default cases: 1.* .. 11.* (12.*/13.* are permessage-deflate, ~95% of the run
time); `--cases '*'` runs everything. wstest comes from --wstest, else
$WS13_WSTEST, else PREFIX/bin/wstest where PREFIX is --prefix, else
$WS13_AUTOBAHN_PREFIX, else ~/.cache/ws13/autobahn; compliance/setup.sh installs
it there when it is missing (~30 s, once).

A case passes when its behavior is OK / NON-STRICT / INFORMATIONAL and its
behaviorClose is OK / INFORMATIONAL. Everything else (FAILED, UNIMPLEMENTED,
a close that is UNCLEAN / WRONG CODE / FAILED BY CLIENT / FAILED, a case missing
from the report) is a failure.

Output: a table per role on stdout and OUTDIR/summary.json.
Exit status: 0 if no case failed, 1 if some failed, 2 on a harness error
(wstest could not be installed or run, no report written, timeout).
Python 3.11+ stdlib only (plus ws13 for the echo scripts).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src"

# The CI selection: every case of 1.*-11.*, and cases 1 (small messages) and
# 9 (large ones) of each of the twelve 12.*/13.* (permessage-deflate) groups,
# so every compression setting runs. Case ids are exact: wstest treats a
# pattern with "*" as a prefix regex ("12.*.1" would also take 12.1.10-18).
# The full suite (`--cases '*'`, `make compliance`) takes about 14 min per role.
DEFAULT_CASES = [f"{i}.*" for i in range(1, 12)] + [
    f"{group}.{n}"
    for group in [f"12.{k}" for k in range(1, 6)] + [f"13.{k}" for k in range(1, 8)]
    for n in (1, 9)
]
AGENT = "ws13"
BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
PASS_BEHAVIORS = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}
STAMP = ".ws13-setup-ok"
# Reasons in the summary's short form are cut to this many characters.
SHORT = 160


class HarnessError(Exception):
    """The run could not produce a usable report."""


# --------------------------------------------------------------------------
# wstest installation
# --------------------------------------------------------------------------
def default_prefix() -> Path:
    env = os.environ.get("WS13_AUTOBAHN_PREFIX")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ws13" / "autobahn"


def ensure_wstest(wstest: str | None, prefix: Path | None, quiet: bool = False) -> Path:
    """Return the path of a working wstest, installing it if needed."""
    wstest = wstest or os.environ.get("WS13_WSTEST")
    if wstest:
        path = Path(wstest).expanduser()
        if not os.access(path, os.X_OK):
            raise HarnessError(f"wstest not executable: {path}")
        return path
    prefix = (prefix or default_prefix()).expanduser().absolute()
    path = prefix / "bin" / "wstest"
    if os.access(path, os.X_OK) and (prefix / STAMP).is_file():
        return path
    prefix.mkdir(parents=True, exist_ok=True)
    # Serialise concurrent installs (e.g. parallel pytest workers).
    with open(prefix / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (os.access(path, os.X_OK) and (prefix / STAMP).is_file()):
            if not quiet:
                print(
                    f"installing wstest into {prefix} (compliance/setup.sh, ~30 s) ...", flush=True
                )
            log = prefix / "setup.log"
            with open(log, "w") as out:
                rc = subprocess.call(
                    ["bash", str(HERE / "setup.sh"), str(prefix)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=str(prefix),
                )
            if rc != 0 or not os.access(path, os.X_OK):
                tail = "".join(log.read_text(errors="replace").splitlines(True)[-20:])
                raise HarnessError(
                    f"compliance/setup.sh {prefix} failed (exit {rc}), log {log}:\n{tail}"
                )
    return path


# --------------------------------------------------------------------------
# processes and ports
# --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError(
                f"{what} exited with code {proc.returncode} before listening; "
                f"log {log}:\n{tail_of(log)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise HarnessError(
        f"{what} did not listen on port {port} within {timeout:g} s; log {log}:\n{tail_of(log)}"
    )


def tail_of(path: Path, n: int = 20) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(True)[-n:])
    except OSError:
        return ""


def child_env() -> dict:
    env = dict(os.environ)
    # Make ws13 importable from a checkout without installing it.
    if SRC.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(SRC), env.get("PYTHONPATH")] if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(cmd: list, log: Path, cwd: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - the child process keeps writing to it
    try:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(cwd),
            env=child_env(),
            start_new_session=True,
        )
    finally:
        out.close()


def stop(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """Stop a process started by spawn() (and its process group)."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


def wait_for(proc: subprocess.Popen, timeout: float, what: str, log: Path) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise HarnessError(
            f"{what} did not finish within {timeout:g} s (see --timeout); "
            f"log {log}:\n{tail_of(log)}"
        ) from None


def planned_cases(log: Path) -> list[str] | None:
    """Case ids wstest announced ("Cases = [...]") in its output, if any."""
    m = re.search(r"^Cases = (\[.*\])\s*$", log.read_text(errors="replace"), re.M)
    if not m:
        return None
    try:
        return [str(c) for c in ast.literal_eval(m.group(1))]
    except (ValueError, SyntaxError):
        return None


def write_spec(path: Path, spec: dict) -> None:
    path.write_text(json.dumps(spec, indent=2) + "\n")


# --------------------------------------------------------------------------
# roles
# --------------------------------------------------------------------------
def run_server_role(wstest: Path, args, outdir: Path) -> dict:
    """ws13 as server, wstest fuzzingclient as client."""
    report_dir = outdir / "reports" / "servers"
    logs = outdir / "logs"
    shutil.rmtree(report_dir, ignore_errors=True)
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    spec_path = outdir / "fuzzingclient.json"
    write_spec(
        spec_path,
        {
            "outdir": str(report_dir),
            "servers": [{"agent": AGENT, "url": url}],
            "cases": args.cases,
            "exclude-cases": args.exclude,
            "exclude-agent-cases": {},
        },
    )
    server_log, wstest_log = logs / "server-echo_server.log", logs / "server-wstest.log"
    if args.testee:
        cmd = [str(wstest), "-m", "testeeserver", "-w", url]
    else:
        cmd = [sys.executable, str(HERE / "echo_server.py"), str(port)]
    server = client = None
    try:
        server = spawn(cmd, server_log, outdir)
        wait_port(port, server, 30, "echo server", server_log)
        client = spawn(
            [str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)], wstest_log, outdir
        )
        rc = wait_for(client, args.timeout, "wstest fuzzingclient", wstest_log)
        if rc != 0:
            raise HarnessError(
                f"wstest fuzzingclient exited with code {rc}; "
                f"log {wstest_log}:\n{tail_of(wstest_log)}"
            )
        if server.poll() is not None:
            print(
                f"warning: echo server exited early (code {server.returncode}), see {server_log}",
                flush=True,
            )
    finally:
        stop(client)
        stop(server)
    return {
        "report_dir": str(report_dir),
        "planned": planned_cases(wstest_log),
        "logs": {"echo_server": str(server_log), "wstest": str(wstest_log)},
    }


def run_client_role(wstest: Path, args, outdir: Path) -> dict:
    """ws13 as client, wstest fuzzingserver as server."""
    report_dir = outdir / "reports" / "clients"
    logs = outdir / "logs"
    shutil.rmtree(report_dir, ignore_errors=True)
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    spec_path = outdir / "fuzzingserver.json"
    write_spec(
        spec_path,
        {
            "url": url,
            "outdir": str(report_dir),
            "cases": args.cases,
            "exclude-cases": args.exclude,
            "exclude-agent-cases": {},
        },
    )
    client_log, wstest_log = logs / "client-echo_client.log", logs / "client-wstest.log"
    if args.testee:
        cmd = [str(wstest), "-m", "testeeclient", "-w", url, "-i", AGENT]
    else:
        cmd = [sys.executable, str(HERE / "echo_client.py"), url, AGENT]
    server = client = None
    try:
        server = spawn(
            [str(wstest), "-m", "fuzzingserver", "-s", str(spec_path), "-u", "0"],
            wstest_log,
            outdir,
        )
        wait_port(port, server, 60, "wstest fuzzingserver", wstest_log)
        client = spawn(cmd, client_log, outdir)
        rc = wait_for(client, args.timeout, "echo client", client_log)
        # Reports are written synchronously when /updateReports is opened;
        # allow a moment in case the client returned right after.
        for _ in range(50 if rc == 0 else 5):
            if (report_dir / "index.json").is_file():
                break
            time.sleep(0.1)
        if rc != 0:
            if not (report_dir / "index.json").is_file():
                raise HarnessError(
                    f"echo client exited with code {rc} and no report was written; "
                    f"log {client_log}:\n{tail_of(client_log)}"
                )
            print(
                f"warning: echo client exited with code {rc}, "
                f"see {client_log}:\n{tail_of(client_log, 10)}",
                flush=True,
            )
    finally:
        stop(client)
        stop(server)
    return {
        "report_dir": str(report_dir),
        "planned": planned_cases(wstest_log),
        "logs": {"echo_client": str(client_log), "wstest": str(wstest_log)},
        "client_problems": client_problems(client_log),
    }


def client_problems(log: Path) -> list[str]:
    """Lines where echo_client.py reported a timeout or an unexpected exception."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if re.match(r"case \d+: (TIMEOUT|UNEXPECTED)", ln)]


# --------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------
def case_key(case_id: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in case_id.split("."))


def short(text, n: int = SHORT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def case_detail(report_dir: Path, entry: dict) -> dict:
    """Texts from the per-case JSON report (reports/*/<agent>_case_*.json)."""
    name = entry.get("reportfile")
    if not name:
        return {}
    try:
        with open(report_dir / name) as f:
            case = json.load(f)
    except (OSError, ValueError):
        return {}
    return {
        "description": case.get("description"),
        "expectation": case.get("expectation"),
        "result": case.get("result"),
        "resultClose": case.get("resultClose"),
        "expected": short(json.dumps(case.get("expected")), 400),
        "received": short(json.dumps(case.get("received")), 400),
        "wasClean": case.get("wasClean"),
        "wasNotCleanReason": case.get("wasNotCleanReason"),
        "droppedByMe": case.get("droppedByMe"),
        "localCloseCode": case.get("localCloseCode"),
        "remoteCloseCode": case.get("remoteCloseCode"),
        "remoteCloseReason": case.get("remoteCloseReason"),
    }


def summarize(role: str, info: dict) -> dict:
    report_dir = Path(info["report_dir"])
    index = report_dir / "index.json"
    try:
        with open(index) as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read Autobahn report {index}: {exc}") from exc
    if not report:
        raise HarnessError(f"Autobahn report {index} has no agents")
    # One agent per run; take ours, else whatever is there (e.g. --testee).
    agent = AGENT if AGENT in report else sorted(report)[0]
    cases = report[agent]

    groups: dict[str, Counter] = {}
    close_counts: Counter = Counter()
    failures = []
    case_ms = 0
    for cid in sorted(cases, key=case_key):
        entry = cases[cid]
        beh = entry.get("behavior", "?")
        bclose = entry.get("behaviorClose", "?")
        grp = cid.split(".")[0] + ".*"
        g = groups.setdefault(grp, Counter())
        g["total"] += 1
        g[beh if beh in BEHAVIORS else "FAILED"] += 1
        close_counts[bclose] += 1
        case_ms += entry.get("duration") or 0
        ok_beh, ok_close = beh in PASS_BEHAVIORS, bclose in PASS_CLOSE
        if ok_beh and ok_close:
            g["passed"] += 1
            continue
        g["failed"] += 1
        if ok_beh:
            g["close_failed"] += 1
        detail = case_detail(report_dir, entry)
        parts = []
        if not ok_beh:
            parts.append(f"behavior={beh}: {detail.get('result') or '?'}")
        if not ok_close:
            parts.append(f"close={bclose}: {detail.get('resultClose') or '?'}")
        if detail.get("wasNotCleanReason"):
            parts.append(f"not clean: {detail['wasNotCleanReason']}")
        failures.append(
            {
                "id": cid,
                "behavior": beh,
                "behaviorClose": bclose,
                "remoteCloseCode": entry.get("remoteCloseCode"),
                "reason": short("; ".join(parts), 400),
                **detail,
            }
        )

    planned = info.get("planned")
    missing = sorted(set(planned) - set(cases), key=case_key) if planned else []
    for cid in missing:
        grp = cid.split(".")[0] + ".*"
        g = groups.setdefault(grp, Counter())
        g["total"] += 1
        g["MISSING"] += 1
        g["failed"] += 1
        failures.append(
            {
                "id": cid,
                "behavior": "MISSING",
                "behaviorClose": "MISSING",
                "reason": "case not in the report (never run or connection never made)",
            }
        )
    failures.sort(key=lambda f: case_key(f["id"]))

    total = len(cases) + len(missing)
    return {
        "role": role,
        "agent": agent,
        "report_dir": str(report_dir),
        "total": total,
        "passed": total - len(failures),
        "failed": len(failures),
        "failed_ids": [f["id"] for f in failures],
        "groups": {k: dict(groups[k]) for k in sorted(groups, key=lambda k: case_key(k[:-2]))},
        "behaviorClose": dict(sorted(close_counts.items())),
        "case_time_s": round(case_ms / 1000.0, 1),
        "failures": failures,
        "logs": info.get("logs", {}),
        "client_problems": info.get("client_problems", []),
    }


def print_summary(s: dict, max_failures: int) -> None:
    print(
        f"=== {s['role']} role (agent {s['agent']}): {s['total']} cases, "
        f"{s['passed']} passed, {s['failed']} failed; wall {s['wall_time_s']:.1f} s, "
        f"case time {s['case_time_s']:.1f} s"
    )
    cols = [
        "total",
        "OK",
        "NON-STRICT",
        "INFORMATIONAL",
        "UNIMPLEMENTED",
        "FAILED",
        "close_failed",
        "MISSING",
        "passed",
        "failed",
    ]
    heads = [
        "total",
        "OK",
        "NON-STRICT",
        "INFO",
        "UNIMPL",
        "FAILED",
        "BADCLOSE",
        "MISSING",
        "pass",
        "fail",
    ]
    fmt = "%-6s" + " %8s" * len(cols)
    print(fmt % ("group", *heads))
    tot: Counter = Counter()
    for grp, g in s["groups"].items():
        tot.update(g)
        print(fmt % (grp, *(g.get(c, 0) for c in cols)))
    print(fmt % ("all", *(tot.get(c, 0) for c in cols)))
    print("behaviorClose: " + ", ".join(f"{k}={v}" for k, v in s["behaviorClose"].items()))
    if s["failures"]:
        print(f"failed cases ({s['failed']}):")
        for f in s["failures"][:max_failures]:
            print(f"  {f['id']}: {short(f['reason'])}")
        if s["failed"] > max_failures:
            rest = Counter(
                f"{f['id'].split('.')[0]}.* {f['behavior']}/{f['behaviorClose']}"
                for f in s["failures"][max_failures:]
            )
            print(
                f"  ... and {s['failed'] - max_failures} more (see --max-failures, summary.json): "
                + ", ".join(f"{k} x{v}" for k, v in rest.items())
            )
    if s["client_problems"]:
        print(
            f"echo client problems ({len(s['client_problems'])}, "
            f"see {s['logs'].get('echo_client')}):"
        )
        for line in s["client_problems"][:20]:
            print(f"  {short(line)}")
    print(f"reports: {s['report_dir']}/index.html")
    print()


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def split_list(values: list[str] | None) -> list[str]:
    out = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="compliance/run.py",
        description="Run the Autobahn|Testsuite against ws13 (see compliance/README.md).",
    )
    ap.add_argument("role", choices=["server", "client", "both"])
    ap.add_argument(
        "--cases",
        action="append",
        metavar="PATTERNS",
        help="comma-separated case patterns, repeatable (default: 1.*,...,11.*; '*' for all)",
    )
    ap.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERNS",
        help="comma-separated case patterns to leave out, repeatable",
    )
    ap.add_argument(
        "--outdir",
        type=Path,
        default=HERE / "output",
        help="where specs, logs, reports/ and summary.json go (default: compliance/output)",
    )
    ap.add_argument(
        "--prefix",
        type=Path,
        default=None,
        help="wstest install dir (default: $WS13_AUTOBAHN_PREFIX or ~/.cache/ws13/autobahn)",
    )
    ap.add_argument(
        "--wstest", default=None, help="use this wstest executable (default: $WS13_WSTEST)"
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=3600,
        help="seconds allowed per role for the test run (default 3600)",
    )
    ap.add_argument(
        "--max-failures",
        type=int,
        default=60,
        help="print the reasons of at most this many failed cases per role (default 60)",
    )
    ap.add_argument(
        "--testee",
        action="store_true",
        help="harness self-check: test wstest's own testee server/client instead of ws13",
    )
    args = ap.parse_args(argv)
    args.cases = split_list(args.cases) or list(DEFAULT_CASES)
    args.exclude = split_list(args.exclude)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    outdir = args.outdir.expanduser().absolute()
    (outdir / "logs").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    result = {
        "cases": args.cases,
        "exclude": args.exclude,
        "testee": args.testee,
        "roles": {},
        "errors": {},
    }
    try:
        wstest = ensure_wstest(args.wstest, args.prefix)
        result["wstest"] = str(wstest)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        result["errors"]["setup"] = str(exc)
        wstest = None

    roles = ["server", "client"] if args.role == "both" else [args.role]
    print(
        f"cases: {','.join(args.cases)}"
        + (f"  exclude: {','.join(args.exclude)}" if args.exclude else "")
        + f"  outdir: {outdir}",
        flush=True,
    )
    for role in roles if wstest else []:
        t_role = time.monotonic()
        print(f"--- {role} role: running wstest ...", flush=True)
        try:
            runner = run_server_role if role == "server" else run_client_role
            info = runner(wstest, args, outdir)
            summary = summarize(role, info)
            summary["wall_time_s"] = round(time.monotonic() - t_role, 1)
            result["roles"][role] = summary
            print_summary(summary, args.max_failures)
        except HarnessError as exc:
            print(f"error ({role} role): {exc}", file=sys.stderr, flush=True)
            result["errors"][role] = str(exc)

    failed = sum(s["failed"] for s in result["roles"].values())
    passed = sum(s["passed"] for s in result["roles"].values())
    result.update(
        passed=passed,
        failed=failed,
        wall_time_s=round(time.monotonic() - t0, 1),
        ok=failed == 0 and not result["errors"],
    )
    (outdir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    status = "ERROR" if result["errors"] else ("PASS" if failed == 0 else "FAIL")
    print(
        f"{status}: {passed} passed, {failed} failed"
        + (f", harness errors in: {', '.join(result['errors'])}" if result["errors"] else "")
        + f"; wall time {result['wall_time_s']:.1f} s; summary: {outdir / 'summary.json'}"
    )
    if result["errors"]:
        return 2
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

"""The benchmarks still run (smoke mode). A benchmark is not a test: nothing
here judges speed; see bench/README.md for the real runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_run_quick(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--quick",
            "--output",
            str(output),
            "--report",
            str(tmp_path / "quick.md"),
            "--chart",
            str(tmp_path / "quick.png"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(output.read_text())
    # Every Python server echoed in every round-trip case (a failure there is
    # reported in the results, not in the exit status).
    for case in ("1conn", "100conn", "large"):
        for size, servers in results["cases"][case].items():
            for name in (
                "ws13",
                "ws13-callback",
                "websockets",
                "aiohttp",
                "picows",
                "raw-asyncio",
                "raw-asyncio-task",
            ):
                assert "error" not in servers[name], (case, size, name, servers[name])
                assert servers[name]["msgs"] > 0, (case, size, name)
    assert (tmp_path / "quick.md").read_text().startswith("#")
    assert (tmp_path / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_micro_quick() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "micro.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)


def test_inprocess_quick() -> None:
    for loop in ([], ["--asyncio"]):
        result = subprocess.run(
            [sys.executable, str(REPO / "bench" / "inprocess.py"), "--quick", *loop],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        lines = result.stdout.splitlines()
        assert lines[0].startswith("server handshake + close: "), result.stdout
        assert lines[1].startswith("echo, async for + send: "), result.stdout


def test_instructions_quick(tmp_path: Path) -> None:
    output = tmp_path / "instructions.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "instructions.py"),
            "--quick",
            "--output",
            str(output),
            "--report",
            str(tmp_path / "instructions.md"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    echo, deflate, client, handshake = json.loads(output.read_text())["cases"]
    assert (echo["kind"], echo["server"]) == ("echo", "ws13")
    assert echo["instructions_per_msg"] > 0
    # 1 KiB of JSON inflated, echoed, compressed: more work than a 32-byte echo.
    assert (deflate["kind"], deflate["server"], deflate["size"]) == ("deflate", "ws13", 1024)
    assert deflate["instructions_per_msg"] > echo["instructions_per_msg"]
    # ws13's client, counted in its own process: a round trip costs it something.
    assert (client["kind"], client["server"]) == ("client", "ws13")
    assert client["instructions_per_msg"] > 0
    assert (handshake["kind"], handshake["server"]) == ("handshake", "ws13")
    assert handshake["instructions_per_msg"] > echo["instructions_per_msg"]
    assert (tmp_path / "instructions.md").read_text().startswith("# Instructions per message")

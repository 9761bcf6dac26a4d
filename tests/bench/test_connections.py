"""bench/connections.py runs end to end, tiny: a real `ws13 serve`, real C
load clients (built with cc), real /proc figures. Nothing here judges
memory or speed; docs/connections.md has the real runs."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import unittest
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parents[2]


def run_bench(*options: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    with TemporaryDirectory() as tmp:
        output = Path(tmp) / "result.json"
        page = Path(tmp) / "connections.md"
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "connections.py"),
                *options,
                "--settle",
                "2",
                "--hold",
                "0",
                "--rest",
                "0",
                "--json",
                str(output),
                "--output",
                str(page),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        data = json.loads(output.read_text())
        assert "| this run | 200 / 200 |" in page.read_text()
    return result, data


class ConnectionsBenchTests(unittest.TestCase):
    def check(self, data: dict[str, object]) -> None:
        self.assertEqual(data["opened"], 200)
        self.assertEqual(data["open_failed"], 0)
        self.assertEqual(data["echo_sent"], 200)
        self.assertEqual(data["echo_answered"], 200)
        self.assertEqual(data["echo_failures"], {})
        self.assertEqual(data["closed_by_server"], 0)
        loaded = data["loaded"]
        assert isinstance(loaded, dict)
        self.assertGreater(loaded["pss"], 0)
        self.assertGreater(loaded["rss"], loaded["pss"] // 2)

    def test_two_clients(self) -> None:
        _, data = run_bench("--connections", "200", "--clients", "2")
        self.check(data)
        self.assertIs(data["deflate"], False)

    def test_two_workers(self) -> None:
        # ws13 serve --workers 2: a parent, the hub's backplane owner and two
        # workers, every one of them counted.
        _, data = run_bench("--connections", "200", "--clients", "2", "--workers", "2")
        self.check(data)
        loaded = data["loaded"]
        assert isinstance(loaded, dict)
        self.assertGreaterEqual(loaded["processes"], 3)

    def test_deflate_offered(self) -> None:
        # 100-byte echoes: over the server's 32-byte threshold, so they go
        # compressed both ways and the client inflates them.
        _, data = run_bench("--connections", "200", "--deflate", "--message-size", "100")
        self.check(data)
        self.assertIs(data["deflate"], True)
        self.assertIs(data["deflate_negotiated"], True)

    def test_too_many_per_client(self) -> None:
        # One more connection than this machine lets one process hold.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "connections.py"),
                "--connections",
                str(hard + 1),
                "--clients",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("exceed the fd limit", result.stderr)

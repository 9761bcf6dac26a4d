"""Smoke test of bench/hub_fanout.py: ``--quick --redis`` runs every scenario at tiny sizes.

No speed is judged: the benchmark must exit 0 and print its table with a row per
scenario, picows's broadcast beside ws13, every copy delivered (its C
subscribers, bench/c/hub_sub.c, count them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

from tests.cli.helpers import ENV

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench", "hub_fanout.py")
TIMEOUT = 300


class FanoutBenchTests(unittest.TestCase):
    def run_bench(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``hub_fanout.py ARGS``, checked to exit 0."""
        result = subprocess.run(
            [sys.executable, BENCH, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=ENV,
            cwd=ROOT,
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        return result

    def test_quick_run_prints_its_table(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            output = os.path.join(tmp, "hub-performance.md")
            result = self.run_bench("--quick", "--redis", "--output", output)
            self.assertNotIn("Traceback", result.stderr)
            header = "| scenario | subscribers | messages | delivered | p50 ms | p99 ms | max ms"
            self.assertIn(header, result.stdout)
            for scenario in (
                "| fan-out, picows | 20 | 1 | 100 % |",
                "| fan-out, ws13, 1 node | 20 | 1 | 100 % |",
                "| ticker 50/s, ws13, 1 node | 20 | 50 | 100 % |",
                "| fan-out, ws13, 2 nodes + Redis | 20 | 1 | 100 % |",
                "| ticker 50/s, ws13, 2 nodes + Redis | 20 | 50 | 100 % |",
            ):
                self.assertIn(scenario, result.stdout)
            self.assertIn("x picows's", result.stdout)
            with open(output) as file:
                report = file.read()
            self.assertIn("# Hub fan-out performance", report)
            self.assertIn("python bench/hub_fanout.py --quick --redis", report)

    def test_quick_run_with_workers(self) -> None:
        result = self.run_bench("--quick", "--workers", "2", "--deflate")
        for scenario in (
            "| fan-out, picows | 20 | 1 | 100 % |",
            "| fan-out, ws13, --workers 2 | 20 | 1 | 100 % |",
            "| ticker 50/s, ws13, --workers 2 | 20 | 50 | 100 % |",
        ):
            self.assertIn(scenario, result.stdout)
        self.assertIn("ws13 workers: sockets held by each", result.stdout)

    def test_bad_arguments(self) -> None:
        result = subprocess.run(
            [sys.executable, BENCH, "--subscribers", "0"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=ENV,
        )
        self.assertEqual(result.returncode, 2)
        self.assertIn("--subscribers must be at least 1", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

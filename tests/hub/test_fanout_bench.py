"""Smoke test of bench/hub_fanout.py: ``--quick --redis`` runs every scenario at tiny sizes.

No speed is judged: the benchmark must exit 0 and print its table with a row per
scenario. Its counted subscribers (bench/hub_client.py), which read rarely and
count copies without parsing, must count exactly and answer every ping.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import unittest
from typing import Any

from tests.cli.helpers import ENV

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench", "hub_fanout.py")
HUB_CLIENT = os.path.join(ROOT, "bench", "hub_client.py")
TIMEOUT = 300


class FanoutBenchTests(unittest.TestCase):
    def test_quick_run_prints_its_table(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            output = os.path.join(tmp, "hub-performance.md")
            result = subprocess.run(
                [sys.executable, BENCH, "--quick", "--redis", "--output", output],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                env=ENV,
                cwd=ROOT,
            )
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            self.assertNotIn("Traceback", result.stderr)
            header = "| scenario | subscribers | messages | delivered | p50 ms | p99 ms | max ms"
            self.assertIn(header, result.stdout)
            for scenario in (
                "| fan-out, 1 node | 20 |",
                "| ticker 50/s, 1 node | 20 |",
                "| fan-out, 2 nodes + Redis | 20 |",
                "| ticker 50/s, 2 nodes + Redis | 20 |",
            ):
                self.assertIn(scenario, result.stdout)
            with open(output) as file:
                report = file.read()
            self.assertIn("# Hub fan-out performance", report)
            self.assertIn("python bench/hub_fanout.py --quick --redis", report)

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


def load_hub_client() -> Any:
    spec = importlib.util.spec_from_file_location("hub_client", HUB_CLIENT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CountedSubscriberTests(unittest.TestCase):
    def test_counts_and_pongs_whatever_the_read_boundaries(self) -> None:
        hc = load_hub_client()

        def message(phase: str) -> bytes:
            payload = (
                '{"op":"message","channel":"ticker.bench","epoch":"e","offset":1,"time":1,'
                f'"data":{{"p":"{phase}","t":1.5,"s":1}}}}'
            ).encode()
            return bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload

        stream = (
            message("t") * 3 + b"\x89\x04ABCD" + message("f1") + message("t")
            + b"\x89\x04WXYZ" + message("f10")
        )  # fmt: skip
        counted_end, peer = socket.socketpair()
        self.addCleanup(peer.close)
        stats = hc.Stats()
        counted = hc.Counted(stats, ["f1", "f10", "t"], 0.2)
        counted.add(counted_end)
        fd = counted_end.fileno()
        self.addCleanup(counted_end.close)
        for cut in range(1, len(stream)):
            with self.subTest(cut=cut):
                stats.counts.clear()
                counted.carry[fd] = b""
                for part in (stream[:cut], stream[cut : cut + 5], stream[cut + 5 :]):
                    if part:
                        counted.feed(fd, counted_end, part)
                self.assertEqual(stats.counts, {"t": 4, "f1": 1, "f10": 1})
                pongs, data = [], peer.recv(65536)
                while data:  # masked client frames with short payloads
                    length, key = data[1] & 0x7F, data[2:6]
                    pongs.append((data[0], hc.mask(data[6 : 6 + length], key)))
                    data = data[6 + length :]
                self.assertEqual(pongs, [(0x8A, b"ABCD"), (0x8A, b"WXYZ")])

"""``bench/soak.py`` runs (a few seconds of it): mixed traffic against
``ws13 serve --workers 2``, every echo checked, the server stopping with 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_short_soak(tmp_path: Path) -> None:
    output = tmp_path / "soak.json"
    result = subprocess.run(
        [
            sys.executable, str(REPO / "bench" / "soak.py"), "--duration", "3",
            "--clients", "12", "--interval", "1", "--json", str(output),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "server exit status: 0" in result.stdout
    report = json.loads(output.read_text())
    assert report["errors"] == 0
    assert sum(report["sessions"].values()) > 0
    # The backplane process and two workers, sampled.
    assert all(len(sample["processes"]) == 3 for sample in report["samples"])
    for sample in report["samples"]:
        for figures in sample["processes"].values():
            assert figures["rss_kib"] > 0
            assert figures["fds"] > 0

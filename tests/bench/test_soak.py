"""bench/soak.py still runs (--quick: a few seconds of every kind of traffic)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_soak_quick(tmp_path: Path) -> None:
    report = tmp_path / "soak.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--quick", "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {"errors": 0}
    text = report.read_text()
    # Traffic of every kind went through, and the server was sampled.
    assert "| t (s) | processes | RSS MiB |" in text
    assert " 0 offsets skipped or repeated" in text
    assert "0 wrong echoes or failed actors" in text
    assert "resubscriptions with since=" in text

"""bench/uvicorn_echo.py still runs (smoke mode: tiny windows, no timing judged).

Not ``--instructions``: starting uvicorn under valgrind takes over a minute
here; that part is ``instructions.py``'s ``measure()``, which its own smoke
test runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_uvicorn_echo_quick(tmp_path: Path) -> None:
    output = tmp_path / "uvicorn.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "uvicorn_echo.py"),
            "--quick",
            "--protocols",
            "ws13,websockets-sansio",
            "--reference",
            "picows",
            "--conns",
            "1,3",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(output.read_text())
    for name in ("ws13", "websockets-sansio", "picows"):
        for conns in ("1", "3"):
            (run,) = results["runs"][name][conns]
            assert "error" not in run, (name, conns, run)
            assert run["msgs"] > 0, (name, conns, run)
            assert run["errors"] == 0, (name, conns, run)
    assert "| **ws13 / best of uvicorn's** |" in results["table"]
    assert "| picows (no uvicorn) / best of uvicorn's |" in results["table"]

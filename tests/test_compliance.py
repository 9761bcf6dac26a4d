"""Autobahn|Testsuite compliance of ws13, both roles.

The CI selection (compliance/run.py's default): all of 1.*-11.* and a sample
of every 12.*/13.* permessage-deflate group; `make compliance` runs all 517.

Runs compliance/run.py in a subprocess. If wstest is not installed yet,
run.py installs it with compliance/setup.sh into $WS13_AUTOBAHN_PREFIX or
~/.cache/ws13/autobahn first (~30 s, needs apt-get/dpkg and network once).
Select or deselect with `-m compliance` / `-m "not compliance"`.
Full suite incl. permessage-deflate (12.*/13.*):
    python compliance/run.py both --cases '*'
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "compliance" / "run.py"
# Install (~30 s) + the cases (9.* sends messages up to 16 MiB).
TIMEOUT = 3600


def run_role(role, outdir):
    cmd = [
        sys.executable,
        str(RUN),
        role,
        "--outdir",
        str(outdir),
        "--timeout",
        str(TIMEOUT - 300),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
    print(proc.stdout)
    print(proc.stderr, file=sys.stderr)
    summary_path = outdir / "summary.json"
    assert summary_path.is_file(), (
        f"compliance/run.py {role} wrote no summary (exit {proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    summary = json.loads(summary_path.read_text())
    assert not summary["errors"], (
        f"compliance/run.py {role} could not run the suite: {summary['errors']}"
    )
    assert role in summary["roles"], f"no result for the {role} role: {summary}"
    return summary["roles"][role], proc


def check(role, outdir):
    result, proc = run_role(role, outdir)
    failures = result["failures"]
    lines = [f"{f['id']}: {f['reason']}" for f in failures]
    assert not failures, (
        f"{len(failures)} of {result['total']} Autobahn cases failed with ws13 as {role}: "
        f"{' '.join(result['failed_ids'])}\n"
        + "\n".join(lines)
        + f"\nreports: {result['report_dir']}/index.html"
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.compliance
def test_autobahn_server(tmp_path):
    check("server", tmp_path)


@pytest.mark.compliance
def test_autobahn_client(tmp_path):
    check("client", tmp_path)

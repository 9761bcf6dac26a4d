"""The README's examples, run as written, and what it promises a newcomer.

Each Python example runs in its own interpreter, as a reader would run it,
against ``ws13 serve`` started on the port the example names (the lab's,
8765), or as a server on its own port (8000) that ``ws13 connect`` then
talks to. If that port is taken on this machine, the example runs on a free
port instead: only the port number in its text is changed.

The README's hub shell commands run the same way, and its statements about
the test command are checked against ``scripts/test.sh``.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from tests.cli.helpers import ENV, TIMEOUT, CLITestCase, wait_for_port
from tests.utils import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LAB_PORT = 8765


def code_blocks(language: str) -> list[str]:
    """The README's fenced code blocks in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)


def python_example(marker: str) -> str:
    """The one Python example containing ``marker``."""
    (block,) = [block for block in code_blocks("python") if marker in block]
    return block


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ReadmeTests(CLITestCase):
    def usable_port(self, port: int) -> int:
        """``port`` if nothing listens there, else a free one."""
        return port if port_free(port) else free_port()

    def start_lab(self) -> int:
        """``ws13 serve`` on the lab's port (or a free one); return the port."""
        port = self.usable_port(LAB_PORT)
        server = self.start("serve", "--port", str(port), stdout=subprocess.DEVNULL)
        wait_for_port(port, server)
        return port

    def run_python(self, source: str) -> subprocess.CompletedProcess[str]:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as file:
            file.write(source)
        self.addCleanup(os.unlink, file.name)
        return subprocess.run(
            [sys.executable, file.name],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
            env=ENV,
        )

    def test_client_example(self) -> None:
        source = python_example("from ws13.asyncio import connect")
        port = self.start_lab()
        result = self.run_python(source.replace(f":{LAB_PORT}/", f":{port}/"))
        assert result.returncode == 0, result.stderr
        echo, rtt = result.stdout.splitlines()
        assert echo == "Hello, ws13!"
        assert rtt.endswith(" s RTT"), rtt
        assert float(rtt.split()[0]) >= 0, rtt

    def test_sync_client_example(self) -> None:
        source = python_example("from ws13.sync.client import connect")
        port = self.start_lab()
        result = self.run_python(source.replace(f":{LAB_PORT}/", f":{port}/"))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "Hello from a thread!\n"

    def test_hub_example_exits_after_its_own_message(self) -> None:
        source = python_example("from ws13.hub import Client, Gap")
        port = self.start_lab()
        runs = []
        for _ in range(5):  # again and again: it exits each time
            result = self.run_python(source.replace(f":{LAB_PORT}/", f":{port}/"))
            assert result.returncode == 0, result.stderr
            runs.append(result.stdout.splitlines())
        message = "{'nick': 'ann', 'text': 'hi'}"
        for number, lines in enumerate(runs, 1):
            # Up to three earlier messages, then its own, which is the newest.
            assert len(lines) == min(number, 4), lines
            assert lines[-1] == f"{number} {message}", lines
            assert all(line.endswith(message) for line in lines)

    def test_hub_channel_history_is_bounded(self) -> None:
        # What the README says about running the hub example again and again.
        from ws13.hub.cli import DEMO_CHANNELS

        options = DEMO_CHANNELS["chat:*"]
        assert (options.history_size, options.history_ttl) == (200, 3600)
        assert "last 200 messages for at most an hour" in " ".join(README.split())

    def test_hub_shell_commands(self) -> None:
        port = self.start_lab()
        (block,) = [block for block in code_blocks("sh") if "ws13 pub " in block]
        outputs = []
        for line in block.splitlines():
            command = shlex.split(line, comments=True)
            if command[:2] not in (["ws13", "pub"], ["ws13", "sub"]):
                continue  # the --redis node needs a Redis
            args = [arg.replace(f":{LAB_PORT}/", f":{port}/") for arg in command[1:]]
            result = self.run_ws13(*args)
            assert (result.returncode, result.stderr) == (0, ""), (line, result.stderr)
            outputs.append(result.stdout)
        published, received = outputs
        assert published == ""
        assert '"data": "hello"' in received, received
        assert received.count("\n") == 1

    def test_server_example(self) -> None:
        source = python_example("from ws13.asyncio import serve")
        (port,) = {int(found) for found in re.findall(r'"127\.0\.0\.1", (\d+)', source)}
        assert port != LAB_PORT, "the lab already listens on 8765"
        run_on = self.usable_port(port)
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as file:
            file.write(source.replace(f'"127.0.0.1", {port}', f'"127.0.0.1", {run_on}'))
        self.addCleanup(os.unlink, file.name)
        server = self.spawn([sys.executable, file.name], stdout=subprocess.DEVNULL)
        wait_for_port(run_on, server)
        # The line the README gives to try it.
        line = f"echo hi | ws13 connect ws://127.0.0.1:{port}/"
        assert f"`{line}` prints `hi`" in README
        result = self.run_ws13("connect", f"ws://127.0.0.1:{run_on}/", input="hi\n")
        assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr

    def test_callback_example(self) -> None:
        # A handler, not a program: serve it and talk to it.
        handler = python_example("set_message_handler")
        ast.parse(handler)
        port = free_port()
        source = (
            "import asyncio\nfrom ws13.asyncio import serve\n\n"
            + handler
            + f"\n\nasync def main():\n    async with serve(echo, '127.0.0.1', {port}) as s:\n"
            "        await s.serve_forever()\n\nasyncio.run(main())\n"
        )
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as file:
            file.write(source)
        self.addCleanup(os.unlink, file.name)
        server = self.spawn([sys.executable, file.name], stdout=subprocess.DEVNULL)
        wait_for_port(port, server)
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input="one\ntwo\n")
        assert (result.returncode, result.stdout) == (0, "one\ntwo\n"), result.stderr


class ReadmeTextTests(unittest.TestCase):
    """What the README tells a newcomer before the first command fails."""

    def test_says_how_to_run_the_installed_command(self) -> None:
        text = " ".join(README.split())
        assert "`.venv/bin/ws13`" in text
        assert "`. .venv/bin/activate`" in text

    def test_says_what_the_test_command_costs(self) -> None:
        text = " ".join(README.split())
        assert re.search(r"about \d+ minutes on 2 cores", text)
        script = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
        packages = set(re.findall(r"APT_PACKAGES\+=\(([\w.-]+)\)", script))
        assert {"chromium", "nodejs", "npm", "redis-server", "valgrind"} <= packages
        for package in packages:
            assert f"`{package}`" in text, f"the README doesn't say test.sh installs {package}"

    def test_first_commands_unchanged(self) -> None:
        # CI runs `bash scripts/test.sh` exactly; the quick start stays one line.
        first, second = code_blocks("sh")[:2]
        assert first == (
            "python3 -m venv .venv && .venv/bin/pip install '.[speed,cli]'"
            " && .venv/bin/ws13 serve\n"
        )
        assert second == "bash scripts/test.sh\n"

    def test_exec_buffering_explained(self) -> None:
        text = " ".join(README.split())
        assert "--exec-pty 'tr a-z A-Z'" in text

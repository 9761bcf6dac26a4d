"""Tests for ``ws13 connect`` on a terminal, through a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from tests.cli.helpers import ENV, TIMEOUT, WS13, CLITestCase, wait_for_port

#: ANSI escape sequences prompt_toolkit draws with (CSI ..., OSC ...), removed
#: before matching; the \x1b[6n cursor position request is answered.
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[=>]|\r")
#: Without prompt_toolkit: the test hides it from the child.
NO_PROMPT_TOOLKIT = (
    "import sys; sys.modules['prompt_toolkit'] = None; from ws13.cli import main; sys.exit(main())"
)


class Terminal:
    """A child process on a pseudo-terminal; ``expect()`` waits for text on its screen."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        env = {**ENV, "TERM": "xterm", "COLUMNS": "100", "LINES": "30"}
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.raw = ""
        self.screen = ""  # what was printed, escape sequences removed
        self._seen = 0

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536).decode("utf-8", "replace")
        except OSError:  # EIO: the child closed the terminal
            return False
        if "\x1b[6n" in data:
            os.write(self.master, b"\x1b[1;1R")  # answer the cursor position request
        self.raw += data
        self.screen = ANSI.sub("", self.raw)
        return True

    def expect(self, text: str) -> None:
        """Wait until ``text`` appears on the screen after what was expected before."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            index = self.screen.find(text, self._seen)
            if index >= 0:
                self._seen = index + len(text)
                return
            if time.monotonic() > deadline or (
                not self._read(0.05) and self.process.poll() is not None
            ):
                raise AssertionError(f"{text!r} not on the screen:\n{self.screen}")

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def wait(self) -> int:
        status = self.process.wait(timeout=TIMEOUT)
        while self._read(0):
            pass
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        os.close(self.master)


class InteractiveTests(CLITestCase):
    def setUp(self) -> None:
        super().setUp()
        _, self.port = self.start_server()
        self.uri = f"ws://127.0.0.1:{self.port}/echo"

    def terminal(self, argv: list[str]) -> Terminal:
        terminal = Terminal(argv)
        self.addCleanup(terminal.kill)
        return terminal

    def check_session(self, terminal: Terminal) -> None:
        terminal.expect(f"= connected to {self.uri}; /help lists commands, Ctrl-D quits")
        terminal.type("hello there")
        terminal.expect("< hello there")
        terminal.type("/binary 00 01 ff")
        terminal.expect("< (binary, 3 bytes) 00 01 ff")
        terminal.type("/ping abc")
        terminal.expect("= pong after ")
        terminal.type("//slash")
        terminal.expect("< /slash")
        terminal.type("/nope")
        terminal.expect("= unknown command /nope; /help lists them, //text sends /text")
        terminal.type("/help")
        terminal.expect("/close [code] [reason]")
        terminal.type("/close 4000 all done")
        terminal.expect("= connection closed: 4000")
        assert terminal.wait() == 0, terminal.screen
        assert "Traceback" not in terminal.screen

    def test_prompt_toolkit(self) -> None:
        terminal = self.terminal([*WS13, "connect", self.uri])
        self.check_session(terminal)
        assert "plain mode" not in terminal.screen

    def test_plain_mode_without_prompt_toolkit(self) -> None:
        terminal = self.terminal([sys.executable, "-c", NO_PROMPT_TOOLKIT, "connect", self.uri])
        terminal.expect("ws13: prompt_toolkit is not installed: plain mode")
        self.check_session(terminal)

    def test_control_characters_escaped(self) -> None:
        # The program greets with terminal escapes; they are shown, not obeyed.
        _, port = self.start_server(
            "--exec", r"printf 'red \033[31m bell \007 \302\233 end\n'; cat"
        )
        for argv in (
            [*WS13, "connect", f"ws://127.0.0.1:{port}/"],
            [sys.executable, "-c", NO_PROMPT_TOOLKIT, "connect", f"ws://127.0.0.1:{port}/"],
        ):
            terminal = self.terminal(argv)
            terminal.expect("< red \\x1b[31m bell \\x07 \\x9b end")
            assert "\x1b[31m" not in terminal.raw
            terminal.type("/quit")
            assert terminal.wait() == 0

    def test_quit_and_eof(self) -> None:
        terminal = self.terminal([*WS13, "connect", self.uri])
        terminal.expect("= connected")
        terminal.type("/quit")
        terminal.expect("= connection closed: 1000")
        assert terminal.wait() == 0
        terminal = self.terminal([*WS13, "connect", self.uri])
        terminal.expect("= connected")
        terminal.expect(">")  # the prompt is up: Ctrl-D goes to prompt_toolkit
        os.write(terminal.master, b"\x04")  # Ctrl-D
        terminal.expect("= connection closed: 1000")
        assert terminal.wait() == 0

    def test_server_closes(self) -> None:
        server, port = self.start_server()
        terminal = self.terminal([*WS13, "connect", f"ws://127.0.0.1:{port}/echo"])
        terminal.expect("= connected")
        self.stop_server(server)
        terminal.expect("= connection closed: 1001 server shutting down")
        assert terminal.wait() == 0

    def test_reconnect(self) -> None:
        # --reconnect at the prompt: the server goes away, the session says so,
        # retries with backoff, and carries on with a server on the same port.
        server, port = self.start_server()
        uri = f"ws://127.0.0.1:{port}/echo"
        terminal = self.terminal([*WS13, "connect", uri, "--reconnect"])
        terminal.expect(f"= connected to {uri}")
        terminal.type("before")
        terminal.expect("< before")
        self.stop_server(server)
        terminal.expect("= connection closed: 1001 server shutting down")
        terminal.expect("ws13: reconnecting in 0.5 s")
        again = self.start("serve", "--port", str(port), stdout=subprocess.DEVNULL)
        wait_for_port(port, again)
        terminal.expect(f"= connected to {uri}")
        terminal.type("after")
        terminal.expect("< after")
        terminal.type("/quit")
        terminal.expect("= connection closed: 1000")
        assert terminal.wait() == 0, terminal.screen
        assert "Traceback" not in terminal.screen

    def test_bad_commands(self) -> None:
        terminal = self.terminal([*WS13, "connect", self.uri])
        terminal.expect("= connected")
        terminal.type("/binary zz")
        terminal.expect("= error: not hex; usage: /binary 00 ff 10")
        terminal.type("/close 999")
        terminal.expect("= error: invalid close code: 999; usage: /close [code] [reason]")
        terminal.type("/ping " + "x" * 200)
        terminal.expect("= error: a ping payload is at most 125 bytes")
        terminal.type("still open")
        terminal.expect("< still open")
        terminal.type("/quit")
        assert terminal.wait() == 0

"""Tests for ``ws13 serve --exec CMD``, run as real subprocesses."""

from __future__ import annotations

import os
import select
import subprocess
import time

from tests.cli.helpers import TIMEOUT, CLITestCase


class ExecTests(CLITestCase):
    def test_cat(self) -> None:
        server, port = self.start_server("--exec", "cat")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input="one\ntwo ☃\n\nthree\n")
        assert (result.returncode, result.stdout) == (0, "one\ntwo ☃\n\nthree\n"), result.stderr
        assert self.stop_server(server) == 0
        assert "ws13 running 'cat' for each connection" in self.stderr_of(server)

    def test_binary_through_cat(self) -> None:
        # Not UTF-8 on the way back: a binary message.
        _, port = self.start_server("--exec", "cat")
        result = self.run_ws13("connect", "--binary", f"ws://127.0.0.1:{port}/echo", input="00ff\n")
        assert (result.returncode, result.stdout) == (0, "00ff\n"), result.stderr

    def test_program_that_exits(self) -> None:
        _, port = self.start_server("--exec", "echo first; echo second")
        client = self.start(
            "connect", f"ws://127.0.0.1:{port}/", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        # stdin stays open: the program's exit closes the connection with 1000.
        assert client.wait(timeout=TIMEOUT) == 0, self.stderr_of(client)
        assert client.stdout is not None
        assert client.stdout.read() == "first\nsecond\n"

    def test_program_that_fails(self) -> None:
        _, port = self.start_server("--exec", "echo oops; exit 3")
        client = self.start(
            "connect", f"ws://127.0.0.1:{port}/", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert client.wait(timeout=TIMEOUT) == 1
        assert client.stdout is not None
        assert client.stdout.read() == "oops\n"
        self.assert_one_line_error(
            self.stderr_of(client), "connection closed abnormally: 1011 command exited with 3"
        )

    def test_missing_program(self) -> None:
        _, port = self.start_server("--exec", "ws13-no-such-program")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input="hi\n")
        assert result.returncode == 1
        self.assert_one_line_error(
            result.stderr, "connection closed abnormally: 1011 command exited with 127"
        )

    def test_killed_when_the_connection_closes(self) -> None:
        server, port = self.start_server("--exec", "echo $$; exec sleep 1000")
        client = self.start(
            "connect", f"ws://127.0.0.1:{port}/", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert client.stdout is not None
        assert client.stdin is not None
        pid = int(client.stdout.readline())
        os.kill(pid, 0)  # running
        client.stdin.close()
        assert client.wait(timeout=TIMEOUT) == 0
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the program is still running"
            time.sleep(0.02)
        assert self.stop_server(server) == 0
        assert "ended with status -15" in self.stderr_of(server)

    def test_long_lines_are_split(self) -> None:
        _, port = self.start_server("--exec", "cat")
        line = "x" * (2**16 + 10)
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input=line + "\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "x" * 2**16 + "\n" + "x" * 10 + "\n"


class ExecPtyTests(CLITestCase):
    """``--exec-pty``: the program's stdout is a terminal, so stdio flushes each line."""

    def test_tr_answers_each_line(self) -> None:
        # With --exec, tr would keep "hello" in its buffer while stdin stays
        # open; with a terminal it answers at once.
        server, port = self.start_server("--exec-pty", "tr a-z A-Z")
        client = self.start(
            "connect", f"ws://127.0.0.1:{port}/", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert client.stdin is not None
        assert client.stdout is not None
        for line in ("hello", "ws13 lab ☃"):
            client.stdin.write(line + "\n")
            client.stdin.flush()
            ready, _, _ = select.select([client.stdout], [], [], TIMEOUT)
            assert ready, f"no answer to {line!r} from tr"
            assert client.stdout.readline() == line.upper() + "\n"
        client.stdin.close()
        assert client.wait(timeout=TIMEOUT) == 0, self.stderr_of(client)
        assert self.stop_server(server) == 0
        stderr = self.stderr_of(server)
        assert "ws13 running 'tr a-z A-Z' with a pseudo-terminal for each connection" in stderr

    def test_no_echo_and_no_carriage_returns(self) -> None:
        _, port = self.start_server("--exec-pty", "cat")
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input="one\n\ntwo\n")
        assert (result.returncode, result.stdout) == (0, "one\n\ntwo\n"), result.stderr

    def test_program_that_exits(self) -> None:
        _, port = self.start_server("--exec-pty", "printf 'first\\nlast, no newline'")
        client = self.start(
            "connect", f"ws://127.0.0.1:{port}/", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert client.wait(timeout=TIMEOUT) == 0, self.stderr_of(client)
        assert client.stdout is not None
        assert client.stdout.read() == "first\nlast, no newline\n"

    def test_long_lines_are_split(self) -> None:
        _, port = self.start_server("--exec-pty", "cat")
        line = "x" * (2**16 + 10)
        result = self.run_ws13("connect", f"ws://127.0.0.1:{port}/", input=line + "\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "x" * 2**16 + "\n" + "x" * 10 + "\n"

"""Real proxies on loopback for the proxy tests: tinyproxy, microsocks, stunnel.

Each is a context manager that starts the program on a free 127.0.0.1 port,
waits until it listens, and stops it on exit. They tell what went through
them: ``Tinyproxy.connects()`` reads tinyproxy's log for its ``CONNECT``
lines, ``Microsocks.connects()`` microsocks' output for its connections.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
from types import TracebackType

import trustme

from tests.utils import MS, free_port

__all__ = ["Microsocks", "Stunnel", "Tinyproxy"]

TIMEOUT = 10_000 * MS


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        except OSError:
            time.sleep(10 * MS)
        else:
            return
    raise RuntimeError(f"{process.args[0]} didn't listen on {port}")


class _Program:
    """A program started on a free port; stopped (and waited for) on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = tempfile.TemporaryDirectory()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, args: list[str]) -> None:
        self.output = os.path.join(self.directory.name, "output")
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        wait_listening(self.port, self.process)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(TIMEOUT)
        self.directory.cleanup()

    def read_output(self) -> str:
        with open(self.output, errors="replace") as output:
            return output.read()


class Tinyproxy(_Program):
    """tinyproxy, an HTTP proxy (CONNECT), with Basic auth if ``auth`` is given."""

    def __init__(self, auth: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.auth = auth
        self.log = os.path.join(self.directory.name, "tinyproxy.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Tinyproxy:
        config = os.path.join(self.directory.name, "tinyproxy.conf")
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f"LogFile {self.log!r}".replace("'", '"'),
            "LogLevel Connect",
            "MaxClients 50",
            "Allow 127.0.0.1",
        ]
        if self.auth is not None:
            lines.append(f"BasicAuth {self.auth[0]} {self.auth[1]}")
        with open(config, "w") as file:
            file.write("\n".join(lines) + "\n")
        self.start(["tinyproxy", "-d", "-c", config])
        return self

    def connects(self) -> list[str]:
        """The ``host:port`` of each CONNECT request tinyproxy logged."""
        try:
            with open(self.log, errors="replace") as log:
                text = log.read()
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            if "Request (file descriptor" in line and ": CONNECT " in line:
                # ...: Request (file descriptor 7): CONNECT 127.0.0.1:4242 HTTP/1.1
                found.append(line.rsplit(": CONNECT ", 1)[1].split()[0])
        return found


class Microsocks(_Program):
    """microsocks, a SOCKS5 proxy, with username/password auth if ``auth`` is given."""

    def __init__(self, auth: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.auth = auth

    def url(self, scheme: str = "socks5h") -> str:
        user = "" if self.auth is None else f"{self.auth[0]}:{self.auth[1]}@"
        return f"{scheme}://{user}127.0.0.1:{self.port}"

    def __enter__(self) -> Microsocks:
        args = ["microsocks", "-i", "127.0.0.1", "-p", str(self.port)]
        if self.auth is not None:
            args += ["-u", self.auth[0], "-P", self.auth[1]]
        self.start(args)
        return self

    def connects(self) -> list[str]:
        """The ``host:port`` microsocks connected to, one per client."""
        # "client[5] 127.0.0.1: connected to 127.0.0.1:4242"
        return [
            line.rsplit("connected to ", 1)[1].strip()
            for line in self.read_output().splitlines()
            if "connected to " in line
        ]


class Stunnel(_Program):
    """stunnel terminating TLS in front of ``backend_port``: an https:// proxy.

    The certificate (for 127.0.0.1 and localhost) comes from ``ca``;
    ``client_context`` trusts it.
    """

    def __init__(self, backend_port: int, ca: trustme.CA) -> None:
        super().__init__()
        self.backend_port = backend_port
        self.ca = ca
        self.client_context = ssl.create_default_context()
        ca.configure_trust(self.client_context)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> Stunnel:
        pem = os.path.join(self.directory.name, "proxy.pem")
        self.ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            pem
        )
        os.chmod(pem, 0o600)
        config = os.path.join(self.directory.name, "stunnel.conf")
        with open(config, "w") as file:
            file.write(
                "foreground = yes\n"
                f"pid = {self.directory.name}/stunnel.pid\n"
                "debug = 5\n"
                "[proxy]\n"
                f"accept = 127.0.0.1:{self.port}\n"
                f"connect = 127.0.0.1:{self.backend_port}\n"
                f"cert = {pem}\n"
            )
        self.start(["stunnel4", config])
        return self

    def tunnelled(self) -> list[tuple[int, int]]:
        """Bytes stunnel sent to the client (TLS) and to the backend, per closed connection."""
        return [
            (int(match[1]), int(match[2]))
            for match in re.finditer(
                r"Connection closed: (\d+) byte\(s\) sent to TLS, (\d+) byte\(s\) sent to socket",
                self.read_output(),
            )
        ]

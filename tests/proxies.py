"""Real proxies on loopback for the tests: tinyproxy, microsocks, dante, stunnel.

Each runs as a child process with its own configuration in a temporary
directory, on a free port of 127.0.0.1, and logs there: a test reads the log
to prove its traffic went through the proxy. ``scripts/test.sh`` installs
them (Debian packages tinyproxy, microsocks, dante-server, stunnel4).
Synchronous on purpose: the asyncio and the threaded tests share them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import trustme

from tests.utils import MS, free_port

__all__ = ["Dante", "Microsocks", "ProxyProcess", "Stunnel", "Tinyproxy"]

#: How long a proxy may take to start listening, or to stop.
STARTUP = 5000 * MS


class ProxyProcess:
    """A proxy daemon in the foreground; ``with`` starts it and stops it."""

    scheme = "http"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ws13-proxy-"))
        self.port = free_port()
        self.log_path = self.dir / "log"
        #: Where the process's stdout and stderr go.
        self.console_path = self.dir / "console"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"{self.scheme}://{user}:{password}@127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the proxy logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        with open(self.console_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
            )
        deadline = time.monotonic() + STARTUP
        while True:
            if self.process.poll() is not None:
                console = self.console_path.read_text(errors="replace")
                raise RuntimeError(f"{self.command()[0]} exited: {console}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=STARTUP).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(10 * MS)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(STARTUP)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ProxyProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class Tinyproxy(ProxyProcess):
    """tinyproxy, an HTTP proxy: ``CONNECT`` to ``ports`` only, Basic auth if asked.

    Its log has a line ``Request (file descriptor N): CONNECT host:port HTTP/1.1``
    per tunnel.
    """

    def __init__(self, *ports: int, auth: tuple[str, str] | None = None) -> None:
        super().__init__()
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{self.log_path}"',
            "LogLevel Connect",
            "MaxClients 50",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
            *(f"ConnectPort {port}" for port in ports),
        ]
        if auth is not None:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        (self.dir / "tinyproxy.conf").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return ["tinyproxy", "-d", "-c", str(self.dir / "tinyproxy.conf")]

    def tunnels(self) -> list[str]:
        """The targets of the CONNECT requests logged so far, e.g. ``127.0.0.1:8000``."""
        return re.findall(r"Request \(file descriptor \d+\): CONNECT (\S+) ", self.log())


class Microsocks(ProxyProcess):
    """microsocks, a SOCKS5 server, with a user and password if asked.

    It connects to servers from 127.0.0.2 (``-b``): a server sees the proxy as
    its peer. Its log has ``client[N] 127.0.0.1: connected to host:port``.
    """

    scheme = "socks5"
    OUTGOING = "127.0.0.2"

    def __init__(self, *, auth: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.auth = auth
        # microsocks logs on stdout.
        self.log_path = self.console_path

    def command(self) -> list[str]:
        command = ["microsocks", "-i", "127.0.0.1", "-p", str(self.port), "-b", self.OUTGOING]
        if self.auth is not None:
            command += ["-u", self.auth[0], "-P", self.auth[1]]
        return command

    def tunnels(self) -> list[str]:
        return [
            line.rsplit("connected to ", 1)[1]
            for line in self.log().splitlines()
            if "connected to " in line
        ]


class Dante(ProxyProcess):
    """Dante's danted, a SOCKS4 and SOCKS5 server without authentication.

    Its log has ``pass(1): tcp/connect [: 127.0.0.1.N -> ... 127.0.0.1.PORT``
    lines per tunnel.
    """

    scheme = "socks4"

    def __init__(self) -> None:
        super().__init__()
        rule = "from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: connect disconnect"
        (self.dir / "danted.conf").write_text(
            f"logoutput: {self.log_path}\n"
            f"internal: 127.0.0.1 port = {self.port}\n"
            "external: 127.0.0.1\n"
            "clientmethod: none\n"
            "socksmethod: none\n"
            "user.privileged: root\n"
            "user.unprivileged: nobody\n"
            f"client pass {{\n  {rule}\n}}\n"
            f"socks pass {{\n  {rule}\n  command: connect\n  protocol: tcp\n}}\n"
        )

    def command(self) -> list[str]:
        return [
            "danted",
            "-f",
            str(self.dir / "danted.conf"),
            "-N",
            "1",
            "-p",
            str(self.dir / "danted.pid"),
        ]

    def tunnels(self) -> list[str]:
        return [
            line for line in self.log().splitlines() if "tcp/connect" in line and "pass" in line
        ]


class Stunnel(ProxyProcess):
    """stunnel, terminating TLS in front of ``target_port``: tinyproxy becomes an
    ``https://`` proxy. The certificate, for 127.0.0.1 and localhost, comes
    from ``ca`` (trustme)."""

    scheme = "https"

    def __init__(self, target_port: int, ca: trustme.CA) -> None:
        super().__init__()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        pem = self.dir / "proxy.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
        os.chmod(pem, 0o600)
        (self.dir / "stunnel.conf").write_text(
            "foreground = yes\n"
            "pid =\n"
            f"output = {self.log_path}\n"
            "debug = notice\n"
            "[proxy]\n"
            f"accept = 127.0.0.1:{self.port}\n"
            f"connect = 127.0.0.1:{target_port}\n"
            f"cert = {pem}\n"
        )

    def command(self) -> list[str]:
        return ["stunnel4", str(self.dir / "stunnel.conf")]

    def tunnels(self) -> list[str]:
        return [line for line in self.log().splitlines() if "accepted connection" in line]

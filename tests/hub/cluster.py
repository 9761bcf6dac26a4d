"""A real Redis Cluster on loopback for the hub tests: 3 masters, 3 replicas.

``LocalCluster.start()`` runs six ``redis-server --cluster-enabled yes`` on
free ports (each with its own cluster bus port, ``--cluster-port``, so no
port needs ``+10000`` free), joins them with ``redis-cli --cluster create
--cluster-replicas 1`` and waits until every node says ``cluster_state:ok``.
``LocalCluster(tls=True)`` serves TLS only (clients, the cluster bus and
replication), with a CA and certificate made by ``trustme`` (``ca_file``).
Creating one takes a few seconds: test modules share one (``setUpModule``).
No persistence: a node's keys live in memory and on its replica only. Every
node wants ``PASSWORD`` (``requirepass``, ``masterauth``), so that the
backplane's credentials are exercised too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import trustme

from tests.utils import free_port

from .helpers import TIMEOUT

__all__ = ["PASSWORD", "LocalCluster"]

PASSWORD = "ws13-cluster-test"

#: Milliseconds before a silent master is deemed failed and its replica
#: promoted. Redis's default is 15 s; 1 s keeps a failover test short.
NODE_TIMEOUT_MS = 1000


class LocalCluster:
    """``redis-server`` processes forming one cluster; see the module docstring.

    Args:
        replicas: replicas per master (1); ``3 * (1 + replicas)`` nodes.
        tls: serve TLS only.
    """

    def __init__(self, replicas: int = 1, *, tls: bool = False) -> None:
        nodes = 3 * (1 + replicas)
        self.replicas = replicas
        # Distinct: free_port() may hand out a port twice in a row.
        ports: list[int] = []
        while len(ports) < 2 * nodes:
            if (port := free_port()) not in ports:
                ports.append(port)
        self.ports, self.bus_ports = ports[:nodes], ports[nodes:]
        self.dir = tempfile.mkdtemp(prefix="ws13-cluster-")
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        for program in ("redis-server", "redis-cli"):
            if shutil.which(program) is None:
                raise RuntimeError(f"{program} is missing: apt-get install redis-server")
        self.cli = ["redis-cli", "-a", PASSWORD, "--no-auth-warning"]
        self.tls_options: list[str] = []
        self.ca_file = ""
        if tls:
            ca = trustme.CA()
            self.ca_file = os.path.join(self.dir, "ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)
            cert = os.path.join(self.dir, "cert.pem")
            key = os.path.join(self.dir, "key.pem")
            issued = ca.issue_cert("127.0.0.1", "localhost")
            issued.private_key_pem.write_to_path(key)
            for blob in issued.cert_chain_pems:
                blob.write_to_path(cert, append=True)
            self.tls_options = [
                "--tls-cert-file", cert,
                "--tls-key-file", key,
                "--tls-ca-cert-file", self.ca_file,
                "--tls-auth-clients", "no",
                "--tls-cluster", "yes",
                "--tls-replication", "yes",
            ]  # fmt: skip
            self.cli += ["--tls", "--cacert", self.ca_file]

    @property
    def url(self) -> str:
        """``redis+cluster://`` (``rediss+cluster://`` with TLS) with the password
        and two seed nodes."""
        scheme = "rediss+cluster" if self.tls_options else "redis+cluster"
        seeds = f"127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}"
        query = f"?ssl_ca_certs={self.ca_file}" if self.tls_options else ""
        return f"{scheme}://:{PASSWORD}@{seeds}{query}"

    def command(self, port: int, *args: str) -> str:
        """Run one command on 127.0.0.1:``port`` with redis-cli; its output, stripped
        ("" when the node doesn't answer)."""
        result = subprocess.run(
            [*self.cli, "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    def keyslot(self, key: str) -> int:
        """The hash slot of ``key``, as the cluster computes it (CLUSTER KEYSLOT)."""
        return int(self.command(self.ports[0], "CLUSTER", "KEYSLOT", key))

    def start(self) -> None:
        try:
            for port, bus in zip(self.ports, self.bus_ports, strict=True):
                self.start_node(port, bus)
            subprocess.run(
                [*self.cli, "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in self.ports),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True,
                timeout=TIMEOUT,
                check=True,
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.close()
            raise

    def start_node(self, port: int, bus: int) -> None:
        node_dir = os.path.join(self.dir, str(port))
        os.makedirs(node_dir, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            ["redis-server",
             *(["--port", "0", "--tls-port", str(port), *self.tls_options]
               if self.tls_options else ["--port", str(port)]),
             "--cluster-port", str(bus),
             "--bind", "127.0.0.1",
             "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             # A replica may take over however long ago it last heard from
             # its master (an idle test cluster replicates nothing for a while).
             "--cluster-replica-validity-factor", "0",
             # A replica's first sync starts at once, not after 5 s of
             # waiting for more replicas.
             "--repl-diskless-sync-delay", "0",
             "--requirepass", PASSWORD,
             "--masterauth", PASSWORD,
             "--save", "",
             "--appendonly", "no",
             "--dir", node_dir,
             "--daemonize", "no", "--logfile", os.path.join(node_dir, "log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        while self.command(port, "PING") != "PONG":
            if self.processes[port].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server didn't start on port {port}")
            time.sleep(0.02)

    def wait_ok(self) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and every
        replica's link to its master is up (a manual failover needs it)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            states = [self._cluster_info(port).get("cluster_state") for port in self.processes]
            if all(state == "ok" for state in states) and all(
                "master_link_status:down" not in self.command(port, "INFO", "replication")
                for port in self.processes
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok: {states}")
            time.sleep(0.05)

    def _cluster_info(self, port: int) -> dict[str, str]:
        lines = self.command(port, "CLUSTER", "INFO").splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def master_of(self, slot: int) -> int:
        """The port of the master serving ``slot`` now (as the first node that answers says)."""
        for port in self.processes:
            nodes = self.command(port, "CLUSTER", "NODES")
            for line in nodes.splitlines():
                fields = line.split()
                if "master" not in fields[2] or "fail" in fields[2]:
                    continue
                for span in fields[8:]:
                    low, _, high = span.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return int(fields[1].split(":")[1].split("@")[0])
            if nodes:
                break
        raise RuntimeError(f"no master serves slot {slot}")

    def replica_of(self, master: int) -> int:
        """The port of a replica of the master on ``master``."""
        node_id = self.command(master, "CLUSTER", "MYID")
        for line in self.command(master, "CLUSTER", "REPLICAS", node_id).splitlines():
            return int(line.split()[1].split(":")[1].split("@")[0])
        raise RuntimeError(f"master {master} has no replica")

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

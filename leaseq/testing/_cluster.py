"""A private Redis Cluster on loopback: N masters started with ``--cluster-enabled yes``
and joined with ``redis-cli --cluster create``."""

from __future__ import annotations

import shutil
import subprocess
import time
from types import TracebackType

from ._server import RedisServer, RedisServerError

__all__ = ["RedisClusterServers"]


class RedisClusterServers:
    """``with RedisClusterServers(3) as cluster: RedisCluster.from_url(cluster.url)``;
    ``replicas=1`` gives every master a replica (for failover tests; needs 3 masters).
    1 or 2 masters (no replicas) make small clusters for scaling measurements."""

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        if shutil.which("redis-cli") is None:
            raise RedisServerError("redis-cli not found (Debian package redis-tools)")
        self.masters = masters
        self.replicas = replicas
        self.servers = [
            RedisServer(extra_args=[
                "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                "--cluster-config-file", "nodes.conf",
                # Redis 7 waits 5 s before a diskless full sync by default; a master
                # killed in that window has a replica with no data, which (rightly)
                # never takes over.
                "--repl-diskless-sync-delay", "0",
                # Pings move an idle master's replication offset, so start() can see its
                # replicas acknowledge an offset (below) within a second, not ten.
                "--repl-ping-replica-period", "1"])
            for _ in range(masters * (1 + replicas))]

    @property
    def url(self) -> str:
        """A seed node's URL (``redis://127.0.0.1:PORT``)."""
        return f"redis://127.0.0.1:{self.servers[0].port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes, create the cluster and wait until every slot is served."""
        for server in self.servers:
            server.start()
        if self.masters < 3:
            self._create_small()
        else:
            nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
            subprocess.run(["redis-cli", "--cluster", "create", *nodes,  # noqa: S603, S607
                            "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                           check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self._cli(self.servers[0].port, "cluster", "info")
            if "cluster_state:ok" in info and self._replicas_synced():
                return
            time.sleep(0.1)
        raise RedisServerError("the cluster did not reach cluster_state:ok with every "
                               "replica in sync")

    def _create_small(self) -> None:
        # `redis-cli --cluster create` wants 3 masters; 1 or 2 (for scaling benchmarks)
        # are joined by hand: split the slots, then introduce the nodes to each other.
        if self.replicas:
            raise RedisServerError("replicas need at least 3 masters")
        share = 16384 // len(self.servers)
        for i, server in enumerate(self.servers):
            last = 16383 if i == len(self.servers) - 1 else (i + 1) * share - 1
            self._cli(server.port, "cluster", "addslotsrange", str(i * share), str(last))
        for server in self.servers[1:]:
            self._cli(server.port, "cluster", "meet", "127.0.0.1", str(self.servers[0].port))

    @staticmethod
    def _cli(port: int, *args: str) -> str:
        return subprocess.run(  # noqa: S603
            ["redis-cli", "-p", str(port), *args],  # noqa: S607
            capture_output=True, text=True, timeout=5, check=True).stdout

    def _replicas_synced(self) -> bool:
        for server in self.servers:
            info = self._cli(server.port, "info", "replication")
            if "role:slave" in info and "master_link_status:up" not in info:
                return False
            # A master learns its replica's offset from the replica's first REPLCONF ACK
            # (sent once a second); until then a WAIT right after start-up can time out.
            if "role:master" in info and ",offset=0," in info:
                return False
        return True

    def server_for(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        return next(s for s in self.servers if s.port == port)

    def _master_of(self, port: int) -> int | None:
        """The port of the master the node on ``port`` replicates (``ROLE``), or ``None``
        when it is a master."""
        role = self._cli(port, "role").split()
        return int(role[2]) if role and role[0] == "slave" else None

    def master_now(self, port: int) -> int:
        """The port of the master serving what the node on ``port`` served: that node,
        or (when an automatic failover under load turned it into a replica) its master."""
        master = self._master_of(port)
        return port if master is None else master

    def replica_of(self, master_port: int, timeout: float = 10.0) -> RedisServer:
        """The node replicating the master on ``master_port`` (waiting up to ``timeout``
        seconds for one to say so: a replica reconnecting after a stall says nothing
        for a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            for server in self.servers:
                if not server.alive:
                    continue  # killed earlier in the test
                if self._master_of(server.port) == master_port:
                    return server
            if time.monotonic() >= deadline:
                raise RedisServerError(f"no replica of the master on port {master_port} "
                                       f"(roles now: {self._roles()})")
            time.sleep(0.1)

    def _roles(self) -> str:
        """Each node's role in short (``port master`` or ``port slave of P``), for an
        error that says what the cluster looked like."""
        roles = []
        for server in self.servers:
            if not server.alive:
                roles.append(f"{server.port} down")
                continue
            try:
                master = self._master_of(server.port)
            except (subprocess.SubprocessError, OSError):
                roles.append(f"{server.port} not answering")
                continue
            roles.append(f"{server.port} master" if master is None
                         else f"{server.port} slave of {master}")
        return ", ".join(roles)

    def close(self) -> None:
        """Kill every node and delete their directories."""
        for server in self.servers:
            server.close()

    def __enter__(self) -> RedisClusterServers:
        try:
            self.start()
        except BaseException:
            self.close()  # the processes already started too, not left running
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

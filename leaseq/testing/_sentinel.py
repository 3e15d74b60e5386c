"""A private Sentinel setup on loopback: a master, a replica and three sentinels."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ._server import RedisServer, RedisServerError, free_port

__all__ = ["RedisSentinelGroup"]


class RedisSentinelGroup:
    """``with RedisSentinelGroup() as group: group.url`` is a ``redis+sentinel://`` URL.

    ``kill_master()`` SIGKILLs the current master; the sentinels promote the replica
    within a few seconds (``down-after`` 1 s).
    """

    service = "leaseq-master"

    def __init__(self, sentinels: int = 3) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RedisServerError("redis-server not found on PATH")
        self.executable = exe
        self.master = RedisServer(appendonly=True, appendfsync="always")
        self.replica = RedisServer(appendonly=True, appendfsync="always")
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._tmp = tempfile.TemporaryDirectory(prefix="leaseq-sentinel-")
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,.../leaseq-master/0``."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start master, replica and sentinels; wait until the replica is in sync."""
        self.master.start()
        self.replica.extra_args = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        for port in self.sentinel_ports:
            conf = Path(self._tmp.name) / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self._tmp.name}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n")
            self._procs.append(subprocess.Popen(  # noqa: S603 - resolved executable
                [self.executable, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = subprocess.run(  # noqa: S603
                ["redis-cli", "-p", str(self.replica.port), "info", "replication"],  # noqa: S607
                capture_output=True, text=True, timeout=5, check=False).stdout
            if "master_link_status:up" in info:
                return
            time.sleep(0.1)
        raise RedisServerError("the replica did not sync with the master")

    def kill_master(self) -> None:
        """SIGKILL the master (the replica is promoted by the sentinels)."""
        self.master.kill()

    def close(self) -> None:
        """Stop everything and delete the directories."""
        for proc in self._procs:
            proc.kill()
            proc.wait()
        self.master.close()
        self.replica.close()
        self._tmp.cleanup()

    def __enter__(self) -> RedisSentinelGroup:
        try:
            self.start()
        except BaseException:
            self.close()  # the processes already started too, not left running
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

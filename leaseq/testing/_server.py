"""A private redis-server for tests.

``RedisServer`` starts a real ``redis-server`` on a free loopback port in a temporary
directory and can stop, kill (SIGKILL) and restart it, keeping its data directory, so
tests can prove what survives a crash. Use it as a context manager::

    with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from ..exceptions import LeaseqError

__all__ = ["RedisServer", "RedisServerError", "free_port"]


class RedisServerError(LeaseqError):
    """Raised by :class:`RedisServer` when redis-server is missing or does not start."""


_BUS_OFFSET = 10_000
"""A cluster node's bus listens on its port + 10000."""
_PORT_TRIES = 5
"""Ports tried when the one picked was taken before the server bound it."""


def free_port(*, bus: bool = False) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago; with ``bus``, one whose
    cluster bus port (port + 10000) was free too."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not bus:
            return port
        if port + _BUS_OFFSET <= 65535 and _is_free(port + _BUS_OFFSET):
            return port


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """A private ``redis-server`` process on 127.0.0.1.

    ``appendonly``/``appendfsync`` choose persistence (off by default, as fits unit
    tests); ``extra_args`` are passed through (``["--maxmemory-policy", "allkeys-lru"]``).
    DEBUG commands are enabled for fault tests (``DEBUG SLEEP``).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
        executable: str | None = None,
    ) -> None:
        exe = executable or shutil.which("redis-server")
        if exe is None:
            raise RedisServerError(
                "redis-server not found on PATH; install it (Debian/Ubuntu: "
                "sudo apt-get install redis-server)")
        self.executable = exe
        self._bus = "--cluster-enabled" in extra_args
        # A port picked here may be taken by another process before the server binds it
        # (tests running in parallel): the first start() then picks another.
        self._pick_port = port is None
        self._log_from = 0
        self.port = port or free_port(bus=self._bus)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        self._tmp = tempfile.TemporaryDirectory(prefix="leaseq-redis-")
        self.dir = Path(self._tmp.name)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        return [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--enable-debug-command", "local",
            "--logfile", str(self.dir / "redis.log"),
            *self.extra_args,
        ]

    @property
    def alive(self) -> bool:
        """Whether the server process is running (or stopped with SIGSTOP)."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING. A port it picked itself that
        another process took first is replaced by another one (a restart keeps its
        port)."""
        if self.alive:
            return
        for tries_left in reversed(range(_PORT_TRIES)):
            try:
                self._start_once(timeout)
                return
            except RedisServerError as exc:
                taken = self._pick_port and "Address already in use" in str(exc)
                if not taken or not tries_left:
                    raise
                self.port = free_port(bus=self._bus)
                (self.dir / "nodes.conf").unlink(missing_ok=True)

    def _start_once(self, timeout: float) -> None:
        try:  # a failure is told by this start's lines of the log, not an earlier one's
            self._log_from = (self.dir / "redis.log").stat().st_size
        except OSError:
            self._log_from = 0
        self.process = subprocess.Popen(  # noqa: S603 - argv from a resolved executable
            self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisServerError(
                    f"redis-server exited with {self.process.returncode}: "
                    f"{self.log_tail(since=self._log_from)}")
            if self.ping():
                self._pick_port = False  # started: a restart keeps this port
                return
            time.sleep(0.01)
        self.kill()
        raise RedisServerError(f"redis-server did not answer within {timeout} s")

    def ping(self) -> bool:
        """Whether the server answers ``PING`` right now (a raw socket, no client)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                # A password-protected server answers NOAUTH: it is up all the same.
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def log_tail(self, lines: int = 20, *, since: int = 0) -> str:
        """The last lines of the server's log file (of what it wrote after byte
        ``since``)."""
        try:
            with (self.dir / "redis.log").open("rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        """Send a signal to the server (SIGSTOP/SIGCONT to freeze it, for example)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server: no shutdown save, no AOF rewrite; what was fsynced stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, *, kill: bool = True) -> None:
        """Kill (or stop) the server and start it again on the same port and directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.kill()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.close()  # its directory too, not left to the garbage collector
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

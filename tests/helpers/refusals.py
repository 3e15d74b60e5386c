"""Put a real redis-server into a refusal — OOM, BUSY, MISCONF, READONLY — and take it out
again, for the tests of how leaseq copes with a server that answers but refuses.

Each refusal is an object with async :meth:`Refusal.on` and :meth:`Refusal.off` (or
``async with``); ``on`` returns only once a plain ``SET`` is refused with the refusal's
error code, ``off`` only once a ``SET`` is accepted again, so callers never guess a time.
Use them on a server of the test's own made by :func:`refusal_server` (MISCONF needs its
data directory to itself), never on a shared one::

    with refusal_server() as server:
        async with OutOfMemory(server):
            ...  # writes answer OOM

What the server still accepts under each (redis-server 7.0; scripts are checked at their
first write, and a script that wrote once may go on writing):

- ``OutOfMemory`` (``maxmemory`` 1 byte, ``noeviction``): commands flagged deny-oom (SET,
  HSET, SADD, ZADD, RPUSH, ...) are refused; DEL, SREM, SMOVE, PEXPIRE, reads, BLPOP
  and scripts whose first write is not deny-oom go through.
- ``Busy`` (another client runs a non-writing Lua loop): every command but SCRIPT KILL
  and SHUTDOWN NOSAVE is answered BUSY — once the loop has run ``busy-reply-threshold``
  (set to 50 ms); before that, commands just wait. INFO too is refused meanwhile.
- ``DiskError`` (the data directory removed, a failed BGSAVE, a save point set): every
  write and PING answer MISCONF; reads and INFO do not.
- ``ReadOnly`` (``REPLICAOF`` a bound port where nothing listens): every write answers
  READONLY; reads go on, the data stay; clients blocked in BLPOP get ``UNBLOCKED``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import anyio
import redis
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError

from leaseq.testing import RedisServer

__all__ = [
    "REFUSALS",
    "Busy",
    "DiskError",
    "OutOfMemory",
    "ReadOnly",
    "Refusal",
    "data_dir",
    "error_code",
    "refusal_server",
]

PROBE_KEY = "leaseq-test:refusal-probe"
"""The key the helpers write to check that writes are refused (or accepted again)."""

_STEP = 0.005
_SETTLE_TIMEOUT = 10.0

# A non-writing busy loop that ends by itself after ARGV[1] ms (SCRIPT KILL ends it sooner).
_SPIN = """
local t0 = redis.call('TIME')
local limit = tonumber(ARGV[1]) * 1000
while true do
  local t = redis.call('TIME')
  if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) >= limit then return 1 end
end
"""


def data_dir(server: RedisServer) -> Path:
    """The data directory (``--dir``) of a server made by :func:`refusal_server`."""
    return server.dir / "data"


def refusal_server(**options: Any) -> RedisServer:
    """A :class:`RedisServer`, not started, that every refusal here can be applied to.

    Its data directory is a directory of its own (:func:`data_dir`, inside the server's
    temporary directory, so it is cleaned up with it) that :class:`DiskError` may remove,
    and protected configs may be set from loopback, so that ``CONFIG SET dir`` can move
    the server into the recreated directory (Redis 7 refuses it by default). ``options``
    go to :class:`RedisServer`; its ``extra_args`` come after these.
    """
    extra = list(options.pop("extra_args", ()))
    server = RedisServer(**options)
    data_dir(server).mkdir()
    server.extra_args = ["--dir", str(data_dir(server)), "--enable-protected-configs",
                         "local", *extra]
    return server


def error_code(exc: BaseException) -> str | None:
    """The Redis error code of a refused command (``"OOM"``, ``"BUSY"``, ``"MISCONF"``,
    ``"READONLY"``, ...), or None for an error that is not a server reply.

    redis-py sets ``status_code`` only for the codes it maps to classes (OOM, READONLY,
    LOADING, ...); BUSY and MISCONF come as a plain ``ResponseError`` whose message starts
    with the code — except inside a transaction, where redis-py rewrites the message to
    ``Command # N (...) of pipeline caused error: ('MISCONF ...',)``.
    """
    if not isinstance(exc, ResponseError):
        return None
    code = getattr(exc, "status_code", None)
    if code:
        return str(code)
    message = str(exc)
    marker = "of pipeline caused error: ("
    if marker in message:
        message = message.split(marker, 1)[1].lstrip("'\"")
    word = message.split(" ", 1)[0]
    return word if word.isupper() else None


class Refusal:
    """One way a server refuses commands; see the module docstring.

    ``code`` is the error code of the refused replies and ``error`` the redis-py class a
    refused plain ``SET`` raises. Not reentrant: one ``on``/``off`` at a time.
    """

    code: ClassVar[str]
    error: ClassVar[type[RedisError]]

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self._baseline = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.server.port})"

    def _client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.server.url, socket_timeout=10.0)

    async def on(self) -> None:
        """Make the server refuse; return once a plain ``SET`` is refused with ``code``."""
        async with self._client() as client:
            await self._start(client)
            await self._until_set_refused(client)
            self._baseline = await self._errors(client)

    async def off(self) -> None:
        """End the refusal; return once a plain ``SET`` is accepted again."""
        async with self._client() as client:
            await self._stop(client)
            with anyio.fail_after(_SETTLE_TIMEOUT):
                while True:
                    try:
                        await client.set(PROBE_KEY, "accepted")
                        return
                    except ResponseError as exc:
                        if error_code(exc) != self.code:
                            raise
                    await anyio.sleep(_STEP)

    async def refused(self) -> int:
        """Replies with ``code`` the server sent since :meth:`on` returned (its own probes
        excluded), from ``INFO errorstats``; a refused command inside ``MULTI`` counts
        too. (For :class:`Busy`, only once it is over: INFO is refused meanwhile.)"""
        async with self._client() as client:
            return await self._errors(client) - self._baseline

    async def _errors(self, client: aioredis.Redis) -> int:
        stats = await client.info("errorstats")
        entry = stats.get(f"errorstat_{self.code}", {})
        return int(entry.get("count", 0)) if isinstance(entry, dict) else 0

    async def _until_set_refused(self, client: aioredis.Redis) -> None:
        with anyio.fail_after(_SETTLE_TIMEOUT):
            while True:
                try:
                    await client.set(PROBE_KEY, "refused?")
                except ResponseError as exc:
                    if error_code(exc) == self.code and isinstance(exc, self.error):
                        return
                    raise
                await anyio.sleep(_STEP)

    async def _start(self, client: aioredis.Redis) -> None:
        raise NotImplementedError

    async def _stop(self, client: aioredis.Redis) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Refusal:
        await self.on()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.off()


class OutOfMemory(Refusal):
    """OOM: ``maxmemory`` 1 byte under ``maxmemory-policy noeviction``; off restores both."""

    code = "OOM"
    error = OutOfMemoryError

    def __init__(self, server: RedisServer) -> None:
        super().__init__(server)
        self._saved: dict[str, str] = {}

    async def _start(self, client: aioredis.Redis) -> None:
        for name in ("maxmemory", "maxmemory-policy"):
            self._saved.update(await client.config_get(name))
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", 1)

    async def _stop(self, client: aioredis.Redis) -> None:
        await client.config_set("maxmemory", self._saved.get("maxmemory", "0"))
        await client.config_set("maxmemory-policy",
                                self._saved.get("maxmemory-policy", "noeviction"))


class Busy(Refusal):
    """BUSY: another client runs a non-writing Lua loop (``redis.call('TIME')``) that ends
    by itself after ``seconds``, with ``busy-reply-threshold`` at ``threshold_ms``.

    :meth:`on` returns once others are answered BUSY (the threshold has passed);
    :meth:`wait_over` waits for the loop's own end; :meth:`off` ends it now
    (``SCRIPT KILL``: allowed, the loop never wrote) and restores the threshold.
    """

    code = "BUSY"
    error = ResponseError

    def __init__(self, server: RedisServer, seconds: float = 2.0,
                 threshold_ms: int = 50) -> None:
        super().__init__(server)
        self.seconds = seconds
        self.threshold_ms = threshold_ms
        self._thread: threading.Thread | None = None
        self._option = "busy-reply-threshold"
        self._saved = "5000"
        self.started_at = 0.0
        """``time.monotonic()`` when the loop was sent."""

    async def on(self) -> None:
        async with self._client() as client:
            await self._start(client)
            # INFO is refused while the loop runs: the baseline is taken before.
            self._baseline = await self._errors(client)
            self._send_spin()
            await self._until_set_refused(client)
            self._baseline += 1  # that probe

    async def _start(self, client: aioredis.Redis) -> None:
        try:
            self._saved = next(iter((await client.config_get(self._option)).values()))
        except (StopIteration, ResponseError):  # Redis < 7 knows only the old name
            self._option = "lua-time-limit"
            self._saved = next(iter((await client.config_get(self._option)).values()))
        await client.config_set(self._option, self.threshold_ms)

    def _send_spin(self) -> None:
        ready = threading.Event()

        def spin() -> None:
            # A blocking client in a thread of its own: the test's event loop stays free.
            with redis.Redis(host="127.0.0.1", port=self.server.port) as client:
                client.ping()
                ready.set()
                with contextlib.suppress(ResponseError):  # "Script killed by user"
                    client.eval(_SPIN, 0, int(self.seconds * 1000))

        self._thread = threading.Thread(target=spin, name="redis-busy-loop", daemon=True)
        self._thread.start()
        ready.wait(_SETTLE_TIMEOUT)
        self.started_at = time.monotonic()

    async def wait_over(self) -> None:
        """Wait until the loop ended by itself (about ``seconds`` after :meth:`on`)."""
        if self._thread is not None:
            await anyio.to_thread.run_sync(self._thread.join, self.seconds + _SETTLE_TIMEOUT)

    @property
    def running(self) -> bool:
        """Whether the loop still runs."""
        return self._thread is not None and self._thread.is_alive()

    async def _stop(self, client: aioredis.Redis) -> None:
        if self.running:
            with contextlib.suppress(ResponseError):  # NOTBUSY: it just ended by itself
                await client.script_kill()
        await self.wait_over()
        self._thread = None
        await client.config_set(self._option, self._saved)


class DiskError(Refusal):
    """MISCONF: the server's data directory is removed, a save point is set and a BGSAVE
    fails, so ``stop-writes-on-bgsave-error`` refuses writes (and PING).

    Off recreates the directory, moves the server into it (``CONFIG SET dir``: the server
    works in its directory, so a directory recreated at the same path is not the one it
    is in), saves successfully, and removes the save point again. Needs a server made by
    :func:`refusal_server`.
    """

    code = "MISCONF"
    error = ResponseError

    def __init__(self, server: RedisServer) -> None:
        super().__init__(server)
        self.dir = data_dir(server)
        self._real_dir = self.dir.resolve()  # as the server reports it (its getcwd)
        self._saved_save = ""

    async def _start(self, client: aioredis.Redis) -> None:
        configured = Path(next(iter((await client.config_get("dir")).values())))
        if configured != self._real_dir:
            raise RuntimeError(f"{self!r}: the server's dir is {configured}, not its own "
                               f"{self.dir}; start it with refusal_server()")
        self._saved_save = next(iter((await client.config_get("save")).values()))
        # stop-writes-on-bgsave-error applies only while a save point is configured.
        await client.config_set("save", "3600 1")
        await self._bgsave(client)  # none in progress: the next one must be ours
        shutil.rmtree(self.dir)
        await self._bgsave(client, want="err")

    async def _stop(self, client: aioredis.Redis) -> None:
        self.dir.mkdir(exist_ok=True)
        await client.config_set("dir", str(self.dir))
        await self._bgsave(client, want="ok")
        await client.config_set("save", self._saved_save)

    @staticmethod
    async def _bgsave(client: aioredis.Redis, want: str | None = None) -> None:
        """Wait for a save in progress; with ``want``, run a BGSAVE and wait until it
        ended with that status."""
        with anyio.fail_after(_SETTLE_TIMEOUT):
            while True:
                info = await client.info("persistence")
                if not int(info["rdb_bgsave_in_progress"]):
                    break
                await anyio.sleep(_STEP)
            if want is None:
                return
            await client.bgsave()
            while True:
                info = await client.info("persistence")
                if not int(info["rdb_bgsave_in_progress"]):
                    if info["rdb_last_bgsave_status"] != want:
                        raise RuntimeError(f"BGSAVE ended {info['rdb_last_bgsave_status']}, "
                                           f"expected {want}")
                    return
                await anyio.sleep(_STEP)


class ReadOnly(Refusal):
    """READONLY: ``REPLICAOF`` a loopback port that is bound but not listening (held for
    the episode, so no other server can take it and sync its data over ours): the server
    keeps its data and refuses writes. Off is ``REPLICAOF NO ONE``."""

    code = "READONLY"
    error = ReadOnlyError

    def __init__(self, server: RedisServer) -> None:
        super().__init__(server)
        self._port_holder: socket.socket | None = None

    async def _start(self, client: aioredis.Redis) -> None:
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        self._port_holder = holder
        await client.replicaof("127.0.0.1", holder.getsockname()[1])

    async def _stop(self, client: aioredis.Redis) -> None:
        await client.replicaof("NO", "ONE")
        if self._port_holder is not None:
            self._port_holder.close()
            self._port_holder = None


REFUSALS: tuple[type[Refusal], ...] = (OutOfMemory, Busy, DiskError, ReadOnly)
"""Every refusal, in the order the chaos scenario cycles through them."""

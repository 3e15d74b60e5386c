"""leaseq: ``python leaseq_adapter.py MODE URL N [CONCURRENCY]`` (leaseq's virtualenv; see
``_clock.py`` for the modes).

No CONCURRENCY: ``Worker(queue, handlers)`` at its defaults on ``Redis.from_url(url)``.
With one: the same worker with ``concurrency=`` and a connection pool that fits it (the
worker warns when a pool is smaller than the concurrency plus its own connections). The
client counts the commands and round trips it sends (not those scripts run inside Redis).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import anyio
import redis.asyncio as aioredis
import structlog
from redis.asyncio.connection import Connection

from leaseq import JobContext, Queue, Worker

from _clock import produce, ready, start
from _resp_count import resp_commands


class CountingConnection(Connection):
    """Counts the commands and round trips this client sends (not script internals)."""

    commands = 0
    round_trips = 0

    def pack_command(self, *args: Any) -> list[bytes]:
        CountingConnection.commands += 1
        return super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.round_trips += 1
        if isinstance(command, (bytes, bytearray)):  # packed by the caller, not redis-py
            CountingConnection.commands += resp_commands(command)
        await super().send_packed_command(command, check_health)


args = start()
clock = args.clock()


async def main() -> None:
    pool_size = {} if args.concurrency is None else {
        "max_connections": max(100, args.concurrency + 50)}
    pool = aioredis.ConnectionPool.from_url(args.url, connection_class=CountingConnection,
                                            **pool_size)
    r = aioredis.Redis(connection_pool=pool)
    q = Queue(r, "bench")
    if args.mode == "produce":
        await produce(lambda stamp: q.enqueue("t", stamp), args.n)
        await r.aclose()
        return
    if args.mode == "drain":
        for offset in range(0, args.n, 10_000):
            await q.enqueue_many("t", [0] * min(10_000, args.n - offset))

    async def t(ctx: JobContext, payload: Any) -> None:
        if clock.tick(payload) and args.mode == "work":
            worker.stop()

    options = {} if args.concurrency is None else {"concurrency": args.concurrency}
    worker = Worker(q, {"t": t}, **options)
    if args.mode == "drain":
        ready()
        clock.go()
        CountingConnection.commands = CountingConnection.round_trips = 0
        await worker.run(burst=True, handle_signals=False)
    else:
        await worker.run(handle_signals=False)
    clock.report("leaseq", concurrency=worker.concurrency,
                 commands=CountingConnection.commands,
                 round_trips=CountingConnection.round_trips)
    await r.aclose()


if __name__ == "__main__":
    # As `leaseq worker` configures it (cli/logsetup.py): a logger resolved once, not at
    # every call (each of structlog's lazy proxies binds anew per call otherwise).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                        cache_logger_on_first_use=True)
    anyio.run(main)

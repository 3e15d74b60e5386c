"""The queues a worker serves, with what serving each takes: its handlers, its ack
batcher, and enough connections."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from redis.asyncio import BlockingConnectionPool

from ..exceptions import InvalidInput
from ..protocol.queue import Queue
from .acks import AckBatcher
from .task import normalise_handlers
from .typed import HandlerSpec

__all__ = ["DEFAULT_CONCURRENCY", "REDIS_SLOTS", "Served", "check_pool", "default_concurrency",
           "routes_of"]

log = structlog.get_logger("leaseq.worker")

DEFAULT_CONCURRENCY = 100
"""Jobs a worker runs at once unless told, when its clients' pools have room for them
(see :func:`default_concurrency`)."""

# Fewer than this by default only for a pool too small for the worker's own calls too
# (which is warned about anyway).
_MIN_DEFAULT = 10

REDIS_SLOTS = 16
"""Connections a worker's own per-job calls (heartbeats, fails, releases) share."""
# Connections the worker itself may hold at once besides its handlers': per-job calls,
# claims, the wake-up wait, acks, the reaper, metrics.
_OWN_CONNECTIONS = REDIS_SLOTS + 5


class Served:
    """One queue a worker serves: the queue, its handlers and its ack batcher (which the
    queues of one client share: :func:`~leaseq.runtime.acks.ack_batchers`)."""

    __slots__ = ("acks", "caps", "queue", "tasks")

    def __init__(self, queue: Queue, handlers: Mapping[str, HandlerSpec],
                 acks: AckBatcher) -> None:
        self.queue = queue
        self.tasks = normalise_handlers(handlers)
        self.acks = acks
        # Per-task attempt limits, applied (and stored with each job) at claim time.
        self.caps = {name: t.max_attempts for name, t in self.tasks.items()
                     if t.max_attempts is not None}


def routes_of(
    queue: Queue | Mapping[Queue, Mapping[str, HandlerSpec]],
    handlers: Mapping[str, HandlerSpec] | None,
) -> dict[Queue, Mapping[str, HandlerSpec]]:
    """The handlers of each served queue, from ``Worker``'s first two arguments."""
    if isinstance(queue, Queue):
        if handlers is None:
            raise InvalidInput("Worker(queue, handlers) needs the handlers")
        return {queue: handlers}
    if isinstance(queue, Mapping) and handlers is None and queue:
        names = [q.name if isinstance(q, Queue) else q for q in queue]
        for q in queue:
            if not isinstance(q, Queue):
                raise InvalidInput(f"Worker takes Queue objects as keys, got {q!r}")
        if len(set(names)) != len(names):
            raise InvalidInput(f"a worker serves each queue once, got {names}")
        return dict(queue)
    raise InvalidInput("use Worker(queue, handlers) or Worker({queue: handlers, ...}), "
                       f"got {queue!r}")


def default_concurrency(queues: list[Queue]) -> int:
    """:data:`DEFAULT_CONCURRENCY`, or what fits the smallest pool among the queues'
    clients that raises rather than waits when it runs out: its limit less the worker's
    own connections, so a default worker never warns of its pool. On redis-py's default
    pool of 100 connections that is 79 (a no-op drain at 79 runs about 5 % slower than
    at 100)."""
    fitted = DEFAULT_CONCURRENCY
    for q in queues:
        limit = _raising_limit(q)
        if limit is not None:
            fitted = min(fitted, max(_MIN_DEFAULT, limit - _OWN_CONNECTIONS))
    return fitted


def check_pool(queue: Queue, concurrency: int) -> None:
    """Warn when the client's pool may run out: redis-py's ``ConnectionPool`` raises
    ``MaxConnectionsError`` (by default at 100 connections) instead of waiting. A
    ``BlockingConnectionPool`` waits for a connection instead, so it is not warned
    about."""
    limit = _raising_limit(queue)
    if limit is not None and limit < concurrency + _OWN_CONNECTIONS:
        log.warning("connection_pool_small", queue=queue.name, max_connections=limit,
                    concurrency=concurrency,
                    advice=f"allow at least concurrency + {_OWN_CONNECTIONS} connections "
                           "(more if handlers use the client), or use a "
                           "BlockingConnectionPool")


def _raising_limit(queue: Queue) -> int | None:
    """The connection limit of the queue's client's pool if running out raises there."""
    pool = getattr(queue.redis, "connection_pool", None)  # a cluster client has none
    limit = getattr(pool, "max_connections", None)
    if isinstance(limit, int) and not isinstance(pool, BlockingConnectionPool):
        return limit
    return None

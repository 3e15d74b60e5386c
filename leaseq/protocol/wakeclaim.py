"""A claim that waits for work: ``BLPOP`` on the queue's wake list and the claim script,
written together on one connection.

Redis holds a client's later commands while it is blocked and runs them as soon as the
``BLPOP`` returns, so the claim runs the moment a job is enqueued, without a round trip
back to the worker and a second one to ask for the job (on an idle worker that second
round trip took 0.44 ms of a 1.1 ms enqueue-to-start p50). The exchange is leaseq's own,
never re-sent: the caller treats a connection error as a claim whose reply was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import anyio
from redis.exceptions import ResponseError

from .resp import pack
from .tx import on_pool_connection
from .wire import AnyRedis, redis_failure

__all__ = ["WAIT_SLACK", "WaitAbandoned", "blpop_then"]

WAIT_SLACK = 5.0
"""Seconds past the ``BLPOP`` timeout after which a server that has not answered is
taken for gone (the connection is closed): Redis ends blocking timeouts at its ``hz``
tick, a slow server later still, but a silent one must not hold the worker for ever."""


class WaitAbandoned(Exception):
    """An interrupted wait the server could not be asked to end (``CLIENT UNBLOCK``
    refused or unanswered): the connection was closed instead, the ``BLPOP`` most likely
    still blocked and the command behind it never run."""


async def blpop_then(
    redis: AnyRedis, wake: str, timeout: float, command: tuple[Any, ...],
    interrupt: anyio.Event | None,
) -> tuple[float, Any]:
    """Block on ``wake`` for up to ``timeout`` seconds, then run ``command``; return the
    server's clock when the exchange began (Redis ms) and ``command``'s reply (an error
    reply is returned, not raised: both replies are always read). An error of the
    ``BLPOP`` itself (``UNBLOCKED`` when the server turned replica, a refusal) is not
    returned: the command after it met the same server.

    ``interrupt`` set during the wait ends the ``BLPOP`` at once (``CLIENT UNBLOCK``, as
    if it timed out): ``command`` still runs and its reply is returned; if the server
    refuses the unblock, :class:`WaitAbandoned` is raised instead. A plain or Sentinel
    client only (the caller checks); raises on a connection error, or when no reply
    came ``WAIT_SLACK`` seconds after the timeout.
    """

    async def talk(conn: Any) -> tuple[float, Any]:
        await conn.send_packed_command(pack(
            [("CLIENT", "ID"), ("TIME",), ("BLPOP", wake, timeout), command], conn.encoder))
        # Read before the wait: by these replies the BLPOP is blocked (or done), so an
        # unblock sent from now on reaches it.
        try:
            client_id: int | None = await conn.read_response()
        except ResponseError:  # CLIENT refused (an ACL): an interrupt closes the connection
            client_id = None
        seconds, micros = await conn.read_response()
        began = int(seconds) * 1000 + int(micros) / 1000
        unblocking = _Unblock(redis, client_id)
        failed: Exception | None = None
        # The watcher is a bare task, not a task group's: a group's start, cancel and exit
        # took ~110 µs of the ~850 µs from an enqueue to its handler on an idle worker,
        # the task ~10 µs. It is cancelled or awaited on every way out.
        watcher: asyncio.Task[None] | None = None
        try:
            with anyio.CancelScope() as reading:
                if interrupt is not None:
                    watcher = asyncio.get_running_loop().create_task(
                        unblocking.on(interrupt, reading))
                try:
                    reply = await _read_both(conn, timeout + WAIT_SLACK)
                except Exception as exc:
                    failed = exc
            if watcher is not None and unblocking.sent:
                # The unblock's own reply is awaited, so it cannot reach the server after
                # this connection went back to the pool and blocked for somebody else.
                await watcher
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
        if unblocking.sent:
            # Its id may still be the target of an unblock that failed on the way: not
            # lent out again.
            await conn.disconnect()
        if reading.cancelled_caught:
            raise WaitAbandoned("the server did not end the wait (CLIENT UNBLOCK refused)")
        if failed is not None:
            raise failed
        return began, reply

    return await on_pool_connection(redis, talk)


async def _read_both(conn: Any, limit: float) -> Any:
    """The BLPOP's reply (dropped) and the command's, each read whole, so the connection
    stays in step whatever they say."""
    with anyio.fail_after(limit):
        # math.inf: no socket_timeout shorter than the BLPOP's own may cut it.
        with contextlib.suppress(ResponseError):
            await conn.read_response(timeout=math.inf)
        try:
            return await conn.read_response(timeout=math.inf)
        except ResponseError as exc:
            return exc


class _Unblock:
    """Ends a wait when told to: ``CLIENT UNBLOCK`` from another connection, or, when the
    server will not (no client id, the command refused or failed), by cancelling the
    reads, which closes the waiting connection."""

    __slots__ = ("client_id", "redis", "sent")

    def __init__(self, redis: AnyRedis, client_id: int | None) -> None:
        self.redis = redis
        self.client_id = client_id
        self.sent = False

    async def on(self, interrupt: anyio.Event, reading: anyio.CancelScope) -> None:
        await interrupt.wait()
        if self.client_id is not None:
            self.sent = True
            try:
                # 1: it was blocked, and now answers as if timed out; 0: its BLPOP had
                # returned already. Either way both replies are on their way.
                with anyio.move_on_after(WAIT_SLACK):
                    await self.redis.client_unblock(self.client_id)
                    return
            except Exception as exc:
                if not redis_failure(exc):
                    raise
        reading.cancel()

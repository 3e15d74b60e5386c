"""Coalesces the acks of concurrent handlers into one transaction per batch.

Handlers hand their result to :meth:`AckBatcher.ack` and wait. One flusher task takes
whatever has accumulated and acks it with one ``WATCH``/``MULTI``/``EXEC``; acks that
arrive meanwhile form the next batch. There is no timer: a lone ack goes out at once, and
under load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import anyio
import structlog

from ..exceptions import LeaseqError
from ..models import Lease
from ..protocol.queue import Queue
from ..protocol.wire import retryable
from .outage import Outage

log = structlog.get_logger(__name__)

_MAX_BATCH = 512


class AckNotConfirmed(LeaseqError):
    """An ack the worker gave up waiting for while it stopped (Redis did not answer in
    time). It may or may not have committed; if not, the lease expires and the job is
    redone."""


class PendingAck:
    """One ack waiting for its batch; ``done`` resolves with the outcome.

    A plain future, not an ``anyio.Event``: one is made per job, and the event costs
    several times as much to make and to wait on."""

    __slots__ = ("current_lease", "done", "result")

    def __init__(self, current_lease: Callable[[], Lease], result: Any) -> None:
        self.current_lease = current_lease
        self.result = result
        self.done: asyncio.Future[bool | BaseException] = (
            asyncio.get_running_loop().create_future())


class AckBatcher:
    """See the module docstring. Run :meth:`run` in a task group before acking."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.outage = Outage("ack", queue=queue.name)
        self._pending: list[PendingAck] = []
        self._wakeup = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._deadline = math.inf

    def limit(self, seconds: float) -> None:
        """Give the batch in flight, and any later one, at most ``seconds`` more (a
        stopping worker: Redis may not answer at all). Acks cut off this way are reported
        to their handlers as not confirmed; their leases expire and the jobs are redone."""
        self._deadline = min(self._deadline, anyio.current_time() + seconds)
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, self._deadline)

    async def ack(self, current_lease: Callable[[], Lease], result: Any) -> bool:
        """Ack the lease returned by ``current_lease()`` (read at send time, so heartbeat
        renewals are seen). True when acked, False when the lease was lost; raises what
        ``ack_many`` raised for other errors (a result that cannot be serialised)."""
        item = PendingAck(current_lease, result)
        self._pending.append(item)
        self._wakeup.set()
        # A cancelled wait cancels the future too; the flusher skips it then.
        outcome = await item.done
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def run(self) -> None:
        """Flush batches until cancelled."""
        self._deadline = math.inf  # a worker run again after a stop starts unbounded
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            while self._pending:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                # A batch in flight must finish even when the worker is being cancelled:
                # its handlers are waiting for the answer. Only limit() bounds it.
                with anyio.CancelScope(shield=True, deadline=self._deadline) as scope:
                    self._scope = scope
                    await self._flush(batch)
                self._scope = None
                if scope.cancelled_caught:
                    for item in batch:
                        if not item.done.done():
                            self._resolve(item, AckNotConfirmed(
                                "the worker stopped before Redis confirmed the ack"))

    async def _flush(self, batch: list[PendingAck]) -> None:
        delay = 0.05
        while batch:
            try:
                oks = await self.queue.ack_many(
                    [(item.current_lease(), item.result) for item in batch])
            except Exception as exc:
                if not retryable(exc):
                    if len(batch) == 1:
                        self._resolve(batch[0], exc)
                        return
                    # One bad result (unserialisable) must not fail its neighbours.
                    for item in batch:
                        await self._flush([item])
                    return
                # Retry while the leases are still ours by the local clock; past that the
                # reaper will give the job to someone else, and it will be redone.
                self.outage.failed(exc, jobs=len(batch), retry_in=delay)
                now = time.monotonic()
                keep = []
                for item in batch:
                    if item.current_lease().local_deadline > now:
                        keep.append(item)
                    else:
                        self._resolve(item, exc)
                batch = keep
                if batch:
                    await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.outage.ok()
            for item, ok in zip(batch, oks, strict=True):
                self._resolve(item, ok)
            return

    @staticmethod
    def _resolve(item: PendingAck, outcome: bool | BaseException) -> None:
        if not item.done.done():
            item.done.set_result(outcome)

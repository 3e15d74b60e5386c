"""Coalesces the acks of concurrent handlers into one transaction per batch.

Handlers hand their result to :meth:`AckBatcher.ack` and wait. One flusher task takes
whatever has accumulated and acks it with one ``WATCH``/``MULTI``/``EXEC``; acks that
arrive meanwhile form the next batch. There is no timer: a lone ack goes out at once, and
under load batches grow by themselves. A worker has one batcher per client its queues
use (one per queue on a cluster, where a transaction covers one slot): the queues of one
client are acked together, so a worker serving several queues does not split its
batches, and its round trips, by queue.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import structlog

from ..exceptions import LeaseqError
from ..models import Lease
from ..protocol.queue import Queue
from ..protocol.settling import ack_together
from ..protocol.wire import is_cluster, retryable
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

    __slots__ = ("current_lease", "done", "queue", "result")

    def __init__(self, queue: Queue, current_lease: Callable[[], Lease], result: Any) -> None:
        self.queue = queue
        self.current_lease = current_lease
        self.result = result
        self.done: asyncio.Future[bool | BaseException] = (
            asyncio.get_running_loop().create_future())


class AckBatcher:
    """See the module docstring. Run :meth:`run` in a task group before acking."""

    def __init__(self, queues: Sequence[Queue]) -> None:
        self.queues = list(queues)
        self.outage = Outage("ack", queue=",".join(q.name for q in self.queues))
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

    async def ack(self, queue: Queue, current_lease: Callable[[], Lease], result: Any) -> bool:
        """Ack the lease of ``queue`` (one of this batcher's) returned by
        ``current_lease()`` (read at send time, so heartbeat renewals are seen). True when
        acked, False when the lease was lost; raises what ``ack_many`` raised for other
        errors (a result that cannot be serialised)."""
        item = PendingAck(queue, current_lease, result)
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
                outcomes = await self._send(batch)
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
            for item, ok in outcomes:
                self._resolve(item, ok)
            return

    async def _send(self, batch: list[PendingAck]) -> list[tuple[PendingAck, bool]]:
        """One transaction for ``batch``: each ack and whether it was acked."""
        if len(self.queues) == 1:
            oks = await self.queues[0].ack_many(
                [(item.current_lease(), item.result) for item in batch])
            return list(zip(batch, oks, strict=True))
        parts: dict[str, tuple[Queue, list[PendingAck]]] = {}
        for item in batch:
            part = parts.get(item.queue.name)
            if part is None:
                parts[item.queue.name] = part = (item.queue, [])
            part[1].append(item)
        groups = list(parts.values())
        replies = await ack_together(
            [(q, [(item.current_lease(), item.result) for item in items])
             for q, items in groups])
        return [(item, ok) for (_, items), oks in zip(groups, replies, strict=True)
                for item, ok in zip(items, oks, strict=True)]

    @staticmethod
    def _resolve(item: PendingAck, outcome: bool | BaseException) -> None:
        if not item.done.done():
            item.done.set_result(outcome)


def ack_batchers(queues: Sequence[Queue]) -> dict[str, AckBatcher]:
    """The batcher of each queue (by name): one per client the queues share, one per
    queue on a cluster client."""
    groups: dict[int, list[Queue]] = {}
    for q in queues:
        groups.setdefault(id(q) if is_cluster(q.redis) else id(q.redis), []).append(q)
    batchers = [AckBatcher(group) for group in groups.values()]
    return {q.name: b for b in batchers for q in b.queues}

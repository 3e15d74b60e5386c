"""Coalesces the acks of concurrent handlers into one transaction per batch.

Handlers hand their result to :meth:`AckBatcher.ack` and wait. One flusher task takes
whatever has accumulated and acks it with one ``WATCH``/``MULTI``/``EXEC``; acks that
arrive meanwhile form the next batch. There is no timer: a lone ack goes out at once, and
under load batches grow by themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from ._types import RETRYABLE
from .models import Lease
from .queue import Queue

log = structlog.get_logger(__name__)

_MAX_BATCH = 512


@dataclass(eq=False)
class PendingAck:
    """One ack waiting for its batch; ``outcome`` is set before ``done`` fires."""

    current_lease: Callable[[], Lease]
    result: Any
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: bool | BaseException | None = None


class AckBatcher:
    """See the module docstring. Run :meth:`run` in a task group before acking."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._pending: list[PendingAck] = []
        self._wakeup = anyio.Event()

    async def ack(self, current_lease: Callable[[], Lease], result: Any) -> bool:
        """Ack the lease returned by ``current_lease()`` (read at send time, so heartbeat
        renewals are seen). True when acked, False when the lease was lost; raises what
        ``ack_many`` raised for other errors (a result that cannot be serialised)."""
        item = PendingAck(current_lease, result)
        self._pending.append(item)
        self._wakeup.set()
        await item.done.wait()
        if isinstance(item.outcome, BaseException):
            raise item.outcome
        return bool(item.outcome)

    async def run(self) -> None:
        """Flush batches until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            while self._pending:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                # A batch in flight must finish even when the worker is being cancelled:
                # its handlers are waiting for the answer.
                with anyio.CancelScope(shield=True):
                    await self._flush(batch)

    async def _flush(self, batch: list[PendingAck]) -> None:
        delay = 0.05
        while batch:
            try:
                oks = await self.queue.ack_many(
                    [(item.current_lease(), item.result) for item in batch])
            except RETRYABLE as exc:
                # Retry while the leases are still ours by the local clock; past that the
                # reaper will give the job to someone else, and it will be redone.
                now = time.monotonic()
                keep = []
                for item in batch:
                    if item.current_lease().local_deadline > now:
                        keep.append(item)
                    else:
                        self._resolve(item, exc)
                log.warning("ack_retry", queue=self.queue.name, jobs=len(keep),
                            error=repr(exc), retry_in=delay)
                batch = keep
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as exc:
                if len(batch) == 1:
                    self._resolve(batch[0], exc)
                    return
                # One bad result (unserialisable) must not fail its neighbours.
                for item in batch:
                    await self._flush([item])
                return
            for item, ok in zip(batch, oks, strict=True):
                self._resolve(item, ok)
            return

    @staticmethod
    def _resolve(item: PendingAck, outcome: bool | BaseException) -> None:
        item.outcome = outcome
        item.done.set()

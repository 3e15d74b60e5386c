"""One renewer for all of a worker's running jobs.

Each job is renewed when ``heartbeat_fraction`` of its lease has passed since the last
renewal; jobs due together are renewed with one ``extend_many`` call per lease length
(one round trip). A job whose renewal finds the lease gone is marked lost and its cancel
scope is cancelled, which cancels its handler. A renewal that fails on a connection error
is retried soon: the lease may well still be valid server-side (a slow or paused Redis,
or one refusing writes for a while), so the handler keeps running and the ack decides.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import anyio
import structlog

from ..models import Lease
from ..protocol.wire import error_text, retryable
from .outage import Outage

if TYPE_CHECKING:
    from ..protocol.queue import Queue

log = structlog.get_logger("leaseq.worker")

_MAX_SLEEP = 1.0


class Renewable:
    """What the heartbeat needs of a running job."""

    __slots__ = ("cancel_requested", "lease", "lost", "queue", "retry_at", "scope")

    def __init__(self, queue: Queue, lease: Lease) -> None:
        self.queue = queue
        self.lease = lease
        self.lost = False
        self.cancel_requested = False
        self.retry_at = 0.0
        self.scope: anyio.CancelScope | None = None

    def request_cancel(self) -> None:
        """A cancel is pending on this job's lease: stop its handler (the runner then
        settles it cancelled)."""
        if not self.cancel_requested:
            self.cancel_requested = True
            if self.scope is not None:
                self.scope.cancel()

    def current(self) -> Lease:
        """The lease as last renewed."""
        return self.lease


class Heartbeat:
    """Renews the leases of registered jobs (of any queue) until cancelled."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.jobs: set[Renewable] = set()
        self._wake = anyio.Event()
        self._next = math.inf
        self.outage = Outage("heartbeat")

    def due(self, job: Renewable) -> float:
        """When (monotonic) the job's lease should next be renewed."""
        length = job.lease.lease_timeout
        renewed_at = job.lease.local_deadline - length
        return max(renewed_at + length * self.fraction, job.retry_at)

    def add(self, job: Renewable) -> None:
        """Start renewing ``job``'s lease."""
        self.jobs.add(job)
        if self.due(job) < self._next:
            self._wake.set()

    def discard(self, job: Renewable) -> None:
        """Stop renewing ``job``'s lease (it is settling or finished)."""
        self.jobs.discard(job)

    async def run(self) -> None:
        """Renew due leases, sleep until the next is due, until cancelled."""
        while True:
            now = time.monotonic()
            due = [job for job in self.jobs if self.due(job) <= now]
            if due:
                await self._renew(due)
            now = time.monotonic()
            self._next = min((self.due(job) for job in self.jobs), default=math.inf)
            with anyio.move_on_after(max(0.0, min(self._next - now, _MAX_SLEEP))):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _renew(self, due: list[Renewable]) -> None:
        groups: dict[tuple[int, float], list[Renewable]] = defaultdict(list)
        for job in due:
            groups[id(job.queue), job.lease.lease_timeout].append(job)
        for (_, length), jobs in groups.items():
            queue = jobs[0].queue
            try:
                renewed = await queue.extend_many([job.lease for job in jobs], length)
            except Exception as exc:
                # Also an error that retrying may not fix: the heartbeat must not die of
                # it (every running job would lose its lease); the next renewal tries
                # again and the ack decides.
                retry_at = time.monotonic() + min(1.0, length * self.fraction / 2)
                for job in jobs:
                    job.retry_at = retry_at
                if retryable(exc):
                    self.outage.failed(exc, queue=queue.name, jobs=len(jobs))
                else:
                    log.error("heartbeat_failed", queue=queue.name, jobs=len(jobs),
                              error=error_text(exc))
                continue
            self.outage.ok()
            for job, lease in zip(jobs, renewed, strict=True):
                if lease is None:
                    if job in self.jobs:  # still running: its lease was taken over
                        job.lost = True
                        if job.scope is not None:
                            job.scope.cancel()
                        self.jobs.discard(job)
                else:
                    job.lease = lease
                    job.retry_at = 0.0
                    if lease.cancel_pending:  # the published cancel did not reach us
                        job.request_cancel()

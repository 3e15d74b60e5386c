"""The queue: producer calls, the lease calls of consumers, and read-only views.

:class:`Queue` puts together the parts that each hold one idea: :mod:`.producing`,
:mod:`.claiming`, :mod:`.settling` and :mod:`.reading`, over the shared
:class:`~leaseq.protocol.core.QueueCore`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .cancelling import Cancelling
from .claiming import Claiming
from .controlling import Controlling
from .producing import Producing
from .reading import Reading
from .settling import Settling
from .wait import wait_all

__all__ = ["Queue"]


class Queue(Producing, Claiming, Settling, Reading, Controlling, Cancelling):
    """A named queue on one Redis server (or one Redis Cluster slot).

    ``redis`` is a ``redis.asyncio.Redis`` client, with or without ``decode_responses``;
    the queue never closes it. ``lease_timeout`` (seconds) is the default length of a
    lease; ``max_attempts`` the default number of claims a job gets before it goes to
    ``dead``. Done jobs are forgotten by the reaper after ``done_ttl`` seconds or beyond the
    newest ``done_max`` (either may be ``None`` to disable it).

    These four settings belong to the queue, not to one process: one given here is
    stored with the queue in Redis (at :meth:`prepare`, with a ``queue_settings_changed``
    warning when it replaces a different stored value); one not given is read from there,
    so a reaper sidecar or the dashboard applies what the application set. The built-in
    defaults (30 s, 5 attempts, a day, 100,000) apply only where nothing is stored; the
    attributes hold the applied values once :meth:`prepare` ran.

    ``replicas`` (the durability knob): when > 0, every enqueue, ack and settle waits
    (``WAIT``) until that many replicas have the write, for up to ``replica_timeout``
    seconds; a write not confirmed in time is still done on the master, and is logged
    (``replication_not_confirmed``) and counted in :attr:`unconfirmed_writes`. On a
    Redis Cluster the wait goes to the master that serves the queue's slot.

    ``tracer`` (a :class:`leaseq.otel.Tracing`) traces each enqueue call and stores its
    trace context with the jobs, for the worker to continue the trace.

    Scheduling controls (``docs/scheduling.md``), enforced by the claim script for every
    worker at once and stored with the queue like the settings above, except that a
    process naming one must agree with the stored value (:class:`SettingsConflict`;
    :meth:`configure` changes them on purpose): ``ordering`` (``"set"``, the default:
    any waiting job may be claimed next; ``"fifo"``: priority, then enqueue order, with
    round-robin between the jobs' keys), ``max_in_flight`` (jobs running at once across
    every worker), ``key_concurrency`` (the same per key), ``rate_limit`` and
    ``key_rate`` (:class:`Rate`: job starts per period for the queue and per key).
    :meth:`pause` and :meth:`resume` stop and restart every claim.

    Safe to share between tasks of one event loop; create one per process.
    """

    async def map(
        self, task: str, payloads: Iterable[Any], *, timeout: float | None = None,
        max_attempts: int | None = None, lease_timeout: float | None = None,
    ) -> list[Any]:
        """Enqueue one job per payload and return their results in input order.

        Raises :class:`JobDead` for the first job (in input order) that ends dead, and
        :class:`WaitTimeout` if they are not all done within ``timeout`` seconds.
        """
        ids = await self.enqueue_many(task, payloads, max_attempts=max_attempts,
                                      lease_timeout=lease_timeout)
        return await wait_all(self, ids, timeout)

"""Frozen values that leaseq hands to its users."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["JobInfo", "JobState", "Lease", "QueueEvent", "QueueStats", "WorkerInfo"]

JobState = Literal["todo", "in_progress", "done", "dead", "delayed", "cancelled", "blocked"]
"""Where a job is: which one of the queue's sets holds its id."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A claimed job, held until ``deadline`` unless extended.

    ``token`` fences every later call: ``ack``, ``fail``, ``extend`` and ``release`` succeed
    only while the lease key in Redis still holds this token. ``fence`` is a number that
    grows with every claim of the queue; pass it to downstream stores that can reject
    writes from older owners.
    """

    queue: str
    """Name of the queue the job belongs to."""
    job_id: str
    """The job's id."""
    token: str
    """The fencing token of this claim."""
    task: str
    """The task name given at enqueue."""
    payload: Any = field(compare=False)
    """The decoded payload."""
    attempt: int
    """1 for the first claim, 2 for the second, ... (releases do not count)."""
    max_attempts: int
    """Claims allowed before the job goes to ``dead``."""
    lease_timeout: float
    """Length of this lease in seconds (the queue's default or the job's own)."""
    deadline: float
    """Redis server time (Unix seconds) at which the lease expires unless extended."""
    fence: int
    """Monotonic claim counter of the queue."""
    local_deadline: float = field(default=0.0, repr=False, compare=False)
    """``time.monotonic()`` by which the lease is certainly still valid: measured from
    before the request that set it was sent, so it errs early, never late."""
    server_offset: float = field(default=0.0, repr=False, compare=False)
    """Redis time minus local monotonic time, measured at claim (for timestamps)."""
    key: str = ""
    """The job's fair-queueing key (``enqueue(key=...)``); ``""`` when it has none."""
    holds: int = field(default=0, repr=False, compare=False)
    """What the lease holds besides the job, for its ack to release (1: a concurrency
    slot, 2: a place in a fifo queue's index); set by the claim."""
    cancel_pending: bool = field(default=False, repr=False, compare=False)
    """Whether the renewal that returned this lease found a cancel pending on it
    (:meth:`~leaseq.Queue.cancel`): its holder should stop the job and settle it."""

    @property
    def remaining(self) -> float:
        """Seconds the lease is certainly still held, by the local monotonic clock."""
        return max(0.0, self.local_deadline - time.monotonic())

    def server_now(self) -> float:
        """Estimate of Redis's clock now, from the claim's reading plus local elapsed time."""
        return time.monotonic() + self.server_offset


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One lifecycle event of a job (:meth:`~leaseq.Queue.events`)."""

    id: str
    """The event's id in the queue's stream (``<ms>-<n>``): pass it as ``since`` to go
    on after it."""
    type: str
    """``enqueued``, ``started``, ``progress``, ``acked``, ``failed``, ``retried``,
    ``released``, ``dead``, ``cancel_requested``, ``cancelled`` or ``lease_expired``."""
    job_id: str
    """The job's id."""
    at: float
    """When it was written, Redis time (Unix seconds)."""
    data: dict[str, str] = field(compare=False)
    """What else the event says (``attempt``, ``token``, ``owner``, ``error``,
    ``outcome``, ``reason``, ``progress``, ``task``), as text."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Sizes of a queue's sets at one instant (read in one round trip)."""

    todos: int
    """Jobs waiting to be claimed."""
    in_progress: int
    """Jobs claimed and not yet settled (including expired leases not yet reaped)."""
    done: int
    """Finished jobs still retained."""
    dead: int
    """Jobs that ran out of attempts or could not be run; kept until requeued or purged."""
    delayed: int
    """Jobs waiting for their due time (delays and retry backoff)."""
    done_last_minute: int = 0
    """Jobs acked in the last 60 seconds (retained ones): the queue's recent throughput."""
    epoch: str | None = None
    """The queue's epoch marker; ``None`` when the queue was never used on this server, or
    the server lost its data since (see ``leaseq doctor``)."""
    paused: bool = False
    """Whether the queue is paused (claimed by nobody; see :meth:`~leaseq.Queue.pause`)."""
    ordering: str = "set"
    """``"set"`` (any waiting job may be claimed next) or ``"fifo"`` (priority, then
    enqueue order, round-robin between keys)."""
    holding: int = 0
    """Leases holding a concurrency slot now (with ``max_in_flight`` or
    ``key_concurrency``)."""
    waiting_on_limits: int = 0
    """Waiting jobs that no worker may start now because of a limit or the pause (all
    of ``todos`` while paused, full or rate limited; else those of parked keys, counted
    over the first 1,000 of them)."""
    keys_waiting: int = 0
    """Keys with waiting jobs that may be served now (fifo queues)."""
    keys_parked: int = 0
    """Keys with waiting jobs held back by a per-key limit (fifo queues)."""
    expired: int = 0
    """Jobs that ended dead because their start deadline passed (counted apart from
    failures; they are also in ``dead``)."""
    cancelled: int = 0
    """Jobs cancelled (:meth:`~leaseq.Queue.cancel`), kept until purged."""
    blocked: int = 0
    """Jobs waiting for the jobs they were enqueued ``after=`` (not yet claimable)."""

    @property
    def total(self) -> int:
        """All jobs the queue currently holds."""
        return (self.todos + self.in_progress + self.done + self.dead + self.delayed
                + self.cancelled + self.blocked)


@dataclass(frozen=True, slots=True)
class JobInfo:
    """Everything the queue records about one job."""

    job_id: str
    """The job's id."""
    state: JobState | None
    """Which set holds the id; ``None`` when the hash exists but no set holds the id."""
    task: str | None
    """Task name (``None`` if the job hash is missing or corrupt)."""
    payload: Any = field(compare=False)
    """Decoded payload, or the raw bytes when they cannot be decoded."""
    attempts: int
    """Claims so far (releases not counted)."""
    max_attempts: int | None
    """Claims allowed before ``dead``."""
    failures: int
    """Handler failures recorded by ``fail``."""
    lease_expiries: int
    """Leases that expired and were reaped (the claimer died or hung)."""
    result: Any = field(compare=False)
    """Decoded result of a ``done`` job, else ``None``."""
    error: str | None
    """Last error recorded by ``fail``."""
    dead_reason: str | None
    """Why the job is dead, when it is."""
    enqueued_at: float | None
    """Redis time of the enqueue (Unix seconds)."""
    finished_at: float | None
    """Redis time of the ack or of the move to dead (Unix seconds)."""
    lease_token: str | None
    """Token of the live lease, when one exists."""
    lease_ttl: float | None
    """Seconds left on the live lease, when one exists."""
    owner: str | None
    """Name of the last claimer (``host:pid`` by default)."""
    priority: int = 0
    """The job's priority in a fifo queue (higher runs first; 0 by default)."""
    key: str | None = None
    """The job's fair-queueing key, when it has one."""
    expires_at: float | None = None
    """Redis time (Unix seconds) by which the job must start, else it ends dead."""
    progress: dict[str, Any] | None = field(default=None, compare=False)
    """The last progress its handler reported: ``fraction``, ``message``, ``data`` and
    ``at`` (Redis ms), or ``None``."""
    cancel_reason: str | None = None
    """Why the job was cancelled (set when a cancel was asked for, even while its running
    holder has not stopped yet)."""
    after: tuple[str, ...] = ()
    """The ids of the jobs it was enqueued after (``enqueue(after=...)``)."""
    waiting_for: int = 0
    """While it is ``blocked``: how many of those are not done yet."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker, as it last described itself (see :meth:`Queue.workers`)."""

    id: str
    """``host:pid:nonce``, unique per run."""
    host: str
    """The machine's host name."""
    pid: int
    """The worker's process id."""
    queues: tuple[str, ...]
    """Every queue the worker serves."""
    concurrency: int
    """Jobs it runs at once at most."""
    in_flight: int
    """Jobs it was running when it last said it was alive."""
    started_at: float
    """When it started (Unix seconds, its own clock)."""
    last_seen: float
    """When it last said it was alive (Unix seconds, Redis's clock)."""
    version: str
    """The leaseq version it runs."""
    counters: dict[str, int] = field(default_factory=dict, compare=False)
    """Its job counters (claimed, acked, failed, dead, lease_lost, released)."""


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A periodic schedule of a queue, as its schedulers declared it and as its ticks
    went (see :meth:`Queue.schedules`)."""

    name: str
    """The schedule's name (its task's, unless given)."""
    task: str
    """The task each tick enqueues."""
    spec: str
    """Its timing: ``cron <expression> <zone>`` or ``every <seconds>s``."""
    overlap: str
    """``allow``, or ``skip`` (no job while the previous one waits or runs)."""
    catch_up: int
    """Missed ticks still enqueued after every scheduler was down."""
    declared_at: float | None
    """When a scheduler last declared it (Unix seconds, Redis's clock)."""
    stale: bool
    """Whether no scheduler declared it for a while: it is not running any more."""
    next_tick: float | None
    """Its next tick (Unix seconds), ``None`` when stale."""
    last_tick: float | None
    """The last tick it decided (enqueued or skipped), in Unix seconds."""
    last_job: str | None
    """The id of the last job it enqueued."""
    last_job_state: JobState | None
    """That job's state now (``None`` once the retention forgot it)."""
    enqueued: int
    """Jobs enqueued by its ticks."""
    skipped_overlap: int
    """Ticks skipped because the previous job still waited or ran."""
    skipped_missed: int
    """Ticks skipped because every scheduler was down."""

"""Every exception leaseq raises derives from :class:`LeaseqError`."""

from __future__ import annotations

__all__ = [
    "InvalidInput",
    "JobDead",
    "JobNotFound",
    "LeaseLost",
    "LeaseqError",
    "SerializationError",
    "WaitTimeout",
]


class LeaseqError(Exception):
    """Base class of all leaseq errors; catch it to catch any of them."""


class InvalidInput(LeaseqError, ValueError):
    """Raised by :class:`~leaseq.Queue`, :class:`~leaseq.Reaper` and
    :class:`~leaseq.Worker` for bad arguments (an empty task name, a bad queue name,
    a non-positive lease timeout, ...), always *before* anything is written to Redis."""


class SerializationError(InvalidInput):
    """Raised by ``enqueue``/``ack`` when a payload or result cannot be serialised by the
    queue's serializer. Nothing has been written when it is raised."""


class LeaseLost(LeaseqError):
    """Raised by ``ack``, ``fail``, ``extend`` and ``release`` when the lease is no longer
    held by the caller: it expired, and the reaper requeued the job or another worker
    claimed it. The job's state was not changed by the call (fencing)."""

    def __init__(self, queue: str, job_id: str, token: str) -> None:
        super().__init__(f"lease on job {job_id!r} in queue {queue!r} is no longer held")
        self.queue = queue
        self.job_id = job_id
        self.token = token


class JobNotFound(LeaseqError, KeyError):
    """Raised by :meth:`~leaseq.Queue.wait` and admin calls when no job with that id is
    known to the queue (never enqueued, or trimmed after its ``done`` retention)."""

    def __init__(self, queue: str, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} in queue {queue!r}")
        self.queue = queue
        self.job_id = job_id

    def __str__(self) -> str:
        # KeyError would repr() the message; keep it readable.
        return str(self.args[0])


class JobDead(LeaseqError):
    """Raised by :meth:`~leaseq.Queue.wait` and :meth:`~leaseq.Queue.map` when the job
    ended in the ``dead`` set; ``reason`` is the recorded cause (the handler's last error,
    "lease expired N times", "unknown task", ...)."""

    def __init__(self, queue: str, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id!r} in queue {queue!r} is dead: {reason}")
        self.queue = queue
        self.job_id = job_id
        self.reason = reason


class WaitTimeout(LeaseqError, TimeoutError):
    """Raised by :meth:`~leaseq.Queue.wait` and :meth:`~leaseq.Queue.map` when the jobs
    did not finish within ``timeout`` seconds. The jobs themselves are not affected."""


class SettingsConflict(LeaseqError):
    """Raised when a :class:`~leaseq.Queue` is opened with scheduling controls
    (``ordering``, ``max_in_flight``, ``key_concurrency``, ``rate_limit``, ``key_rate``)
    that differ from those stored with the queue: processes that disagree about them
    would not enforce one limit. Change them on purpose with
    :meth:`~leaseq.Queue.configure` (or ``leaseq queue limits``)."""

    def __init__(self, queue: str, setting: str, stored: str, given: str) -> None:
        super().__init__(
            f"queue {queue!r} has {setting}={stored} stored, this process opened it with "
            f"{setting}={given}; make them agree, or change the stored value with "
            "Queue.configure() or `leaseq queue limits`")
        self.queue = queue
        self.setting = setting
        self.stored = stored
        self.given = given


class JobCancelled(LeaseqError):
    """Raised by :meth:`~leaseq.Queue.wait` and :meth:`~leaseq.Queue.map` when the job was
    cancelled (:meth:`~leaseq.Queue.cancel`); ``reason`` is the one given."""

    def __init__(self, queue: str, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id!r} in queue {queue!r} was cancelled: {reason}")
        self.queue = queue
        self.job_id = job_id
        self.reason = reason

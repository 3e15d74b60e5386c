"""leaseq: an at-least-once asyncio work queue on Redis with fenced lease timeouts."""

from __future__ import annotations

from ._codec import JsonSerializer, Serializer
from ._version import VERSION
from .exceptions import (
    InvalidInput,
    JobDead,
    JobNotFound,
    LeaseLost,
    LeaseqError,
    SerializationError,
    WaitTimeout,
)
from .models import JobInfo, JobState, Lease, QueueStats, WorkerInfo
from .policy import Policy, Priority, Weighted
from .queue import Queue
from .reaper import Reaper, SweepReport
from .router import Router
from .task import Backoff, Handler, JobContext, Task
from .worker import Worker

__version__ = VERSION

__all__ = (
    "Backoff",
    "Handler",
    "InvalidInput",
    "JobContext",
    "JobDead",
    "JobInfo",
    "JobNotFound",
    "JobState",
    "JsonSerializer",
    "Lease",
    "LeaseLost",
    "LeaseqError",
    "Policy",
    "Priority",
    "Queue",
    "QueueStats",
    "Reaper",
    "Router",
    "SerializationError",
    "Serializer",
    "SweepReport",
    "Task",
    "WaitTimeout",
    "Weighted",
    "Worker",
    "WorkerInfo",
    "__version__",
)

"""Fault-testing kit for leaseq users: prove "nothing lost" with your own handlers.

- :class:`RedisServer`: a private redis-server on a free port; kill, restart, freeze it.
- :class:`WorkerProcess` / :class:`ReaperProcess` / :class:`SchedulerProcess`: real
  ``leaseq`` processes for your handlers and schedules, to SIGKILL, SIGSTOP/SIGCONT or
  SIGTERM; named crash points; ``faketime``.
- :class:`WebProcess`: ``leaseq web`` on a free port, to check what the dashboard's API
  reports during a test.
- :func:`job_context`: the context a worker gives a handler, to call one inline in a
  unit test.
- :func:`check_invariants`: after a run, counts lost, duplicated (and unexplained
  duplicates), unexpected and stale-ack jobs from Redis and the execution log.
- The pytest plugin (loaded automatically) provides the ``leaseq_redis_server`` and
  ``leaseq_worker_processes`` fixtures.

See ``docs/testing.md``.
"""

from __future__ import annotations

from ._checker import ChaosReport, check_invariants, wait_drained
from ._inline import job_context
from ._procs import ReaperProcess, SchedulerProcess, WebProcess, WorkerProcess
from ._server import RedisServer, RedisServerError, free_port

__all__ = [
    "ChaosReport",
    "ReaperProcess",
    "RedisServer",
    "RedisServerError",
    "SchedulerProcess",
    "WebProcess",
    "WorkerProcess",
    "check_invariants",
    "free_port",
    "job_context",
    "wait_drained",
]

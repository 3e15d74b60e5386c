"""Running a handler inline in a unit test, with the context a worker would give it."""

from __future__ import annotations

import time
from typing import Any

from ..models import Lease
from ..protocol.queue import Queue
from ..runtime.task import JobContext


def job_context(
    queue: Queue, *, task: str = "test", payload: Any = None, job_id: str = "test-job",
    attempt: int = 1, max_attempts: int | None = None, state: Any = None,
) -> JobContext:
    """A :class:`~leaseq.JobContext` for calling a handler (or a typed task) directly in a
    test: ``await resize(job_context(queue, state=pools), 7, width=128)``. Its lease is
    made up (token ``test``, the queue's lease length from now): the handler sees the
    same attributes as under a worker, but nothing is claimed or settled in Redis."""
    now = time.time()
    lease = Lease(queue=queue.name, job_id=job_id, token="0-test", task=task,  # noqa: S106 - a fencing token, not a secret
                  payload=payload, attempt=attempt,
                  max_attempts=max_attempts or queue.max_attempts,
                  lease_timeout=queue.lease_timeout, deadline=now + queue.lease_timeout,
                  fence=0, local_deadline=time.monotonic() + queue.lease_timeout)
    fields = {"queue": queue.name, "job_id": job_id, "attempt": attempt,
              "token": lease.token, "task": task}
    return JobContext(queue, lambda: lease, fields, state)

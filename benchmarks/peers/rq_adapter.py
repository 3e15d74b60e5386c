"""RQ: ``python rq_adapter.py URL N`` (run in the peers' virtualenv; synchronous)."""

from __future__ import annotations

import sys

from redis import Redis
from rq import Queue, SimpleWorker

from _rq_tasks import clock, noop

if __name__ == "__main__":
    connection = Redis.from_url(sys.argv[1])
    queue = Queue("bench", connection=connection)
    for _ in range(clock.n):
        queue.enqueue(noop)
    SimpleWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
    clock.report("rq")

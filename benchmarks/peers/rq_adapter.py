"""RQ: ``python rq_adapter.py MODE URL N`` (the peers' virtualenv; see ``_clock.py`` for
the modes). Synchronous: a ``SimpleWorker`` runs one job at a time (RQ has no concurrency
inside one process); a drain runs it in burst mode."""

from __future__ import annotations

from redis import Redis
from rq import Queue, SimpleWorker

from _clock import produce_sync, ready
from _rq_tasks import args, clock, noop

if __name__ == "__main__":
    connection = Redis.from_url(args.url)
    queue = Queue("bench", connection=connection)
    if args.mode == "produce":
        produce_sync(lambda stamp: queue.enqueue(noop, stamp), args.n)
    else:
        worker = SimpleWorker([queue], connection=connection)
        if args.mode == "drain":
            for offset in range(0, args.n, 1000):
                queue.enqueue_many([Queue.prepare_data(noop, (0,))
                                    for _ in range(min(1000, args.n - offset))])
            ready()
            clock.go()
            worker.work(burst=True, logging_level="WARNING")
        else:
            worker.work(max_jobs=args.n + 1, logging_level="WARNING")
        clock.report("rq", concurrency=1)

"""Health checks of the server and of queues, with safe repairs.

Server checks give advice (eviction policy, persistence, version). Queue checks say
whether the queue is known, walk its keys with ``SCAN``/``SSCAN`` in pages (so they cost
O(keys of the queue), are meant for operators, not hot paths, and never load a whole set
at once), find leases that expired without a reaper handling them and tell when a reaper
last swept the queue (``meta.reaper_seen``, by Redis's clock). Each check yields **one**
:class:`Finding` however many items it found: a count, at most :data:`EXAMPLES` example
ids, and how many were repaired, so a report stays small on a queue of millions. Every
repair is a script that re-checks the problem atomically before it changes anything, so
running doctor against a live queue is safe. Counts may include an id twice when ``SSCAN``
returned it twice (a set resized during the walk).

The report model is in :mod:`.doctor_report`, the server checks in :mod:`.doctor_server`,
the queue checks in :mod:`.doctor_queue` over the walk of :mod:`.doctor_walk`; this module
runs them all and is where their public names are imported from.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..exceptions import InvalidInput
from .admin import registered_queues
from .doctor_queue import REAPER_STALE_AFTER, check_queue
from .doctor_report import EXAMPLES, Finding, Report, Severity, Status
from .doctor_server import check_server
from .keys import QUEUES_KEY
from .queue import Queue
from .wire import AnyRedis

__all__ = ["EXAMPLES", "REAPER_STALE_AFTER", "Finding", "Report", "Severity", "Status",
           "check_queue", "check_server", "diagnose"]

MAX_QUEUES = 10_000
"""Registered queues :func:`diagnose` checks when none are named."""


async def diagnose(redis: AnyRedis, queues: Iterable[str] = (), *, repair: bool = False,
                   reaper_stale_after: float = REAPER_STALE_AFTER) -> Report:
    """Check the server and each of ``queues`` (default: the registered queues, at most
    :data:`MAX_QUEUES`); with ``repair``, fix what can be fixed safely."""
    names = list(queues)
    report = Report()
    if not names:
        names = await registered_queues(redis, MAX_QUEUES + 1)
        if len(names) > MAX_QUEUES:
            names = names[:MAX_QUEUES]
            report.add("warning", "queues", f"more than {MAX_QUEUES} registered queues: "
                       f"checked the first {MAX_QUEUES} by name; name others with -q")
        elif not names:
            report.add("info", "queues", f"no queue is registered ({QUEUES_KEY} is empty)")
    qs = []
    for name in names:
        try:
            qs.append(Queue(redis, name))
        except InvalidInput as exc:
            report.add("error", "known", f"{QUEUES_KEY} holds a bad queue name: {exc}",
                       queue=name)
    await check_server(qs[0] if qs else Queue(redis, "doctor"), report)
    for q in qs:
        await check_queue(q, report, repair=repair, reaper_stale_after=reaper_stale_after)
    return report

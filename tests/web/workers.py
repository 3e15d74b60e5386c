"""Worker factories for the dashboard's tests (``leaseq worker tests.web.workers:NAME``)."""

from __future__ import annotations

from leaseq import Queue, Worker

from ..chaos.handlers import HANDLERS

PRESENCE_INTERVAL = 0.2
"""Seconds between a test worker's heartbeats: its entry in the list of live workers
expires five intervals (1 s) after its last one, so a killed worker leaves the
dashboard's workers panel within a second."""


def quick_presence(queue: Queue) -> Worker:
    """The chaos handlers on ``queue``, one job at a time, no reaper (the test sweeps),
    heartbeats every :data:`PRESENCE_INTERVAL` seconds."""
    return Worker(queue, HANDLERS, concurrency=1, reaper=False,
                  presence_interval=PRESENCE_INTERVAL)

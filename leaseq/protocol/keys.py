"""The only place where Redis key names are built.

Every key of a queue starts with ``leaseq:{NAME}:`` so that all of them carry the same
hash tag and land in one Redis Cluster slot: that is what lets every script and
transaction of a queue run on a cluster.
"""

from __future__ import annotations

import os
import re

from ..exceptions import InvalidInput

QUEUES_KEY = "leaseq:queues"
"""A set of the names of every queue that was used (a registry for tools, not a queue key)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a usable queue name, else raise :class:`InvalidInput`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"bad queue name {name!r}: use 1-128 characters from A-Z a-z 0-9 _ . : -, "
            "starting with a letter or digit"
        )
    return name


class QueueKeys:
    """Key names of one queue. Attributes are the fixed keys; methods build per-job keys."""

    __slots__ = (
        "active",
        "after",
        "blocked",
        "cancelled",
        "cancels",
        "control",
        "dead",
        "deadlines",
        "delayed",
        "dependents",
        "done",
        "done_at",
        "events",
        "fence",
        "finished",
        "held",
        "holds",
        "in_progress",
        "meta",
        "parked",
        "placed",
        "prefix",
        "progress",
        "rates",
        "schedules",
        "settings",
        "stream",
        "todos",
        "uses_after",
        "waiting",
        "wake",
        "workers",
    )

    def __init__(self, name: str) -> None:
        self.prefix = f"leaseq:{{{name}}}:"
        self.todos = self.prefix + "todos"
        self.in_progress = self.prefix + "in_progress"
        self.done = self.prefix + "done"
        self.dead = self.prefix + "dead"
        self.delayed = self.prefix + "delayed"
        self.done_at = self.prefix + "done_at"
        self.fence = self.prefix + "fence"
        self.wake = self.prefix + "wake"
        self.meta = self.prefix + "meta"
        self.events = self.prefix + "events"
        self.settings = self.prefix + "settings"
        self.workers = self.prefix + "workers"
        self.schedules = self.prefix + "schedules"
        # The scheduling controls (docs/protocol.md, "Scheduling controls").
        self.waiting = self.prefix + "waiting"
        self.active = self.prefix + "active"
        self.parked = self.prefix + "parked"
        self.placed = self.prefix + "placed"
        self.holds = self.prefix + "holds"
        self.held = self.prefix + "held"
        self.rates = self.prefix + "rates"
        self.deadlines = self.prefix + "deadlines"
        # Job control (docs/protocol.md, "Cancel").
        self.cancelled = self.prefix + "cancelled"
        self.cancels = self.prefix + "cancels"
        self.finished = self.prefix + "finished"
        self.stream = self.prefix + "stream"
        """The lifecycle events of the queue's jobs (a Redis Stream, kept at the queue's
        ``events`` length; written only when that is set)."""
        self.progress = self.prefix + "progress"
        """The channel each stored progress of a running job is published on
        (``<id> <json>``)."""
        """The channel the ids of jobs that ended (done, dead, cancelled, or deleted) are
        published on, in the step that ends them, for :meth:`~leaseq.Queue.wait`."""
        """The channel a cancel of a running job is published on ("<id> <token>"); a
        shard channel on a cluster, so it lives with the queue's slot."""
        # Dependencies (docs/protocol.md, "Dependencies").
        self.blocked = self.prefix + "blocked"
        """The ids of jobs waiting for the jobs they were enqueued ``after=``."""
        self.after = self.prefix + "after"
        """Hash: blocked id -> how many of its dependencies are left and its policy."""
        self.dependents = self.prefix + "dependents"
        """Sorted set, all scores 0: ``<dependency>\x1f<dependent>`` per pair left."""
        self.uses_after = self.prefix + "uses_after"
        """Set to 1 once a job of the queue waited for another: the ack reads it."""
        # The block of keys the controls prelude (lua/_ctl.lua) reads, in its order.
        self.control = (self.settings, self.waiting, self.active, self.parked,
                        self.placed, self.holds, self.held, self.rates, self.deadlines,
                        self.meta, self.wake, self.prefix + "cancelled",
                        self.prefix + "stream", self.blocked, self.after,
                        self.dependents, self.uses_after, self.todos)

    def job(self, job_id: str) -> str:
        """The hash holding a job's task, payload, counters, result and error."""
        return f"{self.prefix}job:{job_id}"

    def claim(self, nonce: str) -> str:
        """The record of one claim call (its ids and fence base), so a re-sent call whose
        reply was lost answers with the same leases; expires with the longest of them."""
        return f"{self.prefix}claim:{nonce}"

    def worker(self, worker_id: str) -> str:
        """A live worker's description (JSON), expiring unless the worker renews it."""
        return f"{self.prefix}worker:{worker_id}"

    def taskstats(self, minute: int) -> str:
        """Per-task counters of one minute (Unix minute by Redis's clock), kept two hours."""
        return f"{self.prefix}taskstats:{minute}"

    def reply(self) -> str:
        """A fresh reply record's key for one call of an admin or reaper script (a random
        nonce each time): a re-sent call finds its first answer there."""
        return f"{self.prefix}reply:{os.urandom(6).hex()}"

    def schedule(self, name: str) -> str:
        """The state of one periodic schedule: its last tick and job, and what it skipped."""
        return f"{self.prefix}schedule:{name}"

    def lease(self, job_id: str) -> str:
        """The lease key: exists (with an expiry) exactly while a claimer holds the job."""
        return f"{self.prefix}lease:{job_id}"

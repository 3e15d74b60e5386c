"""Doctor's checks of one queue: whether the server knows it, its integrity (from a walk
over its keys, :mod:`.doctor_walk`), the leases that expired without a reaper handling
them, and when a reaper last swept it (``meta.reaper_seen``, by Redis's clock). Each check
adds **one** finding to the report however many items it found."""

from __future__ import annotations

from .admin import REAPER_STALE_S, server_ms
from .doctor_controls import check_controls
from .doctor_report import INTEGRITY, Report
from .doctor_walk import Tally, walk_queue
from .keys import QUEUES_KEY
from .queue import Queue
from .wire import opt_int

__all__ = ["REAPER_STALE_AFTER", "check_queue"]

REAPER_STALE_AFTER = REAPER_STALE_S
"""Seconds (Redis's clock) after the last sweep from which a queue's reaper is stale."""


async def check_queue(queue: Queue, report: Report, *, repair: bool = False,
                      reaper_stale_after: float = REAPER_STALE_AFTER) -> None:
    """One queue: known on the server at all (in the registry or with keys); integrity
    (ids in one set each, each with a job hash; every lease key held for an id of
    ``in_progress`` and with an expiry; no job hash outside the sets); ids of
    ``in_progress`` whose lease expired (a problem when no reaper swept the queue in
    ``reaper_stale_after`` seconds); and the reaper's last sweep."""
    # Presence is read before the walk: its repairs may delete the keys it counts.
    registered, present = await _presence(queue)
    walk = await walk_queue(queue, repair)
    if not _report_known(queue.name, report, registered, present + walk.keys_seen):
        return
    _report_integrity(queue.name, report, walk.tallies)
    await check_controls(queue, report, repair=repair)
    await _report_reaper(queue, report, walk.expired, reaper_stale_after)


async def _presence(queue: Queue) -> tuple[bool, int]:
    """Whether the queue is in the registry, and how many of its fixed keys exist."""
    k = queue.keys
    registered = bool(await queue.redis.sismember(QUEUES_KEY, queue.name))
    present = int(await queue.redis.exists(
        k.todos, k.in_progress, k.done, k.dead, k.delayed, k.done_at, k.meta, k.fence,
        k.events, k.wake))
    return registered, present


def _report_known(name: str, report: Report, registered: bool, present: int) -> bool:
    """Report whether the server knows the queue; return whether it does, by its registry
    entry or by ``present`` keys."""
    if registered:
        report.add("ok", "known", f"queue {name!r} is registered", queue=name)
    elif present:
        report.add("warning", "known", f"queue {name!r} has keys but is not in {QUEUES_KEY}: "
                   "stats, web and doctor without -q do not list it", queue=name)
    else:
        report.add("error", "known", f"queue {name!r} is not known on this server (not in "
                   f"{QUEUES_KEY} and no keys): check the name and --redis", queue=name)
        return False
    return True


def _report_integrity(name: str, report: Report, tallies: dict[str, Tally]) -> None:
    """One finding per integrity check, and an ``integrity`` line when all are clean."""
    for check, (clean, what) in INTEGRITY.items():
        t = tallies[check]
        if t.count:
            report.add("error", check, f"queue {name!r}: {t.described(what)}", queue=name,
                       count=t.count, repaired_count=t.repaired, examples=t.examples)
        else:
            report.add("ok", check, f"queue {name!r}: {clean}", queue=name)
    if not any(t.count for t in tallies.values()):
        report.add("ok", "integrity", f"queue {name!r}: every id in one set with its job "
                   "hash, every lease held and expiring", queue=name)


async def _report_reaper(queue: Queue, report: Report, expired: Tally,
                         stale_after: float) -> None:
    """The reaper's last sweep (by Redis's clock, read after the walk) and the expired
    leases waiting for it."""
    seen = opt_int(await queue.redis.hget(queue.keys.meta, "reaper_seen"))
    now = await server_ms(queue.redis)
    age = None if seen is None else max(0.0, (now - seen) / 1000)
    claim_age = None if expired.oldest is None else max(0.0, (now - expired.oldest) / 1000)
    _report_expired(queue.name, report, expired, age, claim_age, stale_after)
    _report_sweep(queue.name, report, age, stale_after)


def _report_expired(name: str, report: Report, expired: Tally, age: float | None,
                    claim_age: float | None, stale_after: float) -> None:
    """The ids of in_progress whose lease expired: an error when no reaper swept the
    queue for ``stale_after`` seconds (the last sweep ``age`` seconds ago)."""
    stale = age is None or age > stale_after
    since = "ever" if age is None else f"for {age:.0f} s"
    oldest = "" if claim_age is None else f"; oldest claim {claim_age:.0f} s ago"
    what = "id(s) of in_progress whose lease expired"
    details = {"oldest_claim_age_s": claim_age, "last_sweep_age_s": age}
    if not expired.count:
        report.add("ok", "expired_leases", f"queue {name!r}: every id of in_progress holds "
                   "its lease", queue=name, details=details)
    elif stale:
        report.add("error", "expired_leases",
                   f"queue {name!r}: {expired.described(what)}{oldest}; no reaper swept the "
                   f"queue {since}: they wait until one runs (leaseq reaper -q {name})",
                   queue=name, count=expired.count, examples=expired.examples,
                   details=details)
    else:
        report.add("warning", "expired_leases",
                   f"queue {name!r}: {expired.described(what)}{oldest}; a reaper swept "
                   f"{age:.0f} s ago and requeues them at its next sweep", queue=name,
                   count=expired.count, examples=expired.examples, details=details)


def _report_sweep(name: str, report: Report, age: float | None, stale_after: float) -> None:
    """When a reaper last swept the queue (``age`` seconds ago, ``None`` for never)."""
    if age is None:
        report.add("warning", "reaper", f"queue {name!r}: no reaper ever swept it "
                   "(meta.reaper_seen absent): expired leases are not retried",
                   queue=name, details={"last_sweep_age_s": None})
    elif age > stale_after:
        report.add("warning", "reaper", f"queue {name!r}: no reaper sweep for {age:.0f} s "
                   f"(stale after {stale_after:g} s)", queue=name,
                   details={"last_sweep_age_s": age})
    else:
        report.add("ok", "reaper", f"queue {name!r}: last reaper sweep {age:.1f} s ago",
                   queue=name, details={"last_sweep_age_s": age})

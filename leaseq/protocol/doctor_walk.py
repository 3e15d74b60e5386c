"""Doctor's walk over one queue's keys: its sets, lease keys and job hashes, read in
``SCAN``/``SSCAN``/``ZSCAN`` pages and pipelined per page, so the walk costs O(keys of the
queue) and never loads a whole set at once.

What the walk finds is tallied per integrity check (:data:`~.doctor_report.INTEGRITY`), with
the ids of ``in_progress`` whose lease expired tallied apart. With ``repair``, each item is
handed to a script that re-checks the problem atomically before it changes anything, so a
walk of a live queue is safe. Counts may include an id twice when ``SSCAN`` returned it
twice (a set resized during the walk).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from . import scripts
from .doctor_report import EXAMPLES, INTEGRITY
from .queue import Queue
from .wire import opt_int, text

__all__ = ["Tally", "Walk", "walk_queue"]

_BATCH = 500
_SETS = ("todos", "in_progress", "done", "dead", "delayed", "cancelled", "blocked")


class Tally:
    """What one check found: a count, the first :data:`EXAMPLES` ids, the repairs."""

    __slots__ = ("count", "examples", "oldest", "repaired")

    def __init__(self) -> None:
        self.count = 0
        self.repaired = 0
        self.examples: list[str] = []
        self.oldest: int | None = None
        """The earliest ``claimed_at`` (Redis ms) among the ids found, where recorded."""

    def found(self, job_id: str, repaired: bool = False) -> None:
        """Count ``job_id``, and whether it was repaired."""
        self.count += 1
        self.repaired += repaired
        if len(self.examples) < EXAMPLES:
            self.examples.append(job_id)

    def described(self, what: str) -> str:
        """The count and the examples, for a message about ``what`` was found."""
        shown = ", ".join(repr(_short(i)) for i in self.examples)
        more = self.count - len(self.examples)
        return f"{self.count} {what}: {shown}" + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class Walk:
    """What a walk over one queue found."""

    tallies: dict[str, Tally]
    """One per integrity check, by check name."""
    expired: Tally
    """Ids of ``in_progress`` whose lease key is gone, with the oldest of their claims."""
    keys_seen: int
    """Lease keys and job hashes the walk came across."""


async def walk_queue(queue: Queue, repair: bool) -> Walk:
    """Walk every set, then every lease key, then every job hash of ``queue``; with
    ``repair``, fix what can be fixed safely on the way."""
    tallies = {check: Tally() for check in INTEGRITY}
    expired = Tally()
    await _walk_sets(queue, tallies, expired, repair)
    seen = await _walk_leases(queue, tallies, repair)
    seen += await _walk_jobs(queue, tallies, repair)
    return Walk(tallies, expired, seen)


@dataclass(frozen=True, slots=True)
class _Page:
    """One page of ids of one set, with what a pipeline read about each of them."""

    ids: list[str]
    member: dict[str, list[bool]]
    """Per other set: whether it holds each id too."""
    exists: list[Any]
    """Whether each id has its job hash."""
    lease_exists: list[Any]
    """For ``in_progress`` only (else empty): whether each id's lease key exists."""
    still_held: list[Any]
    """For ``in_progress`` only (else empty): whether each id is still in it after its
    lease key was read."""


async def _walk_sets(queue: Queue, tallies: dict[str, Tally], expired: Tally,
                     repair: bool) -> None:
    """Walk every set by SSCAN/ZSCAN pages: ids in another set too, ids without their job
    hash, and (in ``in_progress``) ids whose lease key is gone."""
    k = queue.keys
    keys = {"todos": k.todos, "in_progress": k.in_progress, "done": k.done, "dead": k.dead,
            "delayed": k.delayed, "cancelled": k.cancelled, "blocked": k.blocked}
    for position, name in enumerate(_SETS):
        async for ids in _scan_members(queue, keys[name], zset=name == "delayed"):
            page = await _read_page(queue, keys, name, ids)
            lapsed = await _tally_page(queue, page, position, tallies, expired, repair)
            if lapsed:
                await _note_oldest_claim(queue, lapsed, expired)


async def _read_page(queue: Queue, keys: dict[str, str], name: str, ids: list[str]) -> _Page:
    """Read, in one pipeline, what :func:`_tally_page` needs about ``ids`` of set
    ``name``."""
    k = queue.keys
    n = len(ids)
    others = [o for o in _SETS if o != name]
    async with queue.redis.pipeline(transaction=False) as pipe:
        for other in others:
            if other == "delayed":
                pipe.zmscore(k.delayed, ids)
            else:
                pipe.smismember(keys[other], ids)
        for job_id in ids:
            pipe.exists(k.job(job_id))
        if name == "in_progress":
            for job_id in ids:
                pipe.exists(k.lease(job_id))
            pipe.smismember(k.in_progress, ids)  # after the lease: not acked since
        replies = await pipe.execute()
    # SMISMEMBER answers 0/1 per id; ZMSCORE a score or None (0.0 is a score).
    member = {o: [(x is not None) if o == "delayed" else bool(x) for x in reply]
              for o, reply in zip(others, replies, strict=False)}
    return _Page(ids, member, replies[len(others):len(others) + n],
                 replies[len(others) + n:len(others) + 2 * n],
                 replies[-1] if name == "in_progress" else [])


async def _tally_page(queue: Queue, page: _Page, position: int, tallies: dict[str, Tally],
                      expired: Tally, repair: bool) -> list[str]:
    """Tally the ids of one page of the set at ``position`` in :data:`_SETS`; return
    those whose lease lapsed."""
    lapsed = []
    for i, job_id in enumerate(page.ids):
        earlier = any(page.member[o][i] for o in _SETS[:position])
        later = any(page.member[o][i] for o in _SETS[position + 1:])
        if later and not earlier:  # counted once, in the first set holding it
            tallies["multiple_sets"].found(job_id)
        fixed = False
        if not page.exists[i]:
            fixed = repair and await _repair(queue, "missing_hash", job_id)
            tallies["missing_hash"].found(job_id, fixed)
        if (page.lease_exists and not page.lease_exists[i] and page.still_held[i]
                and not fixed):
            expired.found(job_id)
            lapsed.append(job_id)
    return lapsed


async def _note_oldest_claim(queue: Queue, lapsed: list[str], expired: Tally) -> None:
    """Keep in ``expired`` the earliest ``claimed_at`` of the ``lapsed`` ids so far."""
    async with queue.redis.pipeline(transaction=False) as pipe:
        for job_id in lapsed:
            pipe.hget(queue.keys.job(job_id), "claimed_at")
        claimed = [c for c in map(opt_int, await pipe.execute()) if c is not None]
    if expired.oldest is not None:
        claimed.append(expired.oldest)
    expired.oldest = min(claimed, default=None)


async def _walk_leases(queue: Queue, tallies: dict[str, Tally], repair: bool) -> int:
    """Lease keys held by no id of in_progress, or without an expiry; returns how many
    lease keys the walk saw."""
    seen = 0
    k = queue.keys
    r = queue.redis
    lease_prefix = k.prefix + "lease:"
    async for keys in _scan_keys(queue, lease_prefix + "*"):
        seen += len(keys)
        ids = [key[len(lease_prefix):] for key in keys]
        async with r.pipeline(transaction=False) as pipe:
            pipe.smismember(k.in_progress, ids)
            for key in keys:
                pipe.pttl(key)  # after the membership: -2 if acked meanwhile
            held, *ttls = await pipe.execute()
        for job_id, key, is_held, ttl in zip(ids, keys, held, ttls, strict=True):
            if int(ttl) == -2:
                continue  # gone since the scan saw it
            if not is_held:
                fixed = repair and await _repair(queue, "orphan_lease", job_id)
                tallies["orphan_lease"].found(job_id, fixed)
            elif int(ttl) == -1:
                fixed = repair and int(await r.pexpire(key, queue.lease_ms)) == 1
                tallies["lease_without_expiry"].found(job_id, fixed)
    return seen


async def _walk_jobs(queue: Queue, tallies: dict[str, Tally], repair: bool) -> int:
    """Job hashes whose id is in no set; returns how many job hashes the walk saw."""
    seen = 0
    k = queue.keys
    r = queue.redis
    job_prefix = k.prefix + "job:"
    async for keys in _scan_keys(queue, job_prefix + "*"):
        seen += len(keys)
        ids = [key[len(job_prefix):] for key in keys]
        async with r.pipeline(transaction=False) as pipe:
            for key in (k.todos, k.in_progress, k.done, k.dead, k.cancelled, k.blocked):
                pipe.smismember(key, ids)
            pipe.zmscore(k.delayed, ids)
            for key in keys:
                pipe.exists(key)  # after the membership: 0 if trimmed meanwhile
            replies = await pipe.execute()
        flags, scores, exists = replies[:6], replies[6], replies[7:]
        for i, job_id in enumerate(ids):
            if exists[i] and not any(f[i] for f in flags) and scores[i] is None:
                fixed = repair and await _repair(queue, "orphan_job", job_id)
                tallies["orphan_job"].found(job_id, fixed)
    return seen


async def _repair(queue: Queue, kind: str, job_id: str) -> bool:
    k = queue.keys
    changed = await scripts.REPAIR(
        queue.redis,
        [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.done_at, k.wake,
         k.job(job_id), k.lease(job_id), *k.control, k.reply()],
        [kind, job_id])
    return int(changed) == 1


def _short(job_id: str, width: int = 60) -> str:
    return job_id if len(job_id) <= width else job_id[:width - 1] + "…"


async def _scan_members(queue: Queue, key: str, *, zset: bool) -> AsyncIterator[list[str]]:
    cursor = 0
    while True:
        if zset:
            cursor, pairs = await queue.redis.zscan(key, cursor, count=_BATCH)
            ids = [text(member) for member, _ in pairs]
        else:
            cursor, raw = await queue.redis.sscan(key, cursor, count=_BATCH)
            ids = [text(member) for member in raw]
        if ids:
            yield ids
        if int(cursor) == 0:
            return


async def _scan_keys(queue: Queue, pattern: str) -> AsyncIterator[list[str]]:
    """Keys matching ``pattern``, in pages of up to ``_BATCH``."""
    # Queue names allow no glob metacharacters (* ? [ ] \), so the prefix matches literally.
    page: list[str] = []
    async for key in queue.redis.scan_iter(match=pattern, count=_BATCH):
        page.append(text(key))
        if len(page) >= _BATCH:
            yield page
            page = []
    if page:
        yield page

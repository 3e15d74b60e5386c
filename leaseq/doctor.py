"""Health checks of the server and of a queue's integrity, with safe repairs.

Server checks give advice (eviction policy, persistence, version). Integrity checks walk
the queue's keys with ``SCAN``/``SSCAN`` in batches, so they cost O(keys of the queue)
and are meant for operators, not hot paths. Every repair is a script that re-checks the
problem atomically before it changes anything, so running doctor against a live queue is
safe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from . import _scripts
from ._types import is_cluster, text
from .queue import Queue

__all__ = ["Finding", "Report", "check_queue", "check_server"]

Severity = Literal["ok", "info", "warning", "error"]
_BATCH = 500
_MIN_VERSION = (6, 2)


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of a check."""

    severity: Severity
    """``ok``/``info`` need nothing; ``warning`` deserves attention; ``error`` is broken."""
    check: str
    """Which check produced it (``maxmemory-policy``, ``orphan_lease``, ...)."""
    message: str
    """What was found, for a person."""
    repaired: bool = False
    """Whether ``repair=True`` fixed it."""


@dataclass(slots=True)
class Report:
    """All findings of a doctor run."""

    findings: list[Finding] = field(default_factory=list)
    """In the order the checks ran."""

    @property
    def problems(self) -> list[Finding]:
        """Errors that were not repaired."""
        return [f for f in self.findings if f.severity == "error" and not f.repaired]

    def add(self, severity: Severity, check: str, message: str, repaired: bool = False) -> None:
        """Record a finding."""
        self.findings.append(Finding(severity, check, message, repaired))


async def check_server(queue: Queue, report: Report) -> None:
    """Version, eviction policy and persistence of the server behind ``queue`` (on a
    cluster: of every master, each finding naming its node)."""
    r = queue.redis
    if not is_cluster(r):
        await _check_node(report, "", lambda: r.info("server"), lambda: r.config_get("*"))
        return
    cluster: Any = r
    await cluster.initialize()
    for node in cluster.get_primaries():
        await _check_node(report, f" [{node.name}]",
                          partial(cluster.info, "server", target_nodes=node),
                          partial(cluster.config_get, "*", target_nodes=node))


async def _check_node(report: Report, where: str, info_of: Callable[[], Awaitable[Any]],
                      config_of: Callable[[], Awaitable[Any]]) -> None:
    info = await info_of()
    version = text(info.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < _MIN_VERSION:
        report.add("error", "version", f"Redis {version}{where}: leaseq needs 6.2 or newer")
    else:
        report.add("ok", "version", f"Redis {version}{where}")
    try:
        conf = {text(k): text(v) for k, v in (await config_of()).items()}
    except Exception as exc:  # CONFIG is often disabled on managed services
        report.add("info", "config",
                   f"CONFIG GET not allowed{where} ({exc}); skipped config checks")
        return
    policy = conf.get("maxmemory-policy", "?")
    if policy == "noeviction":
        report.add("ok", "maxmemory-policy", f"noeviction{where}")
    else:
        report.add("warning", "maxmemory-policy",
                   f"{policy}{where}: under memory pressure Redis may evict lease keys and "
                   "job hashes; set maxmemory-policy noeviction")
    aof = conf.get("appendonly") == "yes"
    fsync = conf.get("appendfsync", "?")
    save = conf.get("save", "")
    if aof and fsync == "always":
        report.add("ok", "persistence", f"AOF with appendfsync always{where}: acknowledged "
                   "writes survive a crash of the server")
    elif aof:
        report.add("info", "persistence", f"AOF with appendfsync {fsync}{where}: a crash of "
                   "the server can lose about the last second of enqueues and acks")
    elif save:
        report.add("warning", "persistence", f"RDB snapshots only (save {save!r}){where}: a "
                   "crash loses every change since the last snapshot")
    else:
        report.add("warning", "persistence", f"no persistence{where}: a restart of the "
                   "server loses every job")


async def check_queue(queue: Queue, report: Report, *, repair: bool = False) -> None:
    """Integrity of one queue: ids in one set each, each with a job hash; every lease key
    held for an id of ``in_progress`` and with an expiry; no job hash outside the sets."""
    k = queue.keys
    r = queue.redis
    sets = {"todos": k.todos, "in_progress": k.in_progress, "done": k.done, "dead": k.dead}
    counts = {"multi": 0, "missing_hash": 0, "orphan_lease": 0, "no_ttl": 0, "orphan_job": 0}
    for name, key in [*sets.items(), ("delayed", k.delayed)]:
        async for ids in _scan_members(queue, key, zset=name == "delayed"):
            async with r.pipeline(transaction=False) as pipe:
                for other_name, other in sets.items():
                    if other_name != name:
                        pipe.smismember(other, ids)
                if name != "delayed":
                    pipe.zmscore(k.delayed, ids)
                for job_id in ids:
                    pipe.exists(k.job(job_id))
                replies = await pipe.execute()
            # SMISMEMBER answers 0/1 per id; ZMSCORE a score or None (0.0 is a score).
            set_flags = replies[:4] if name == "delayed" else replies[:3]
            scores = None if name == "delayed" else replies[3]
            exists = replies[4:]
            for i, job_id in enumerate(ids):
                in_other = any(flags[i] for flags in set_flags) or (
                    scores is not None and scores[i] is not None)
                if in_other:
                    counts["multi"] += 1
                    report.add("error", "multiple_sets",
                               f"{job_id!r} is in {name} and another set (not repairable "
                               "automatically: decide which state is right)")
                if not exists[i]:
                    counts["missing_hash"] += 1
                    fixed = repair and await _repair(queue, "missing_hash", job_id)
                    report.add("error", "missing_hash",
                               f"{job_id!r} in {name} has no job hash", repaired=fixed)
    async for key in _scan_keys(queue, k.prefix + "lease:*"):
        job_id = key[len(k.prefix + "lease:"):]
        async with r.pipeline(transaction=False) as pipe:
            pipe.sismember(k.in_progress, job_id)
            pipe.pttl(key)
            held, ttl = await pipe.execute()
        if not held:
            counts["orphan_lease"] += 1
            fixed = repair and await _repair(queue, "orphan_lease", job_id)
            report.add("error", "orphan_lease",
                       f"lease key of {job_id!r} but the id is not in in_progress",
                       repaired=fixed)
        elif int(ttl) == -1:
            counts["no_ttl"] += 1
            fixed = False
            if repair:
                fixed = int(await r.pexpire(key, queue.lease_ms)) == 1
            report.add("error", "lease_without_expiry",
                       f"lease key of {job_id!r} has no expiry", repaired=fixed)
    async for key in _scan_keys(queue, k.prefix + "job:*"):
        job_id = key[len(k.prefix + "job:"):]
        async with r.pipeline(transaction=False) as pipe:
            for other in sets.values():
                pipe.sismember(other, job_id)
            pipe.zscore(k.delayed, job_id)
            where = await pipe.execute()
        if not any(where[:4]) and where[4] is None:
            counts["orphan_job"] += 1
            fixed = repair and await _repair(queue, "orphan_job", job_id)
            report.add("error", "orphan_job",
                       f"job hash of {job_id!r} but the id is in no set", repaired=fixed)
    if not any(counts.values()):
        report.add("ok", "integrity", f"queue {queue.name!r}: every id in one set with its "
                   "job hash, every lease held and expiring")


async def _repair(queue: Queue, kind: str, job_id: str) -> bool:
    k = queue.keys
    changed = await _scripts.REPAIR(
        queue.redis,
        [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.done_at, k.wake,
         k.job(job_id), k.lease(job_id), k.reply()],
        [kind, job_id])
    return int(changed) == 1


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


async def _scan_keys(queue: Queue, pattern: str) -> AsyncIterator[str]:
    # Queue names allow no glob metacharacters (* ? [ ] \), so the prefix matches literally.
    async for key in queue.redis.scan_iter(match=pattern, count=_BATCH):
        yield text(key)

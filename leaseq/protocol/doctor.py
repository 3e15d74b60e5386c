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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from ..exceptions import InvalidInput
from . import scripts
from .admin import REAPER_STALE_S, registered_queues, server_ms
from .keys import QUEUES_KEY
from .queue import Queue
from .wire import AnyRedis, is_cluster, opt_int, text

__all__ = ["EXAMPLES", "REAPER_STALE_AFTER", "Finding", "Report", "check_queue",
           "check_server", "diagnose"]

Severity = Literal["ok", "info", "warning", "error"]
Status = Literal["ok", "warn", "problem"]
EXAMPLES = 10
"""Example ids a finding keeps, however many items its check found."""
REAPER_STALE_AFTER = REAPER_STALE_S
"""Seconds (Redis's clock) after the last sweep from which a queue's reaper is stale."""
MAX_QUEUES = 10_000
"""Registered queues :func:`diagnose` checks when none are named."""
_BATCH = 500
_MIN_VERSION = (6, 2)
_SETS = ("todos", "in_progress", "done", "dead", "delayed")
_INTEGRITY = {
    # check: (message when clean, what was found)
    "multiple_sets": ("every id in at most one set",
                      ("id(s) in more than one set (not repairable automatically: decide "
                       "which state is right)")),
    "missing_hash": ("every id with its job hash", "id(s) in a set without a job hash"),
    "orphan_lease": ("every lease key held by an id of in_progress",
                     "lease key(s) whose id is not in in_progress"),
    "lease_without_expiry": ("every lease key expiring", "lease key(s) without an expiry"),
    "orphan_job": ("every job hash with its id in a set", "job hash(es) whose id is in no set"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """The result of one check: of the server, or of one queue (then ``queue`` is set)."""

    severity: Severity
    """``ok``/``info`` need nothing; ``warning`` deserves attention; ``error`` is broken."""
    check: str
    """Which check produced it (``maxmemory-policy``, ``orphan_lease``, ``reaper``, ...)."""
    message: str
    """What was found, for a person (with the count and examples)."""
    queue: str | None = None
    """The queue checked; ``None`` for a check of the server."""
    count: int = 0
    """Items the check found (ids or keys); 0 when there is nothing to count."""
    repaired_count: int = 0
    """How many of them ``repair=True`` fixed."""
    examples: tuple[str, ...] = ()
    """At most :data:`EXAMPLES` of the ids found, in the order found."""
    details: Mapping[str, float | int | None] = field(default_factory=dict)
    """Measurements of the check (``oldest_claim_age_s``, ``last_sweep_age_s``)."""

    @property
    def repaired(self) -> bool:
        """Whether ``repair=True`` fixed every item the check found."""
        return self.count > 0 and self.repaired_count == self.count

    @property
    def status(self) -> Status:
        """``problem`` for an error not (wholly) repaired, ``warn`` for a warning, else
        ``ok``."""
        if self.severity == "error" and not self.repaired:
            return "problem"
        return "warn" if self.severity == "warning" else "ok"

    def as_dict(self) -> dict[str, Any]:
        """The finding as plain JSON values."""
        return {"check": self.check, "queue": self.queue, "status": self.status,
                "severity": self.severity, "count": self.count,
                "repaired": self.repaired_count, "examples": list(self.examples),
                "message": self.message, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """The finding :meth:`as_dict` described."""
        return cls(data["severity"], data["check"], data["message"], queue=data["queue"],
                   count=data["count"], repaired_count=data["repaired"],
                   examples=tuple(data["examples"]), details=dict(data["details"]))


@dataclass(slots=True)
class Report:
    """All findings of a doctor run: one per check, so its size does not grow with the
    queues' sizes."""

    findings: list[Finding] = field(default_factory=list)
    """In the order the checks ran."""

    @property
    def problems(self) -> list[Finding]:
        """Findings whose status is ``problem`` (errors not wholly repaired)."""
        return [f for f in self.findings if f.status == "problem"]

    @property
    def warnings(self) -> list[Finding]:
        """Findings whose status is ``warn``."""
        return [f for f in self.findings if f.status == "warn"]

    def add(self, severity: Severity, check: str, message: str, *, queue: str | None = None,
            count: int = 0, repaired_count: int = 0, examples: Iterable[str] = (),
            details: Mapping[str, float | int | None] | None = None) -> None:
        """Record a finding."""
        self.findings.append(Finding(severity, check, message, queue, count, repaired_count,
                                     tuple(examples)[:EXAMPLES], dict(details or {})))

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON document: ``ok`` (no problem), the numbers of problems
        and warnings, and every check's finding."""
        return {"ok": not self.problems, "problems": len(self.problems),
                "warnings": len(self.warnings),
                "checks": [f.as_dict() for f in self.findings]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """The report :meth:`as_dict` described."""
        return cls([Finding.from_dict(f) for f in data["checks"]])

    def lines(self) -> list[str]:
        """The report for a terminal, one line per check; a queue's integrity checks that
        found nothing are summed up by its ``integrity`` line."""
        marks = {"ok": "ok  ", "warn": "WARN", "problem": "FAIL"}
        out = []
        for f in self.findings:
            if f.check in _INTEGRITY and f.count == 0:
                continue
            mark = "info" if f.severity == "info" else marks[f.status]
            suffix = ""
            if f.repaired:
                suffix = " (repaired)"
            elif f.repaired_count:
                suffix = f" ({f.repaired_count} of {f.count} repaired)"
            out.append(f"{mark}  {f.check}: {f.message}{suffix}")
        return out


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


class _Tally:
    """What one check found: a count, the first :data:`EXAMPLES` ids, the repairs."""

    __slots__ = ("count", "examples", "oldest", "repaired")

    def __init__(self) -> None:
        self.count = 0
        self.repaired = 0
        self.examples: list[str] = []
        self.oldest: int | None = None
        """The earliest ``claimed_at`` (Redis ms) among the ids found, where recorded."""

    def found(self, job_id: str, repaired: bool = False) -> None:
        self.count += 1
        self.repaired += repaired
        if len(self.examples) < EXAMPLES:
            self.examples.append(job_id)

    def described(self, what: str) -> str:
        shown = ", ".join(repr(_short(i)) for i in self.examples)
        more = self.count - len(self.examples)
        return f"{self.count} {what}: {shown}" + (f" and {more} more" if more > 0 else "")


async def check_queue(queue: Queue, report: Report, *, repair: bool = False,
                      reaper_stale_after: float = REAPER_STALE_AFTER) -> None:
    """One queue: known on the server at all (in the registry or with keys); integrity
    (ids in one set each, each with a job hash; every lease key held for an id of
    ``in_progress`` and with an expiry; no job hash outside the sets); ids of
    ``in_progress`` whose lease expired (a problem when no reaper swept the queue in
    ``reaper_stale_after`` seconds); and the reaper's last sweep."""
    name = queue.name
    registered, present = await _presence(queue)
    tallies = {check: _Tally() for check in _INTEGRITY}
    expired = _Tally()
    await _check_sets(queue, tallies, expired, repair)
    present += await _check_leases(queue, tallies, repair)
    present += await _check_jobs(queue, tallies, repair)
    if registered:
        report.add("ok", "known", f"queue {name!r} is registered", queue=name)
    elif present:
        report.add("warning", "known", f"queue {name!r} has keys but is not in {QUEUES_KEY}: "
                   "stats, web and doctor without -q do not list it", queue=name)
    else:
        report.add("error", "known", f"queue {name!r} is not known on this server (not in "
                   f"{QUEUES_KEY} and no keys): check the name and --redis", queue=name)
        return
    for check, (clean, what) in _INTEGRITY.items():
        t = tallies[check]
        if t.count:
            report.add("error", check, f"queue {name!r}: {t.described(what)}", queue=name,
                       count=t.count, repaired_count=t.repaired, examples=t.examples)
        else:
            report.add("ok", check, f"queue {name!r}: {clean}", queue=name)
    if not any(t.count for t in tallies.values()):
        report.add("ok", "integrity", f"queue {name!r}: every id in one set with its job "
                   "hash, every lease held and expiring", queue=name)
    await _report_reaper(queue, report, expired, reaper_stale_after)


async def _presence(queue: Queue) -> tuple[bool, int]:
    """Whether the queue is in the registry, and how many of its fixed keys exist."""
    k = queue.keys
    registered = bool(await queue.redis.sismember(QUEUES_KEY, queue.name))
    present = int(await queue.redis.exists(
        k.todos, k.in_progress, k.done, k.dead, k.delayed, k.done_at, k.meta, k.fence,
        k.events, k.wake))
    return registered, present


async def _check_sets(queue: Queue, tallies: dict[str, _Tally], expired: _Tally,
                      repair: bool) -> None:
    """Walk every set by SSCAN/ZSCAN pages: ids in another set too, ids without their job
    hash, and (in ``in_progress``) ids whose lease key is gone."""
    k = queue.keys
    r = queue.redis
    keys = {"todos": k.todos, "in_progress": k.in_progress, "done": k.done, "dead": k.dead,
            "delayed": k.delayed}
    for position, name in enumerate(_SETS):
        others = [o for o in _SETS if o != name]
        async for ids in _scan_members(queue, keys[name], zset=name == "delayed"):
            n = len(ids)
            async with r.pipeline(transaction=False) as pipe:
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
            exists = replies[len(others):len(others) + n]
            lease_exists = replies[len(others) + n:len(others) + 2 * n]
            still_held = replies[-1] if name == "in_progress" else []
            lapsed = []
            for i, job_id in enumerate(ids):
                earlier = any(member[o][i] for o in _SETS[:position])
                later = any(member[o][i] for o in _SETS[position + 1:])
                if later and not earlier:  # counted once, in the first set holding it
                    tallies["multiple_sets"].found(job_id)
                fixed = False
                if not exists[i]:
                    fixed = repair and await _repair(queue, "missing_hash", job_id)
                    tallies["missing_hash"].found(job_id, fixed)
                if lease_exists and not lease_exists[i] and still_held[i] and not fixed:
                    expired.found(job_id)
                    lapsed.append(job_id)
            if lapsed:
                async with r.pipeline(transaction=False) as pipe:
                    for job_id in lapsed:
                        pipe.hget(k.job(job_id), "claimed_at")
                    claimed = [c for c in map(opt_int, await pipe.execute()) if c is not None]
                if expired.oldest is not None:
                    claimed.append(expired.oldest)
                expired.oldest = min(claimed, default=None)


async def _check_leases(queue: Queue, tallies: dict[str, _Tally], repair: bool) -> int:
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


async def _check_jobs(queue: Queue, tallies: dict[str, _Tally], repair: bool) -> int:
    """Job hashes whose id is in no set; returns how many job hashes the walk saw."""
    seen = 0
    k = queue.keys
    r = queue.redis
    job_prefix = k.prefix + "job:"
    async for keys in _scan_keys(queue, job_prefix + "*"):
        seen += len(keys)
        ids = [key[len(job_prefix):] for key in keys]
        async with r.pipeline(transaction=False) as pipe:
            for key in (k.todos, k.in_progress, k.done, k.dead):
                pipe.smismember(key, ids)
            pipe.zmscore(k.delayed, ids)
            for key in keys:
                pipe.exists(key)  # after the membership: 0 if trimmed meanwhile
            replies = await pipe.execute()
        flags, scores, exists = replies[:4], replies[4], replies[5:]
        for i, job_id in enumerate(ids):
            if exists[i] and not any(f[i] for f in flags) and scores[i] is None:
                fixed = repair and await _repair(queue, "orphan_job", job_id)
                tallies["orphan_job"].found(job_id, fixed)
    return seen


async def _report_reaper(queue: Queue, report: Report, expired: _Tally,
                         stale_after: float) -> None:
    """The reaper's last sweep (by Redis's clock, read after the walk) and the expired
    leases waiting for it."""
    name = queue.name
    seen = opt_int(await queue.redis.hget(queue.keys.meta, "reaper_seen"))
    now = await server_ms(queue.redis)
    age = None if seen is None else max(0.0, (now - seen) / 1000)
    stale = age is None or age > stale_after
    since = "ever" if age is None else f"for {age:.0f} s"
    claim_age = None if expired.oldest is None else max(0.0, (now - expired.oldest) / 1000)
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
    if age is None:
        report.add("warning", "reaper", f"queue {name!r}: no reaper ever swept it "
                   "(meta.reaper_seen absent): expired leases are not retried",
                   queue=name, details={"last_sweep_age_s": None})
    elif stale:
        report.add("warning", "reaper", f"queue {name!r}: no reaper sweep for {age:.0f} s "
                   f"(stale after {stale_after:g} s)", queue=name,
                   details={"last_sweep_age_s": age})
    else:
        report.add("ok", "reaper", f"queue {name!r}: last reaper sweep {age:.1f} s ago",
                   queue=name, details={"last_sweep_age_s": age})


async def _repair(queue: Queue, kind: str, job_id: str) -> bool:
    k = queue.keys
    changed = await scripts.REPAIR(
        queue.redis,
        [k.todos, k.in_progress, k.done, k.dead, k.delayed, k.done_at, k.wake,
         k.job(job_id), k.lease(job_id), k.reply()],
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

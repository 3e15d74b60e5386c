"""The invariant checker of chaos runs, after the Jepsen "total queue" checker.

After a run has drained, every enqueued job must be ``done`` (or ``dead`` where the
scenario makes it so). The checker reads the queue's sets, job hashes, lease keys and the
execution log written by recorded handlers, and counts:

- **lost**: enqueued (the enqueue returned) but neither done nor dead;
- **duplicated**: jobs whose handler started more than once;
- **unexplained duplicates**: extra runs not accounted for by a fault the queue recorded
  (an expired lease, a release at shutdown, a failure);
- **unexpected**: done ids that were never enqueued;
- **stale acks accepted**: done jobs whose ack came from a lease other than their last
  claim's (fencing broken);
- **misplaced**: ids in zero or several sets; **orphan leases**: lease keys whose id is
  not in ``in_progress``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import redis.asyncio as aioredis

from ..protocol.keys import QueueKeys
from ..protocol.wire import redis_failure, text
from ._record import log_key

__all__ = ["ChaosReport", "check_invariants", "wait_drained"]

_EVIDENCE = 5
"""Jobs described in :attr:`ChaosReport.evidence`."""


@dataclass(frozen=True, slots=True)
class ChaosReport:
    """Counts of one checked run (see the module docstring)."""

    enqueued: int
    """Ids the run enqueued."""
    done: int
    """Of those, done."""
    dead: int
    """Of those, dead."""
    lost: int
    """Of those, neither done, dead nor cancelled."""
    duplicated: int
    """Jobs whose handler started more than once."""
    unexplained_duplicates: int
    """Extra runs beyond 1 + lease expiries + releases + failures of the job."""
    unexpected: int
    """Done ids that were never enqueued."""
    stale_acks: int
    """Done jobs settled by a token other than their last claim's."""
    misplaced: int
    """Ids in zero or several of the sets."""
    orphan_leases: int
    """Lease keys whose id is not in ``in_progress``."""
    executions: int
    """Handler runs recorded (distinct start records; each names its lease token)."""
    cancelled: int = 0
    """Of those, cancelled (:meth:`~leaseq.Queue.cancel`)."""
    stray_controls: int = 0
    """Entries of the scheduling controls that disagree with the sets: fifo index
    entries of ids not in ``todos`` (or ``todos`` ids missing from it), and concurrency
    holds of ids not in ``in_progress`` (a leaked slot)."""
    evidence: tuple[str, ...] = ()
    """For a few of the jobs behind the problems: the job's id, what is wrong, its hash's
    counters and its lines of the execution log, so a failed run can be diagnosed."""

    def problems(self, *, allow_dead: bool = False) -> list[str]:
        """What is wrong, for an assertion message (empty when all invariants hold)."""
        out = [f"{name}={getattr(self, name)}"
               for name in ("lost", "unexplained_duplicates", "unexpected", "stale_acks",
                            "misplaced", "orphan_leases", "stray_controls")
               if getattr(self, name)]
        if self.dead and not allow_dead:
            out.append(f"dead={self.dead}")
        return out

    def as_dict(self) -> dict[str, Any]:
        """The counts as a dict (for reports)."""
        return asdict(self)


async def wait_drained(redis: aioredis.Redis, queue: str, timeout: float) -> None:
    """Wait until the queue holds nothing waiting, delayed, blocked or in progress. Redis errors
    (a server restarting, a failover) are waited out until ``timeout``."""
    k = QueueKeys(queue)
    with anyio.fail_after(timeout):
        while True:
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.scard(k.todos)
                    pipe.scard(k.in_progress)
                    pipe.zcard(k.delayed)
                    pipe.scard(k.blocked)
                    if sum(await pipe.execute()) == 0:
                        return
            except Exception as exc:
                if not redis_failure(exc):
                    raise
            await anyio.sleep(0.05)


async def check_invariants(
    redis: aioredis.Redis, queue: str, enqueued: Iterable[str]
) -> ChaosReport:
    """Check a drained queue against the ids whose enqueue returned."""
    k = QueueKeys(queue)
    ids = list(dict.fromkeys(enqueued))
    sets, log = await _read_sets_and_log(redis, k)
    _, in_progress, done, dead, _, cancelled, _ = sets
    starts = _count_starts(log)
    fields = await _read_counters(redis, k, ids)
    stale, unexplained, suspects = _judge(ids, fields, starts, done, dead | cancelled)
    evidence = await _evidence(redis, k, suspects, log)
    orphan = await _orphan_leases(redis, k, in_progress)
    stray = await _stray_controls(redis, k, sets[0], in_progress)
    enqueued_set = set(ids)
    return ChaosReport(
        enqueued=len(ids),
        done=len(done & enqueued_set),
        dead=len(dead & enqueued_set),
        lost=sum(1 for i in ids if i not in done and i not in dead and i not in cancelled),
        cancelled=len(cancelled & enqueued_set),
        duplicated=sum(1 for i in ids if starts[i] > 1),
        unexplained_duplicates=unexplained,
        unexpected=len(done - enqueued_set),
        stale_acks=stale,
        misplaced=_misplaced(sets, ids),
        orphan_leases=orphan,
        executions=sum(starts.values()),
        stray_controls=stray,
        evidence=tuple(evidence),
    )


async def _stray_controls(
    redis: aioredis.Redis, k: QueueKeys, todos: set[str], in_progress: set[str],
) -> int:
    """Fifo index entries that are not exactly ``todos`` (when the queue is fifo), and
    holds (``holds`` and ``held``) of ids not in ``in_progress``."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(k.settings, "ordering")
        pipe.zrange(k.waiting, 0, -1)
        pipe.zrange(k.holds, 0, -1)
        pipe.zrange(k.held, 0, -1)
        ordering, waiting, holds, held = await pipe.execute()
    stray = 0
    if ordering is not None and text(ordering) == "fifo":
        indexed = [text(m).split("\x1f")[-1] for m in waiting]
        stray += len(indexed) - len(set(indexed)) + len(set(indexed) ^ todos)
    stray += sum(1 for m in holds if text(m) not in in_progress)
    stray += sum(1 for m in held if text(m).split("\x1f")[-1] not in in_progress)
    return stray


async def _read_sets_and_log(
        redis: aioredis.Redis, k: QueueKeys) -> tuple[list[set[str]], list[Any]]:
    """The members of ``todos``, ``in_progress``, ``done``, ``dead``, ``delayed``,
    ``cancelled`` and ``blocked`` (in that order), and the raw lines of the execution
    log."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in (k.todos, k.in_progress, k.done, k.dead):
            pipe.smembers(key)
        pipe.zrange(k.delayed, 0, -1)
        pipe.smembers(k.cancelled)
        pipe.smembers(k.blocked)
        pipe.lrange(log_key(k.prefix), 0, -1)
        replies = await pipe.execute()
    return [{text(m) for m in members} for members in replies[:7]], replies[7]


def _count_starts(log: list[Any]) -> Counter[str]:
    """Handler runs per job id, from the start lines of the execution log."""
    starts: Counter[str] = Counter()
    # A run is one lease token, so a start line written twice (a client library may
    # send a write again after a redirect or a dropped reply) is still one run.
    for line in dict.fromkeys(text(line) for line in log):
        parts = line.split()
        if parts and parts[0] == "start":
            starts[parts[1]] += 1
    return starts


def _misplaced(sets: list[set[str]], ids: list[str]) -> int:
    """Ids in several sets, or (of ``ids``) in none."""
    everyone = set().union(*sets)
    misplaced = sum(1 for i in everyone if sum(i in s for s in sets) != 1)
    return misplaced + sum(1 for i in ids if i not in everyone)


async def _read_counters(redis: aioredis.Redis, k: QueueKeys, ids: list[str]) -> list[Any]:
    """For each of ``ids``: its hash's token, settled, settled_by, expiries, releases and
    failures."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(k.job(job_id), ["token", "settled", "settled_by", "expiries",
                                       "releases", "failures"])
        return list(await pipe.execute())


def _judge(ids: list[str], fields: list[Any], starts: Counter[str], done: set[str],
           ended: set[str]) -> tuple[int, int, dict[str, str]]:
    """Stale acks and unexplained duplicates among ``ids``; and the jobs behind these and
    the lost ones (neither ``done`` nor in ``ended``: dead or cancelled), in the order of
    ``ids``, each with the first thing wrong with it."""
    stale = unexplained = 0
    suspects: dict[str, str] = {}
    for job_id, (token, settled, settled_by, expiries, releases, failures) in zip(
            ids, fields, strict=True):
        if job_id in done and (settled_by is None or text(settled_by) != "ack"
                               or settled is None or settled != token):
            stale += 1
            suspects.setdefault(job_id, "stale ack")
        allowed = 1 + int(expiries or 0) + int(releases or 0) + int(failures or 0)
        if starts[job_id] > allowed:
            unexplained += 1
            suspects.setdefault(job_id, f"{starts[job_id]} starts, {allowed} allowed")
        if job_id not in done and job_id not in ended:
            suspects.setdefault(job_id, "lost")
    return stale, unexplained, suspects


async def _evidence(redis: aioredis.Redis, k: QueueKeys, suspects: dict[str, str],
                    log: list[Any]) -> list[str]:
    """The first :data:`_EVIDENCE` suspects, each with its hash's counters and its lines
    of the execution log."""
    evidence = []
    for job_id, what in list(suspects.items())[:_EVIDENCE]:
        job = await redis.hgetall(k.job(job_id))
        runs = [text(line) for line in log if text(line).split()[1:2] == [job_id]]
        evidence.append(f"{job_id}: {what}; hash {_fields(job)}; log {runs}")
    return evidence


async def _orphan_leases(redis: aioredis.Redis, k: QueueKeys, in_progress: set[str]) -> int:
    """Lease keys whose id is not in ``in_progress``."""
    orphan = 0
    prefix = k.prefix + "lease:"
    async for key in redis.scan_iter(match=prefix + "*", count=1000):
        if text(key)[len(prefix):] not in in_progress:
            orphan += 1
    return orphan


def _fields(job: dict[Any, Any]) -> dict[str, str]:
    keep = ("attempts", "expiries", "releases", "failures", "token", "settled", "settled_by",
            "owner", "dead_reason", "error")
    values = {text(name): text(value) for name, value in job.items()}
    return {name: values[name] for name in keep if name in values}

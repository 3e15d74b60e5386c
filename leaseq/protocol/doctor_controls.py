"""Doctor's check of a queue's scheduling controls against its sets: on a fifo queue the
claim index (``waiting``) holds exactly the ids of ``todos``, and every concurrency hold
belongs to an id of ``in_progress``. Each script of the protocol keeps them so; this
check finds what a key deleted or written behind the queue's back left, and with
``repair`` fixes it through ``reindex.lua``, which re-checks each item first, so a check
of a live queue is safe. Reads are paged like the walk's (:mod:`.doctor_walk`)."""

from __future__ import annotations

from . import scripts
from .doctor_report import Report
from .doctor_walk import Tally
from .queue import Queue
from .wire import text

__all__ = ["check_controls"]

_BATCH = 500
_SEP = "\x1f"


async def check_controls(queue: Queue, report: Report, *, repair: bool = False) -> None:
    """One finding: ``controls`` ok, or an error counting the unindexed waiting ids, the
    index entries of ids that no longer wait and the holds of ids not running."""
    k = queue.keys
    r = queue.redis
    fifo = text(await r.hget(k.settings, "ordering") or b"") == "fifo"
    todos = {text(i) async for i in r.sscan_iter(k.todos, count=_BATCH)}
    running = {text(i) async for i in r.sscan_iter(k.in_progress, count=_BATCH)}
    ids: list[str] = []
    entries: list[str] = []
    if fifo:
        indexed = set()
        async for member, _ in r.zscan_iter(k.waiting, count=_BATCH):
            entry = text(member)
            job_id = entry.rsplit(_SEP, 1)[-1]
            indexed.add(job_id)
            if job_id not in todos:
                entries.append(entry)
        ids += sorted(todos - indexed)
    ids += [text(m) for m in await r.zrange(k.holds, 0, -1) if text(m) not in running]
    tally = Tally()
    repaired = await _repair(queue, ids, entries) if repair and (ids or entries) else 0
    for item in ids + [e.rsplit(_SEP, 1)[-1] for e in entries]:
        tally.found(item)
    tally.repaired = min(repaired, tally.count)
    if not tally.count:
        report.add("ok", "controls", f"queue {queue.name!r}: the claim index and the "
                   "concurrency holds agree with the sets", queue=queue.name)
        return
    what = "id(s) whose claim index entry or concurrency hold disagrees with the sets"
    report.add("error", "controls", f"queue {queue.name!r}: {tally.described(what)}",
               queue=queue.name, count=tally.count, repaired_count=tally.repaired,
               examples=tally.examples)


async def _repair(queue: Queue, ids: list[str], entries: list[str]) -> int:
    """Hand the items to reindex.lua in batches; return how many it changed."""
    k = queue.keys
    changed = 0
    for start in range(0, max(len(ids), len(entries)), _BATCH):
        batch_ids = ids[start:start + _BATCH]
        batch_entries = entries[start:start + _BATCH]
        changed += int(await scripts.REINDEX(
            queue.redis, [k.todos, k.in_progress, *k.control, k.reply()],
            [*batch_ids, "", *batch_entries]))
    return changed

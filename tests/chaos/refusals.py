"""Chaos scenario: a server that answers but refuses. Worker processes drain the queue
while the server goes through OOM, BUSY, MISCONF and READONLY episodes (about a second
each, healed after); no worker may crash, none may log a refusal more than once per
episode and component, and afterwards every job is done, none lost, no duplicate beyond
what the queue recorded (expired leases, failures: the handlers' own execution-log writes
are refused too, so some runs fail and are retried).

Used by ``tests/chaos/test_refusal_chaos.py`` (small size); the server is its own
(``tests/helpers/refusals.py`` changes its configuration and removes its data directory).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from ..helpers.refusals import REFUSALS, Busy, Refusal, refusal_server
from .scenarios import Fleet, Outcome, Size, _check, _enqueue, _name, _stats

EPISODE = 1.0
"""Seconds each refusal lasts."""
WORKERS = 3


def _payloads(n: int, first: int) -> list[dict[str, Any]]:
    # Up to 0.4 s each: a batch keeps the fleet busy for longer than an episode.
    return [{"v": first + i, "s": random.uniform(0, 0.4)} for i in range(n)]


def _unavailable_per_component(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if not path.exists():
        return counts
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "redis_unavailable":
                counts[str(event.get("component"))] += 1
    return counts


async def server_refusals(size: Size, logdir: Path) -> Outcome:
    """Three workers drain ``size.jobs`` jobs, enqueued in one batch per refusal; once a
    batch is being worked on, the server refuses for ``EPISODE`` seconds (OOM, BUSY,
    MISCONF, READONLY in turn) and is healed; then the queue drains and the invariants
    are checked. A worker that exits meanwhile is a failure (noted, and restarted so the
    run can finish and show what was lost)."""
    server = refusal_server()
    server.start()
    q = _name("refusals")
    start = time.monotonic()
    # Attempts to spare: a handler's execution-log write refused by the server fails
    # the run, which is retried; that is the handler's failure, not a lost job.
    fleet = Fleet(server.url, q, WORKERS, logdir, concurrency=20, lease_timeout=2.0,
                  max_attempts=25)
    notes: list[str] = []
    episodes: list[str] = []
    ids: list[str] = []

    def check_alive(when: str) -> None:
        for i, w in enumerate(fleet.workers):
            if not w.alive:
                notes.append(f"FAILED: worker-{i} exited with {w.returncode} {when}")
        fleet.restart_dead()

    try:
        fleet.start()
        for w in fleet.workers:
            await anyio.to_thread.run_sync(w.wait_ready)
        per_batch = -(-size.jobs // len(REFUSALS))
        for kind in REFUSALS:
            batch = min(per_batch, size.jobs - len(ids))
            ids += await _enqueue(server.url, q, _payloads(batch, len(ids)))
            with anyio.fail_after(60):  # the refusal must meet jobs in flight
                while (await _stats(server.url, q)).in_progress == 0:
                    await anyio.sleep(0.01)
            refusal: Refusal = Busy(server, seconds=EPISODE) if kind is Busy else kind(server)
            began = time.monotonic()
            await refusal.on()
            try:
                if isinstance(refusal, Busy):
                    await refusal.wait_over()  # the busy loop ends by itself
                else:
                    await anyio.sleep(EPISODE)
            finally:
                await refusal.off()
            refused = await refusal.refused()
            episodes.append(f"{kind.code} {time.monotonic() - began:.1f} s "
                            f"({refused} replies refused)")
            check_alive(f"during or right after the {kind.code} episode")
        report = await _check(server.url, q, ids)
        check_alive("while the queue drained")
    finally:
        fleet.terminate()
        server.close()
    outcome = Outcome("server refusals (OOM, BUSY, MISCONF, READONLY)", len(ids),
                      len(episodes), report, time.monotonic() - start)
    outcome.notes.append("episodes: " + "; ".join(episodes))
    for i, w in enumerate(fleet.workers):
        counts = _unavailable_per_component(w.log_path)
        outcome.notes.append(f"worker-{i} redis_unavailable per component: "
                             f"{dict(sorted(counts.items()))}")
        over = {c: n for c, n in counts.items() if n > len(episodes) * w.starts}
        if over:
            notes.append(f"FAILED: worker-{i} logged redis_unavailable more than once per "
                         f"episode and component: {over} in {len(episodes)} episodes")
    outcome.notes.extend(notes)
    return outcome

"""The dashboard's two views of the queues, served by the API and by the live stream alike:
the overview of every queue and the detail of one."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..protocol.admin import server_ms
from ..protocol.queue import Queue
from . import _reads as reads
from ._context import Context
from ._rates import rates

EXPIRIES = 200
"""Lease expiries read for the chart: every one the reaper keeps."""
WORKERS = 50
"""Workers listed in a snapshot (all of them are counted)."""


async def overview(ctx: Context) -> dict[str, Any]:
    """The server's clock and every served queue's summary."""
    now = await server_ms(ctx.redis)
    return {"server_time_ms": now,
            "queues": [await reads.summary(ctx.queue_of(n)) for n in await ctx.names()]}


async def detail(ctx: Context, q: Queue, leases: int = 50, dead: int = 50,
                 minutes: int = 15, events: int = 20, *, seen: dict[str, Any] | None = None,
                 ) -> dict[str, Any]:
    """One queue: its summary, acks per minute, the chart's rates, in-flight leases, dead
    jobs, lease expiries, periodic schedules and live workers. ``seen``: an
    :func:`overview` just read, whose clock and summary of ``q`` serve here rather than
    being read again."""
    now = await server_ms(ctx.redis) if seen is None else seen["server_time_ms"]
    known_summaries = [] if seen is None else seen["queues"]
    summary = next((s for s in known_summaries if s["name"] == q.name), None)
    # One read of the expiries serves both the table (its newest) and the chart.
    expiries = await reads.events(q, max(events, EXPIRIES))
    workers = await q.workers()
    return {
        "summary": summary or await reads.summary(q), "server_time_ms": now,
        "throughput": await reads.throughput(q, minutes, now),
        "rates": await rates(q, now, minutes, expiries, ctx.failures,
                             recorded=max(events, EXPIRIES)),
        "leases": await reads.leases(q, leases, now),
        "dead": await reads.dead(q, dead),
        "events": expiries[:events],
        "schedules": [dataclasses.asdict(s) for s in await q.schedules()],
        "workers": [dataclasses.asdict(w) for w in workers[:WORKERS]],
        "workers_total": len(workers),
    }

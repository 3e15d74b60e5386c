"""The commands of periodic schedules: ``scheduler`` (a sidecar that fires them) and
``schedules`` (what each schedule did and will do)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import anyio
import click
import redis.asyncio as aioredis

from ..protocol.queue import Queue
from ..protocol.schedule import Schedule
from ..runtime.scheduler import Scheduler
from . import exits, targets, util
from .params import QUEUE, Command
from .signals import stop_signals


def load_schedules(spec: str) -> list[Schedule]:
    """The schedules named by ``MODULE:ATTR`` (a list of :class:`~leaseq.Cron` and
    :class:`~leaseq.Every`); anything else is one line on stderr and exit 2."""
    obj = targets.import_target(spec)
    listed = [obj] if isinstance(obj, Schedule) else obj
    if not (isinstance(listed, Sequence) and not isinstance(listed, str) and listed
            and all(isinstance(s, Schedule) for s in listed)):
        exits.fail(f"SCHEDULES {spec!r} is not a list of Cron or Every schedules",
                   exits.EXIT_USAGE)
    return list(listed)


@click.command(cls=Command)
@QUEUE
@click.argument("schedules_spec", metavar="SCHEDULES")
@click.option("--grace", type=click.FloatRange(min=0.001), default=5.0, show_default=True,
              help="Seconds after which a tick nobody fired counts as missed.")
@click.pass_obj
def scheduler(settings: util.Settings, queue: str, schedules_spec: str, grace: float) -> None:
    """Fire the periodic SCHEDULES (MODULE:ATTR, a list of Cron and Every) into a queue
    until SIGTERM/SIGINT. Run as many as you like: each tick is enqueued once."""
    schedules = load_schedules(schedules_spec)

    async def go(client: aioredis.Redis) -> int:
        q = Queue(client, queue)
        with stop_signals() as signals:
            code = await util.await_redis(client, [q], settings.redis_url, signals)
            if code is not None:
                return code
            s = Scheduler(q, schedules, grace=grace)
            async with anyio.create_task_group() as tg:
                await tg.start(s.run)
                await signals.next()
                tg.cancel_scope.cancel()
        return exits.EXIT_OK

    sys.exit(util.run(settings, go))


@click.command("schedules", cls=Command)
@QUEUE
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def schedules_(settings: util.Settings, queue: str, as_json: bool) -> None:
    """List the periodic schedules of a queue: timing, next tick, last job and its
    state, ticks skipped (overlap, missed), and whether any scheduler still runs it."""

    async def go(client: aioredis.Redis) -> int:
        await util.warn_unknown_queues(client, [queue])
        listed = await Queue(client, queue).schedules()
        if as_json:
            click.echo(json.dumps({"queue": queue,
                                   "schedules": [asdict(s) for s in listed]}))
            return exits.EXIT_OK
        click.echo(f"{'SCHEDULE':24}  {'TIMING':32}  {'NEXT':>8}  {'LAST JOB':32}  "
                   f"{'STATE':11}  {'RUNS':>5}  SKIPPED")
        now = time.time()
        for s in listed:
            nxt = "stale" if s.stale else util.duration(
                None if s.next_tick is None else s.next_tick - now)
            skipped = f"{s.skipped_overlap} overlap, {s.skipped_missed} missed"
            click.echo(f"{s.name:24}  {s.spec:32}  {nxt:>8}  {s.last_job or '-':32}  "
                       f"{s.last_job_state or '-':11}  {s.enqueued:>5}  {skipped}")
        if not listed:
            click.echo(f"no schedules declared for queue {queue}", err=True)
        return exits.EXIT_OK

    sys.exit(util.run(settings, go))


COMMANDS: tuple[Any, ...] = (scheduler, schedules_)
"""The commands this module adds to the ``leaseq`` group."""

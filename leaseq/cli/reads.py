"""The commands that look at queues and report: ``stats``, ``inspect`` and ``doctor``
(which, with ``--repair``, also fixes what is safe to fix)."""

from __future__ import annotations

import json
import sys

import click
import redis.asyncio as aioredis

from ..protocol import doctor
from ..protocol.admin import registered_queues
from ..protocol.queue import Queue
from . import exits, ops, util
from .params import QUEUES, Command

# -- stats, inspect -------------------------------------------------------------------------


@click.command(cls=Command)
@QUEUES
@click.option("--watch", "-w", is_flag=True, help="Refresh a live table until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--by-task", is_flag=True,
              help="Per task of one queue (-q): jobs by state, acked/failed/dead per minute "
                   "and handler p50/p95 run time.")
@click.option("--minutes", type=click.IntRange(1, 120), default=15, show_default=True,
              help="With --by-task: minutes of history.")
@click.pass_obj
def stats(settings: util.Settings, queues: tuple[str, ...], watch: bool, interval: float,
          as_json: bool, by_task: bool, minutes: int) -> None:
    """Counts per state, oldest lease age and throughput of queues (default: all known).

    A paused queue is marked; columns of the jobs held back by a limit or the pause
    ("on limits") and of those that expired before they started appear when a queue
    shown has any (--json always has them, with the queue's ordering).

    With --watch, Ctrl-C ends the live table (exit 0). With --by-task, the same per task
    of one queue."""
    from . import stats as _clistats

    if by_task:
        if len(queues) != 1 or watch:
            raise click.UsageError("--by-task takes one --queue (and no --watch)")
        sys.exit(util.run(settings, lambda client: ops.show_task_stats(
            client, queues[0], minutes, as_json)))
    util.run(settings, lambda client: _clistats.show(client, queues, watch, interval, as_json))


@click.command("inspect", cls=Command)
@click.argument("job_id")
@QUEUES
@click.option("--json", "as_json", is_flag=True, help="Print JSON (times in Unix seconds).")
@click.pass_obj
def inspect_(settings: util.Settings, job_id: str, queues: tuple[str, ...],
             as_json: bool) -> None:
    """Show everything recorded about JOB_ID (searches every known queue by default).

    Times are local ISO-8601 with their age by Redis's clock; `-` marks what is not
    recorded."""
    from . import stats as _clistats

    async def go(client: aioredis.Redis) -> int:
        await util.warn_unknown_queues(client, queues)
        names = list(queues) or await registered_queues(client)
        for name in names:
            info = await Queue(client, name).job(job_id)
            if info is not None:
                await _clistats.print_job(client, name, info, as_json)
                return exits.EXIT_OK
        exits.notice(f"no job {job_id!r} in {', '.join(names) or 'any queue'}")
        return exits.EXIT_FAILURE

    sys.exit(util.run(settings, go))


# -- doctor ---------------------------------------------------------------------------------


@click.command("doctor", cls=Command)
@QUEUES
@click.option("--repair", is_flag=True, help="Fix what can be fixed safely.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_obj
def doctor_(settings: util.Settings, queues: tuple[str, ...], repair: bool,
            as_json: bool) -> None:
    """Check the server's settings, and the queues' integrity, expired leases and reaper
    (default: all known). Exits 1 when a problem is left."""

    async def go(client: aioredis.Redis) -> int:
        report = await doctor.diagnose(client, queues, repair=repair)
        if as_json:
            click.echo(json.dumps(report.as_dict()))
        else:
            for line in report.lines():
                click.echo(line)
        return exits.EXIT_FAILURE if report.problems else exits.EXIT_OK

    sys.exit(util.run(settings, go))


COMMANDS = (stats, inspect_, doctor_)
"""What this module adds to the ``leaseq`` group."""

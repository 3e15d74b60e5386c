"""``leaseq cancel``: cancel jobs from the command line (:meth:`leaseq.Queue.cancel`)."""

from __future__ import annotations

import json
import sys

import click
import redis.asyncio as aioredis

from ..protocol.queue import Queue
from . import exits, util
from .params import QUEUE, Command

_SAID = {"cancelled": "cancelled (it had not started)",
         "delivered": "cancel delivered to its running worker: it stops and ends cancelled",
         "finished": "already finished (done, dead or cancelled): nothing changed",
         "unknown": "unknown: the queue has no such job"}


@click.command("cancel", cls=Command)
@QUEUE
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--reason", default="cancelled", show_default=True,
              help="Stored with the job and raised by wait() (JobCancelled).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"job_id": ..., "outcome": ...} per job, one per line.')
@click.pass_obj
def cancel(settings: util.Settings, queue: str, job_ids: tuple[str, ...], reason: str,
           as_json: bool) -> None:
    """Cancel jobs: a waiting or delayed one at once, a running one through its worker
    (it stops the handler and the job ends cancelled; if that worker died, the reaper
    ends it cancelled). Exit 1 if an id is unknown."""

    async def go(client: aioredis.Redis) -> int:
        await util.warn_unknown_queues(client, [queue])
        q = Queue(client, queue)
        code = exits.EXIT_OK
        for job_id in dict.fromkeys(job_ids):
            outcome = await q.cancel(job_id, reason=reason)
            if as_json:
                click.echo(json.dumps({"queue": queue, "job_id": job_id, "outcome": outcome}))
            else:
                click.echo(f"{job_id}: {_SAID[outcome]}")
            if outcome == "unknown":
                code = exits.EXIT_FAILURE
        return code

    sys.exit(util.run(settings, go))


COMMANDS = (cancel,)

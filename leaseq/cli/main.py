"""The ``leaseq`` command: workers, the reaper sidecar, enqueue, stats and admin.

Exit codes: 0 success; 1 the answer is "no" (job not found, problems found, aborted);
2 bad arguments; 3 Redis unreachable, credentials or permissions refused, or not a usable
Redis server; 130 interrupted (Ctrl-C) before the work was done; 141 stdout was closed
(``| head``), quietly.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

import anyio
import click
import redis.asyncio as aioredis
import structlog

from ..exceptions import InvalidInput, JobDead, WaitTimeout
from ..protocol import doctor
from ..protocol.admin import registered_queues
from ..protocol.queue import Queue
from ..protocol.settings import STORED
from ..runtime.metrics import Metrics
from ..runtime.policy import Policy, Priority, Weighted
from ..runtime.reaper import Reaper
from ..runtime.task import normalise_handlers
from ..runtime.worker import Worker
from . import exits, logsetup, ops, targets, util
from .params import LOG_FORMATS, LOG_LEVELS, QUEUE, QUEUES, Group, queue_name
from .supervisor import Supervisor

__all__ = ["main"]

log = structlog.get_logger(__name__)


@click.group(cls=Group,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--redis", "redis_url", envvar="LEASEQ_REDIS_URL",
              default="redis://localhost:6379/0", show_default=True, show_envvar=True,
              help="Redis URL: redis://[user:password@]host:port/db, rediss:// (TLS) or "
                   "unix:///path/to/socket.")
@click.option("--log-format", type=LOG_FORMATS, default="auto", show_default=True,
              envvar="LEASEQ_LOG_FORMAT", show_envvar=True,
              help="auto: console on a terminal, JSON otherwise (also accepted after the "
                   "command).")
@click.option("--log-level", default="info", show_default=True, type=LOG_LEVELS,
              envvar="LEASEQ_LOG_LEVEL", show_envvar=True)
@click.version_option(package_name="leaseq")
@click.pass_context
def main(ctx: click.Context, redis_url: str, log_format: str, log_level: str) -> None:
    """leaseq: an at-least-once work queue on Redis with lease timeouts."""
    source = ctx.get_parameter_source("redis_url")
    given = source not in (None, click.core.ParameterSource.DEFAULT)
    ctx.obj = util.Settings(redis_url, log_format, log_level, given)
    logsetup.configure(log_format, log_level)  # type: ignore[arg-type]


def _retention(kind: type[int] | type[float]) -> Any:
    """Parse a retention flag: a number, or ``none`` to turn that rule off; not given,
    the queue's stored value applies."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return STORED
        if value.lower() == "none":
            return None
        try:
            number = kind(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number or 'none'") from None
        if number < 0:
            raise click.BadParameter(f"{value!r} must be >= 0 (or 'none')")
        return number

    return parse


_RETENTION_TTL = click.option(
    "--done-ttl", default=None, metavar="SECONDS|none", callback=_retention(float),
    help="Keep done jobs this long; stored with the queue (default: the stored value, "
         "else a day).")
_RETENTION_MAX = click.option(
    "--done-max", default=None, metavar="N|none", callback=_retention(int),
    help="Keep at most N done jobs; stored with the queue (default: the stored value, "
         "else 100,000).")


# -- worker ---------------------------------------------------------------------------------


@main.command()
@click.argument("target")
@click.option("--queue", "-q", "queues", multiple=True, required=True, callback=queue_name,
              help="Queue name; repeat to serve several (in priority order by default).")
@click.option("--policy", type=click.Choice(["priority", "weighted"]), default="priority",
              show_default=True, help="How several queues share the slots.")
@click.option("--weight", "weights", multiple=True, metavar="QUEUE=N",
              help="Weight of a queue under --policy weighted (default 1).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=10, show_default=True,
              help="Handlers running at once per process.")
@click.option("--processes", "-p", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes to run and supervise (one core each).")
@click.option("--reaper/--no-reaper", default=True, show_default=True,
              help="Run a reaper inside each worker (safe with many).")
@click.option("--lease-timeout", type=click.FloatRange(min=0.001), default=None,
              help="Default lease length in seconds; stored with the queue (default: the "
                   "stored value, else 30).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None,
              help="Default attempts per job; stored with the queue (default: the stored "
                   "value, else 5).")
@_RETENTION_TTL
@_RETENTION_MAX
@click.option("--job-timeout", type=click.FloatRange(min=0.001), default=None,
              help="Time limit per run in seconds (default: none).")
@click.option("--grace-period", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds running jobs get to finish on SIGTERM/SIGINT.")
@click.option("--burst", is_flag=True, help="Exit once no job is waiting or running.")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=None,
              help="Serve /metrics and /healthz on this port (process i uses port + i).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.pass_obj
def worker(settings: util.Settings, target: str, queues: tuple[str, ...], policy: str,
           weights: tuple[str, ...], concurrency: int, processes: int, reaper: bool,
           lease_timeout: float | None, max_attempts: int | None, done_ttl: Any,
           done_max: Any, job_timeout: float | None, grace_period: float, burst: bool,
           metrics_port: int | None, metrics_host: str) -> None:
    """Run a worker for TARGET, given as MODULE:ATTR.

    ATTR is a dict mapping task names to async handlers (served on every --queue), or a
    function that takes the Queue and returns a Worker (one --queue). SIGTERM/SIGINT stop
    gracefully; a second signal at once.

    Before it starts, one round trip checks Redis: an error that cannot heal (credentials,
    ACL, not a Redis server, TLS) exits 3; connection refused or a timeout is logged once
    and retried until Redis answers.
    """
    handlers = targets.load_target(target)
    if isinstance(handlers, Mapping):
        try:
            normalise_handlers(handlers)
        except InvalidInput as exc:
            exits.fail(f"TARGET {target!r}: {exc}", exits.EXIT_USAGE)
    chosen = _policy(policy, weights, queues)
    if not isinstance(handlers, Mapping) and len(queues) > 1:
        raise click.UsageError("a Worker factory serves one --queue")
    if processes > 1:
        # Children would each hit (and the supervisor restart) an error that cannot heal.
        code = util.run(settings, lambda client: util.await_redis(
            client, [Queue(client, name) for name in queues], settings.redis_url))
        if code is not None:
            sys.exit(code)
        sys.exit(_supervise(settings, processes, metrics_port, burst))
    metrics = None
    if metrics_port is not None:
        metrics = Metrics()
        metrics.serve(metrics_port, metrics_host)

    async def go(client: aioredis.Redis) -> int:
        qs = [Queue(client, name, lease_timeout=lease_timeout, max_attempts=max_attempts,
                    done_ttl=done_ttl, done_max=done_max) for name in queues]
        code = await util.await_redis(client, qs, settings.redis_url)
        if code is not None:
            return code
        if isinstance(handlers, Mapping):
            w = Worker(dict.fromkeys(qs, handlers), policy=chosen, concurrency=concurrency,
                       reaper=reaper, job_timeout=job_timeout, grace_period=grace_period,
                       metrics=metrics)
        else:
            made = handlers(qs[0])
            w = await made if inspect.isawaitable(made) else made
            if not isinstance(w, Worker):
                raise exits.Failure(f"TARGET {target!r} returned {type(w).__name__}: "
                                   "expected a function that takes a Queue and returns a "
                                   "Worker", exits.EXIT_USAGE)
        if os.environ.get("LEASEQ_WORKER_INDEX") is None:
            await w.run(burst=burst)
            return exits.EXIT_OK
        # A child of `leaseq worker -p N`: if the supervisor dies (SIGKILL, OOM killer),
        # nothing would stop this process; it stops gracefully by itself instead.
        async with anyio.create_task_group() as tg:
            # The supervisor says its pid: one that died before this line is noticed too.
            parent = os.environ.get("LEASEQ_SUPERVISOR_PID", "")
            tg.start_soon(_stop_when_orphaned, w,
                          int(parent) if parent.isdigit() else os.getppid())
            await w.run(burst=burst)
            tg.cancel_scope.cancel()
        return exits.EXIT_OK

    # Room for every handler to use the client once, plus the worker's own connections.
    sys.exit(util.run(settings, go, max_connections=2 * concurrency + 64))


async def _stop_when_orphaned(worker: Worker, parent: int) -> None:
    """Stop ``worker`` gracefully once the process that started it is gone."""
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells of a parent gone
        await anyio.sleep(0.5)
    log.warning("supervisor_gone", parent_pid=parent, action="graceful stop")
    worker.stop()


def _policy(name: str, weights: tuple[str, ...], queues: tuple[str, ...]) -> Policy:
    if name == "priority":
        if weights:
            raise click.UsageError("--weight needs --policy weighted")
        return Priority()
    table = dict.fromkeys(queues, 1)
    for spec in weights:
        queue, _, value = spec.partition("=")
        if queue not in table or not value.isdigit() or int(value) < 1:
            raise click.BadParameter(f"{spec!r}: expected QUEUE=N with a served queue and "
                                     "N >= 1", param_hint="--weight")
        table[queue] = int(value)
    return Weighted(table)


def _supervise(settings: util.Settings, processes: int, metrics_port: int | None,
               burst: bool) -> int:
    args = sys.argv[1:]
    # Children run the same command line with one process each (and their own port).
    child = [a for a in args if not a.startswith(("--processes=", "-p="))]
    for flag in ("--processes", "-p"):
        while flag in child:
            i = child.index(flag)
            del child[i:i + 2]

    def argv_for(index: int) -> list[str]:
        argv = [sys.executable, "-m", "leaseq", *child, "--processes", "1"]
        if metrics_port is not None:
            i = argv.index("--metrics-port") if "--metrics-port" in argv else None
            if i is not None:
                argv[i + 1] = str(metrics_port + index)
        return argv

    return anyio.run(Supervisor(argv_for, processes, burst=burst).run)


# -- reaper ---------------------------------------------------------------------------------


@main.command()
@QUEUES
@click.option("--interval", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="Seconds between sweeps.")
@click.option("--lease-timeout", type=click.FloatRange(min=0.001), default=None,
              help="Default lease length (also given to a lease key found without expiry); "
                   "stored with the queue (default: the stored value, else 30).")
@_RETENTION_TTL
@_RETENTION_MAX
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=None,
              help="Serve /metrics and /healthz on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.pass_obj
def reaper(settings: util.Settings, queues: tuple[str, ...], interval: float,
           lease_timeout: float | None, done_ttl: Any, done_max: Any,
           metrics_port: int | None, metrics_host: str) -> None:
    """Run the reaper sidecar for one or more queues until SIGTERM/SIGINT.

    Redis is checked at start-up as for `leaseq worker` (exit 3 on an error that cannot
    heal, retried otherwise)."""
    if not queues:
        raise click.UsageError("give at least one --queue")
    metrics = None
    if metrics_port is not None:
        metrics = Metrics()
        metrics.serve(metrics_port, metrics_host)

    async def go(client: aioredis.Redis) -> int:
        qs = [Queue(client, name, lease_timeout=lease_timeout, done_ttl=done_ttl,
                    done_max=done_max) for name in queues]
        code = await util.await_redis(client, qs, settings.redis_url)
        if code is not None:
            return code
        r = Reaper(*qs, interval=interval, metrics=metrics)
        # Signals first, so the reaper is stoppable by the time it says it started.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(r.run)
                if metrics is not None:
                    tg.start_soon(metrics.watch, qs)
                async for _ in signals:
                    break
                tg.cancel_scope.cancel()
        return exits.EXIT_OK

    sys.exit(util.run(settings, go))


# -- enqueue --------------------------------------------------------------------------------


_BATCH_LINES = 500
"""Stdin lines enqueued in one round trip at most."""
_BATCH_IDLE = 0.05
"""Seconds without a new stdin line after which the lines read so far are enqueued."""


@main.command()
@QUEUE
@click.argument("task")
@click.argument("payload", required=False)
@click.option("--job-id", default=None, help="Explicit id (enqueue is a no-op if known).")
@click.option("--delay", type=click.FloatRange(min=0), default=None, help="Seconds to wait.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None)
@click.option("--json", "as_json", is_flag=True,
              help='Print {"queue": ..., "job_id": ...} per job instead of the bare id.')
@click.option("--wait", "wait_", is_flag=True,
              help="Wait for the job (one PAYLOAD) to finish and print its result as JSON; "
                   "exit 1 if it ends dead.")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=None,
              help="With --wait: give up after this many seconds (exit 1).")
@click.pass_obj
def enqueue(settings: util.Settings, queue: str, task: str, payload: str | None,
            job_id: str | None, delay: float | None, max_attempts: int | None,
            as_json: bool, wait_: bool, timeout: float | None) -> None:
    """Enqueue a TASK with a JSON PAYLOAD and print its id.

    Without PAYLOAD (or with -), read one JSON payload per line from stdin and enqueue
    them as they arrive: in batches, after 50 ms without a new line or every 500 lines,
    printing each id as soon as its job is written. Ctrl-C enqueues the lines already
    read, says how many jobs were enqueued and exits 130.
    """

    def show(job: str) -> None:
        click.echo(json.dumps({"queue": queue, "job_id": job}) if as_json else job)

    if payload is not None and payload != "-":
        value = _parse_json(payload, "PAYLOAD")

        async def one(client: aioredis.Redis) -> int:
            q = Queue(client, queue)
            job = await q.enqueue(task, value, job_id=job_id, delay=delay,
                                  max_attempts=max_attempts)
            show(job)
            if not wait_:
                return exits.EXIT_OK
            try:
                result = await q.wait(job, timeout=timeout)
            except (JobDead, WaitTimeout) as exc:
                exits.notice(str(exc))
                return exits.EXIT_FAILURE
            click.echo(json.dumps({"queue": queue, "job_id": job, "result": result})
                       if as_json else json.dumps(result))
            return exits.EXIT_OK

        sys.exit(util.run(settings, one))
    if job_id is not None:
        raise click.UsageError("--job-id needs a single PAYLOAD argument")
    if wait_:
        raise click.UsageError("--wait needs a single PAYLOAD argument")

    async def many(client: aioredis.Redis) -> int:
        if sys.stdin.isatty():
            exits.notice("reading one JSON payload per line until Ctrl-D "
                        "(Ctrl-C enqueues the lines entered and stops)")
        feed = _StdinFeed(Queue(client, queue), task, delay, max_attempts, show)
        _, interrupted = await util.until_signal(feed.run, signal.SIGINT)
        if interrupted is not None:
            exits.notice(f"interrupted: {_jobs(feed.enqueued)} enqueued")
            return exits.EXIT_INTERRUPTED
        return exits.EXIT_OK

    sys.exit(util.run(settings, many))


def _jobs(n: int, what: str = "job") -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


class _StdinFeed:
    """Enqueues stdin's JSON lines as they arrive (see ``enqueue``)."""

    def __init__(self, queue: Queue, task: str, delay: float | None,
                 max_attempts: int | None, show: Any) -> None:
        self.queue = queue
        self.task = task
        self.delay = delay
        self.max_attempts = max_attempts
        self.show = show
        self.enqueued = 0
        """Jobs written so far."""
        self._pending: list[Any] = []
        self._line_no = 0
        self._tail = b""

    async def run(self) -> None:
        send, receive = anyio.create_memory_object_stream[bytes](4)
        async with anyio.from_thread.BlockingPortal() as portal:
            # A thread of its own, a daemon: a read that Ctrl-C abandons must not keep the
            # process alive (anyio's worker threads are joined at exit).
            threading.Thread(target=_read_stdin, args=(portal, send), daemon=True,
                             name="leaseq-stdin").start()
            try:
                with receive:
                    await self._consume(receive)
            except anyio.get_cancelled_exc_class():
                # Ctrl-C: the lines in hand are still enqueued.
                with anyio.CancelScope(shield=True):
                    await self._flush()
                raise

    async def _consume(self, receive: Any) -> None:
        eof = False
        while not eof:
            chunk = b""
            idle = False
            try:
                if self._pending:
                    with anyio.move_on_after(_BATCH_IDLE) as wait:
                        chunk = await receive.receive()
                    idle = wait.cancelled_caught
                else:
                    chunk = await receive.receive()
            except anyio.EndOfStream:
                eof = True
            await self._take(chunk, eof)
            if idle or eof or len(self._pending) >= _BATCH_LINES:
                with anyio.CancelScope(shield=True):
                    await self._flush()

    async def _take(self, chunk: bytes, eof: bool) -> None:
        *lines, self._tail = (self._tail + chunk).split(b"\n")
        if eof and self._tail:
            lines.append(self._tail)
            self._tail = b""
        for line in lines:
            self._line_no += 1
            if not line.strip():
                continue
            try:
                self._pending.append(_loads(line))
            except ValueError as exc:
                with anyio.CancelScope(shield=True):
                    await self._flush()
                raise exits.Failure(
                    f"stdin line {self._line_no}: invalid JSON: {exc} (stopped there; "
                    f"{_jobs(self.enqueued)} enqueued)", exits.EXIT_USAGE) from None

    async def _flush(self) -> None:
        while self._pending:
            # Taken out first: a batch whose enqueue failed is not sent again (without job
            # ids a re-sent enqueue would make second jobs).
            batch = self._pending[:_BATCH_LINES]
            del self._pending[:_BATCH_LINES]
            for job in await self.queue.enqueue_many(self.task, batch, delay=self.delay,
                                                     max_attempts=self.max_attempts):
                self.show(job)
                self.enqueued += 1


def _read_stdin(portal: anyio.from_thread.BlockingPortal, send: Any) -> None:
    """Blocking reads of stdin; each read's bytes (what arrived, up to 64 KiB) go to the
    event loop at once, and end of input closes ``send``."""
    try:
        fd: int | None = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # a replaced stdin (tests, embedding)
        fd = None
    try:
        while True:
            try:
                chunk = (os.read(fd, 65536) if fd is not None
                         else sys.stdin.readline().encode())
            except OSError:
                chunk = b""
            if not chunk:
                portal.call(send.aclose)
                return
            portal.call(send.send, chunk)
    except Exception:
        # The loop is done with stdin: a closed stream or portal, or a send cancelled as
        # the portal stopped. Nobody is listening any more.
        return


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(raw: str | bytes) -> Any:
    """Strict JSON: NaN and Infinity are refused like any other invalid JSON."""
    return json.loads(raw, parse_constant=_reject_constant)


def _parse_json(raw: str, where: str) -> Any:
    try:
        return _loads(raw)
    except ValueError as exc:
        exits.fail(f"{where}: invalid JSON: {exc}", exits.EXIT_USAGE)


# -- stats, inspect -------------------------------------------------------------------------


@main.command()
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

    With --watch, Ctrl-C ends the live table (exit 0). With --by-task, the same per task
    of one queue."""
    from . import stats as _clistats

    if by_task:
        if len(queues) != 1 or watch:
            raise click.UsageError("--by-task takes one --queue (and no --watch)")
        sys.exit(util.run(settings, lambda client: ops.show_task_stats(
            client, queues[0], minutes, as_json)))
    util.run(settings, lambda client: _clistats.show(client, queues, watch, interval, as_json))


@main.command("inspect")
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


# -- dead -----------------------------------------------------------------------------------


@main.group()
def dead() -> None:
    """List, requeue or purge dead jobs."""


@dead.command("list")
@QUEUE
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per job (times in Unix seconds).")
@click.pass_obj
def dead_list(settings: util.Settings, queue: str, limit: int, as_json: bool) -> None:
    """Show dead jobs: id, task, time of death and reason, under a header."""
    from . import stats as _clistats

    async def go(client: aioredis.Redis) -> None:
        await util.warn_unknown_queues(client, [queue])
        q = Queue(client, queue)
        await _clistats.print_dead(client, queue, await q.dead_jobs(limit), as_json)

    util.run(settings, go)


def _confirm(action: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise exits.Failure(f"refusing to {action} without --yes (stdin is not a terminal)")
    if not click.confirm(f"{action}?"):
        raise exits.Failure("aborted")


async def _dead_among(q: Queue, job_ids: list[str]) -> list[bool]:
    async with q.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.sismember(q.keys.dead, job_id)
        return [bool(found) for found in await pipe.execute()]


def _dead_action(verb: str) -> Any:
    @dead.command(verb)
    @QUEUE
    @click.argument("job_ids", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="Every dead job of the queue.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--json", "as_json", is_flag=True,
                  help=f'Print {{"{verb}d": N, "not_found": [IDS]}}.')
    @click.pass_obj
    def action(settings: util.Settings, queue: str, job_ids: tuple[str, ...], all_: bool,
               yes: bool, as_json: bool) -> None:
        if bool(job_ids) == all_:
            raise click.UsageError("give JOB_IDS or --all (not both)")

        async def go(client: aioredis.Redis) -> int:
            q = Queue(client, queue)
            ids: list[str] | None = None
            missing: list[str] = []
            if all_:
                count = int(await client.scard(q.keys.dead))
            else:
                asked = list(dict.fromkeys(job_ids))
                found = await _dead_among(q, asked)
                ids = [i for i, ok in zip(asked, found, strict=True) if ok]
                missing = [i for i, ok in zip(asked, found, strict=True) if not ok]
                count = len(ids)
            n = 0
            if count:
                _confirm(f"{verb} {_jobs(count, 'dead job')} of queue {queue}", yes)
                n = await (q.requeue_dead(ids) if verb == "requeue" else q.purge_dead(ids))
            if as_json:
                click.echo(json.dumps({f"{verb}d": n, "not_found": missing}))
            elif count or all_:
                click.echo(f"{verb}d {n} job(s)")
            if missing:
                exits.notice(f"not found: {', '.join(missing)} (no dead job of queue {queue} "
                            "has this id)")
                return exits.EXIT_FAILURE
            return exits.EXIT_OK

        sys.exit(util.run(settings, go))

    action.__doc__ = {
        "requeue": "Put dead jobs back in todos with fresh attempts (exit 1 if an id is "
                   "not a dead job of the queue).",
        "purge": "Delete dead jobs for good (exit 1 if an id is not a dead job of the "
                 "queue).",
    }[verb]
    return action


dead_requeue = _dead_action("requeue")
dead_purge = _dead_action("purge")


# -- doctor ---------------------------------------------------------------------------------


@main.command("doctor")
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


# -- web ------------------------------------------------------------------------------------


@main.command()
@QUEUES
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs a token (or --no-auth).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to bind (0: any free port; the log line says which).")
@click.option("--token", envvar="LEASEQ_WEB_TOKEN", show_envvar=True, default=None,
              help="Bearer token every route but /healthz requires. Prefer the environment "
                   "variable: a command line is visible to every user of the machine.")
@click.option("--no-auth", is_flag=True,
              help="Serve without a token on a non-loopback address (behind your own proxy).")
@click.option("--max-body", type=click.IntRange(min=1024), default=256 * 1024,
              show_default=True, help="Largest request body, in bytes (larger: 413).")
@click.pass_obj
def web(settings: util.Settings, queues: tuple[str, ...], host: str, port: int,
        token: str | None, no_auth: bool, max_body: int) -> None:
    """Serve the dashboard and the HTTP API (default: every registered queue)."""
    try:
        from . import web as _serve
    except ImportError as exc:
        exits.fail(f"leaseq web needs the web extra (pip install 'leaseq[web]'): {exc}",
                  exits.EXIT_USAGE)
    if token is not None and not token.strip():
        raise click.BadParameter("the token is empty", param_hint="--token")
    if token is None and not no_auth and not _serve.is_loopback(host):
        raise click.BadParameter(
            f"{host} is not a loopback address: set LEASEQ_WEB_TOKEN (or pass --no-auth "
            "when a proxy in front checks who may see and requeue jobs)", param_hint="--host")
    _serve.serve(settings, host=host, port=port, queues=queues, token=token,
                 max_body=max_body)


# -- demo -----------------------------------------------------------------------------------


@main.command()
@click.option("--jobs", type=click.IntRange(min=10), default=3000, show_default=True)
@click.option("--workers", type=click.IntRange(min=2), default=3, show_default=True)
@click.option("--keep", is_flag=True,
              help="Keep the demo's queue afterwards (with --redis), e.g. for `leaseq web`.")
@click.pass_obj
def demo(settings: util.Settings, jobs: int, workers: int, keep: bool) -> None:
    """Watch a queue survive a killed worker: enqueue jobs, run worker processes and a
    reaper, SIGKILL a worker mid-job, and count what was lost (nothing)."""
    from . import demo as _demo

    sys.exit(_demo.run(settings, jobs, workers, keep))


for _command in ops.COMMANDS:
    main.add_command(_command)

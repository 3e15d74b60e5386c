"""The commands that run until they are stopped: ``worker`` (one process, or several
under a supervisor), the ``reaper`` sidecar and the ``web`` dashboard; and the ``demo``,
which runs worker processes and a reaper for a while."""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import click
import redis.asyncio as aioredis
import structlog

from ..exceptions import InvalidInput
from ..protocol.queue import Queue
from ..protocol.settings import STORED
from ..runtime.metrics import Metrics
from ..runtime.policy import Policy, Priority, Weighted
from ..runtime.reaper import Reaper
from ..runtime.scheduler import Scheduler
from ..runtime.task import normalise_handlers
from ..runtime.worker import DEFAULT_CONCURRENCY, Worker
from . import exits, targets, util
from .params import QUEUES, Command, queue_name
from .schedules import load_schedules
from .signals import Signals, stop_signals
from .supervisor import Supervisor

log = structlog.get_logger(__name__)


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


@click.command(cls=Command)
@click.argument("target")
@click.option("--queue", "-q", "queues", multiple=True, required=True, callback=queue_name,
              help="Queue name; repeat to serve several (in priority order by default).")
@click.option("--policy", type=click.Choice(["priority", "weighted"]), default="priority",
              show_default=True, help="How several queues share the slots.")
@click.option("--weight", "weights", multiple=True, metavar="QUEUE=N",
              help="Weight of a queue under --policy weighted (default 1).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None,
              help=f"Handlers running at once per process (default {DEFAULT_CONCURRENCY}, "
                   "or 10 when every handler is a plain def: its threads).")
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
@click.option("--lifespan", "lifespan_spec", metavar="MODULE:ATTR", default=None,
              help="An async context manager factory taking the Worker: entered before the "
                   "first claim, exited after the drain; what it yields is ctx.state.")
@click.option("--schedules", "schedules_spec", metavar="MODULE:ATTR", default=None,
              help="Periodic schedules (a list of Cron and Every) to fire into the (first) "
                   "queue; every worker may run them, each tick is enqueued once.")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=None,
              help="Serve /metrics and /healthz on this port (process i uses port + i).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.pass_obj
def worker(settings: util.Settings, target: str, queues: tuple[str, ...], policy: str,
           weights: tuple[str, ...], concurrency: int | None, processes: int, reaper: bool,
           lease_timeout: float | None, max_attempts: int | None, done_ttl: Any,
           done_max: Any, job_timeout: float | None, grace_period: float, burst: bool,
           lifespan_spec: str | None, schedules_spec: str | None, metrics_port: int | None,
           metrics_host: str) -> None:
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
    periodic = [] if schedules_spec is None else load_schedules(schedules_spec)
    lifespan = None if lifespan_spec is None else targets.import_target(lifespan_spec)
    if lifespan is not None and not callable(lifespan):
        exits.fail(f"LIFESPAN {lifespan_spec!r} is not callable", exits.EXIT_USAGE)
    if lifespan is not None and not isinstance(handlers, Mapping):
        raise click.UsageError("--lifespan goes with a handler map; a Worker factory "
                               "passes Worker(lifespan=...) itself")
    chosen = _policy(policy, weights, queues)
    if not isinstance(handlers, Mapping) and len(queues) > 1:
        raise click.UsageError("a Worker factory serves one --queue")
    if processes > 1:
        # Children would each hit (and the supervisor restart) an error that cannot heal.
        async def check(client: aioredis.Redis) -> int | None:
            with stop_signals() as signals:
                return await util.await_redis(
                    client, [Queue(client, name) for name in queues], settings.redis_url,
                    signals)

        code = util.run(settings, check)
        if code is not None:
            sys.exit(code)
        sys.exit(_supervise(settings, processes, metrics_port, burst))
    metrics = None
    if metrics_port is not None:
        metrics = Metrics()
        metrics.serve(metrics_port, metrics_host)

    async def go(client: aioredis.Redis) -> int:
        with stop_signals() as signals:
            return await serve(client, signals)

    async def serve(client: aioredis.Redis, signals: Signals) -> int:
        qs = [Queue(client, name, lease_timeout=lease_timeout, max_attempts=max_attempts,
                    done_ttl=done_ttl, done_max=done_max) for name in queues]
        code = await util.await_redis(client, qs, settings.redis_url, signals)
        if code is not None:
            return code
        if isinstance(handlers, Mapping):
            w = Worker(dict.fromkeys(qs, handlers), policy=chosen, concurrency=concurrency,
                       reaper=reaper, job_timeout=job_timeout, grace_period=grace_period,
                       metrics=metrics, schedules=periodic, lifespan=lifespan)
        else:
            made = handlers(qs[0])
            w = await made if inspect.isawaitable(made) else made
            if not isinstance(w, Worker):
                raise exits.Failure(f"TARGET {target!r} returned {type(w).__name__}: "
                                    "expected a function that takes a Queue and returns a "
                                    "Worker", exits.EXIT_USAGE)
            if periodic:
                if w.scheduler is not None:
                    raise exits.Failure(f"TARGET {target!r} made a Worker with schedules of "
                                        "its own: drop --schedules", exits.EXIT_USAGE)
                w.scheduler = Scheduler(w.queue, periodic)
        if os.environ.get("LEASEQ_WORKER_INDEX") is None:
            await signals.run_worker(w, burst=burst)
            return exits.EXIT_OK
        # A child of `leaseq worker -p N`: if the supervisor dies (SIGKILL, OOM killer),
        # nothing would stop this process; it stops gracefully by itself instead.
        async with anyio.create_task_group() as tg:
            # The supervisor says its pid: one that died before this line is noticed too.
            parent = os.environ.get("LEASEQ_SUPERVISOR_PID", "")
            tg.start_soon(_stop_when_orphaned, w,
                          int(parent) if parent.isdigit() else os.getppid())
            await signals.run_worker(w, burst=burst)
            tg.cancel_scope.cancel()
        return exits.EXIT_OK

    # Room for every handler to use the client once, plus the worker's own connections.
    slots = DEFAULT_CONCURRENCY if concurrency is None else concurrency
    sys.exit(util.run(settings, go, max_connections=2 * slots + 64))


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


@click.command(cls=Command)
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
        # Signals first, so the reaper is stoppable by the time it says it started.
        with stop_signals() as signals:
            code = await util.await_redis(client, qs, settings.redis_url, signals)
            if code is not None:
                return code
            r = Reaper(*qs, interval=interval, metrics=metrics)
            async with anyio.create_task_group() as tg:
                tg.start_soon(r.run)
                if metrics is not None:
                    tg.start_soon(metrics.watch, qs)
                await signals.next()
                tg.cancel_scope.cancel()
        return exits.EXIT_OK

    sys.exit(util.run(settings, go))


# -- web ------------------------------------------------------------------------------------


@click.command(cls=Command)
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


@click.command(cls=Command)
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


COMMANDS = (worker, reaper, web, demo)
"""What this module adds to the ``leaseq`` group."""

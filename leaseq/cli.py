"""The ``leaseq`` command: workers, the reaper sidecar, enqueue, stats and admin.

Exit codes: 0 success; 1 the answer is "no" (job not found, problems found, aborted);
2 bad arguments; 3 Redis unreachable or credentials refused.
"""

from __future__ import annotations

import inspect
import json
import signal
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import click
import redis.asyncio as aioredis

from . import _cliutil as util
from . import _logsetup, doctor
from ._admin import registered_queues
from ._keys import validate_queue_name
from .exceptions import InvalidInput
from .metrics import Metrics
from .models import JobInfo
from .policy import Policy, Priority, Weighted
from .queue import Queue
from .reaper import Reaper
from .supervisor import Supervisor
from .worker import Worker

__all__ = ["main"]


def _queue_name(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    names = value if isinstance(value, tuple) else (value,)
    for name in names:
        if name is not None:
            try:
                validate_queue_name(name)
            except InvalidInput as exc:
                raise click.BadParameter(str(exc)) from None
    return value


QUEUE = click.option("--queue", "-q", "queue", required=True, callback=_queue_name,
                     help="Queue name.")
QUEUES = click.option("--queue", "-q", "queues", multiple=True, callback=_queue_name,
                      help="Queue name (repeat for several).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--redis", "redis_url", envvar="LEASEQ_REDIS_URL",
              default="redis://localhost:6379/0", show_default=True, show_envvar=True,
              help="Redis URL: redis://[user:password@]host:port/db, rediss:// (TLS) or "
                   "unix:///path/to/socket.")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), default="auto",
              show_default=True, help="auto: console on a terminal, JSON otherwise.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.version_option(package_name="leaseq")
@click.pass_context
def main(ctx: click.Context, redis_url: str, log_format: str, log_level: str) -> None:
    """leaseq: an at-least-once work queue on Redis with lease timeouts."""
    source = ctx.get_parameter_source("redis_url")
    given = source not in (None, click.core.ParameterSource.DEFAULT)
    ctx.obj = util.Settings(redis_url, log_format, log_level, given)
    _logsetup.configure(log_format, log_level)  # type: ignore[arg-type]


# -- worker ---------------------------------------------------------------------------------


@main.command()
@click.argument("target")
@click.option("--queue", "-q", "queues", multiple=True, required=True, callback=_queue_name,
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
@click.option("--lease-timeout", type=click.FloatRange(min=0.001), default=30.0,
              show_default=True, help="Default lease length in seconds.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=5, show_default=True)
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
           lease_timeout: float, max_attempts: int, job_timeout: float | None,
           grace_period: float, burst: bool, metrics_port: int | None,
           metrics_host: str) -> None:
    """Run a worker for TARGET, given as MODULE:ATTR.

    ATTR is a dict mapping task names to async handlers (served on every --queue), or a
    function that takes the Queue and returns a Worker (one --queue). SIGTERM/SIGINT stop
    gracefully; a second signal at once.
    """
    handlers = util.load_target(target)
    chosen = _policy(policy, weights, queues)
    if not isinstance(handlers, Mapping) and len(queues) > 1:
        raise click.UsageError("a Worker factory serves one --queue")
    if processes > 1:
        sys.exit(_supervise(settings, processes, metrics_port))
    metrics = None
    if metrics_port is not None:
        metrics = Metrics()
        metrics.serve(metrics_port, metrics_host)

    async def go(client: aioredis.Redis) -> None:
        qs = [Queue(client, name, lease_timeout=lease_timeout, max_attempts=max_attempts)
              for name in queues]
        q = qs[0]
        if isinstance(handlers, Mapping):
            w = Worker(dict.fromkeys(qs, handlers), policy=chosen, concurrency=concurrency,
                       reaper=reaper, job_timeout=job_timeout, grace_period=grace_period,
                       metrics=metrics)
        else:
            made = handlers(q)
            w = await made if inspect.isawaitable(made) else made
            if not isinstance(w, Worker):
                raise InvalidInput(f"{target} returned {type(w).__name__}, not a Worker")
        await w.run(burst=burst)

    # Room for every handler to use the client once, plus the worker's own connections.
    util.run(settings, go, max_connections=2 * concurrency + 64)


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


def _supervise(settings: util.Settings, processes: int, metrics_port: int | None) -> int:
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

    return anyio.run(Supervisor(argv_for, processes).run)


# -- reaper ---------------------------------------------------------------------------------


@main.command()
@QUEUES
@click.option("--interval", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="Seconds between sweeps.")
@click.option("--lease-timeout", type=click.FloatRange(min=0.001), default=30.0,
              show_default=True, help="Lease given to a lease key found without expiry.")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=None,
              help="Serve /metrics and /healthz on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.pass_obj
def reaper(settings: util.Settings, queues: tuple[str, ...], interval: float,
           lease_timeout: float, metrics_port: int | None, metrics_host: str) -> None:
    """Run the reaper sidecar for one or more queues until SIGTERM/SIGINT."""
    if not queues:
        raise click.UsageError("give at least one --queue")
    metrics = None
    if metrics_port is not None:
        metrics = Metrics()
        metrics.serve(metrics_port, metrics_host)

    async def go(client: aioredis.Redis) -> None:
        qs = [Queue(client, name, lease_timeout=lease_timeout) for name in queues]
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

    util.run(settings, go)


# -- enqueue --------------------------------------------------------------------------------


@main.command()
@QUEUE
@click.argument("task")
@click.argument("payload", required=False)
@click.option("--job-id", default=None, help="Explicit id (enqueue is a no-op if known).")
@click.option("--delay", type=click.FloatRange(min=0), default=None, help="Seconds to wait.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None)
@click.pass_obj
def enqueue(settings: util.Settings, queue: str, task: str, payload: str | None,
            job_id: str | None, delay: float | None, max_attempts: int | None) -> None:
    """Enqueue a TASK with a JSON PAYLOAD and print its id.

    Without PAYLOAD (or with -), read one JSON payload per line from stdin and enqueue
    them in pipelined batches, printing one id per line.
    """
    if payload is not None and payload != "-":
        value = _parse_json(payload, "PAYLOAD")

        async def one(client: aioredis.Redis) -> None:
            q = Queue(client, queue)
            click.echo(await q.enqueue(task, value, job_id=job_id, delay=delay,
                                       max_attempts=max_attempts))

        util.run(settings, one)
        return
    if job_id is not None:
        raise click.UsageError("--job-id needs a single PAYLOAD argument")

    async def many(client: aioredis.Redis) -> None:
        q = Queue(client, queue)
        line_no = 0
        while True:
            lines = await anyio.to_thread.run_sync(_read_lines, 1000)
            if not lines:
                return
            values = []
            for line in lines:
                line_no += 1
                if line.strip():
                    values.append(_parse_json(line, f"stdin line {line_no}"))
            for job in await q.enqueue_many(task, values, delay=delay,
                                            max_attempts=max_attempts):
                click.echo(job)

    util.run(settings, many)


def _read_lines(n: int) -> list[str]:
    lines = []
    for line in sys.stdin:
        lines.append(line)
        if len(lines) >= n:
            break
    return lines


def _parse_json(raw: str, where: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        util.fail(f"{where}: invalid JSON: {exc}", util.EXIT_USAGE)


# -- stats, inspect -------------------------------------------------------------------------


@main.command()
@QUEUES
@click.option("--watch", "-w", is_flag=True, help="Refresh a live table until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def stats(settings: util.Settings, queues: tuple[str, ...], watch: bool, interval: float,
          as_json: bool) -> None:
    """Counts per state, oldest lease age and throughput of queues (default: all known)."""
    from . import _clistats

    util.run(settings, lambda client: _clistats.show(client, queues, watch, interval, as_json))


@main.command("inspect")
@click.argument("job_id")
@QUEUES
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def inspect_(settings: util.Settings, job_id: str, queues: tuple[str, ...],
             as_json: bool) -> None:
    """Show everything recorded about JOB_ID (searches every known queue by default)."""

    async def go(client: aioredis.Redis) -> int:
        names = list(queues) or await registered_queues(client)
        for name in names:
            info = await Queue(client, name).job(job_id)
            if info is not None:
                _print_job(name, info, as_json)
                return util.EXIT_OK
        click.echo(f"leaseq: no job {job_id!r} in {', '.join(names) or 'any queue'}",
                   err=True)
        return util.EXIT_FAILURE

    sys.exit(util.run(settings, go))


def _job_dict(queue: str, info: JobInfo) -> dict[str, Any]:
    out = {"queue": queue}
    for name in info.__slots__:
        value = getattr(info, name)
        out[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return out


def _print_job(queue: str, info: JobInfo, as_json: bool) -> None:
    data = _job_dict(queue, info)
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        click.echo(f"{key:<{width}}  {shown}")


# -- dead -----------------------------------------------------------------------------------


@main.group()
def dead() -> None:
    """List, requeue or purge dead jobs."""


@dead.command("list")
@QUEUE
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def dead_list(settings: util.Settings, queue: str, limit: int, as_json: bool) -> None:
    """Show dead jobs with their reasons."""

    async def go(client: aioredis.Redis) -> None:
        for info in await Queue(client, queue).dead_jobs(limit):
            if as_json:
                click.echo(json.dumps(_job_dict(queue, info), default=str))
            else:
                reason = (info.dead_reason or "").splitlines()[0] if info.dead_reason else "?"
                click.echo(f"{info.job_id}\t{info.task}\t{reason}")

    util.run(settings, go)


def _confirm(action: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        util.fail(f"refusing to {action} without --yes (stdin is not a terminal)")
    if not click.confirm(f"{action}?"):
        util.fail("aborted")


def _dead_action(verb: str) -> Any:
    @dead.command(verb)
    @QUEUE
    @click.argument("job_ids", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="Every dead job of the queue.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @click.pass_obj
    def action(settings: util.Settings, queue: str, job_ids: tuple[str, ...], all_: bool,
               yes: bool) -> None:
        if bool(job_ids) == all_:
            raise click.UsageError("give JOB_IDS or --all (not both)")
        what = "all dead jobs" if all_ else f"{len(job_ids)} dead job(s)"
        _confirm(f"{verb} {what} of queue {queue!r}", yes)

        async def go(client: aioredis.Redis) -> None:
            q = Queue(client, queue)
            ids = None if all_ else list(job_ids)
            n = await (q.requeue_dead(ids) if verb == "requeue" else q.purge_dead(ids))
            click.echo(f"{verb}d {n} job(s)")

        util.run(settings, go)

    action.__doc__ = {
        "requeue": "Put dead jobs back in todos with fresh attempts.",
        "purge": "Delete dead jobs for good.",
    }[verb]
    return action


dead_requeue = _dead_action("requeue")
dead_purge = _dead_action("purge")


# -- doctor ---------------------------------------------------------------------------------


@main.command("doctor")
@QUEUES
@click.option("--repair", is_flag=True, help="Fix what can be fixed safely.")
@click.pass_obj
def doctor_(settings: util.Settings, queues: tuple[str, ...], repair: bool) -> None:
    """Check the server's settings and the queues' integrity (default: all known)."""
    marks = {"ok": "ok  ", "info": "info", "warning": "WARN", "error": "FAIL"}

    async def go(client: aioredis.Redis) -> int:
        names = list(queues) or await registered_queues(client)
        report = doctor.Report()
        qs = [Queue(client, name) for name in names]
        await doctor.check_server(qs[0] if qs else Queue(client, "doctor"), report)
        for q in qs:
            await doctor.check_queue(q, report, repair=repair)
        for f in report.findings:
            suffix = " (repaired)" if f.repaired else ""
            click.echo(f"{marks[f.severity]}  {f.check}: {f.message}{suffix}")
        return util.EXIT_FAILURE if report.problems else util.EXIT_OK

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
        from .web import _serve
    except ImportError as exc:
        util.fail(f"leaseq web needs the web extra (pip install 'leaseq[web]'): {exc}",
                  util.EXIT_USAGE)
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
    from . import _demo

    sys.exit(_demo.run(settings, jobs, workers, keep))

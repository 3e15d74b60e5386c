"""The ``leaseq`` command: workers, the reaper sidecar, enqueue, stats and admin.

Exit codes: 0 success; 1 the answer is "no" (job not found, problems found, aborted);
2 bad arguments; 3 Redis unreachable, credentials or permissions refused, or not a usable
Redis server; 130 interrupted (Ctrl-C) before the work was done; 141 stdout was closed
(``| head``), quietly.
"""

from __future__ import annotations

import click

from . import cancel, dead, enqueue, logsetup, ops, reads, run, schedules, util
from .params import LOG_FORMATS, LOG_LEVELS, Group

__all__ = ["main"]


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


# `leaseq --help` lists the commands by name, so the order they are added in is free.
for _command in (*run.COMMANDS, *enqueue.COMMANDS, *reads.COMMANDS, *dead.COMMANDS,
                 *ops.COMMANDS, *schedules.COMMANDS, *cancel.COMMANDS):
    main.add_command(_command)

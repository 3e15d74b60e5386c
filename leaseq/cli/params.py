"""The command line's shared parameters (queue options) and its command classes (which
take ``--log-format`` and ``--log-level`` after a subcommand's name too)."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from ..exceptions import InvalidInput
from ..protocol.keys import validate_queue_name
from . import logsetup, util


def queue_name(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: every given queue name must be valid."""
    names = value if isinstance(value, tuple) else (value,)
    for name in names:
        if name is not None:
            try:
                validate_queue_name(name)
            except InvalidInput as exc:
                raise click.BadParameter(str(exc)) from None
    return value


QUEUE = click.option("--queue", "-q", "queue", required=True, callback=queue_name,
                     help="Queue name.")
QUEUES = click.option("--queue", "-q", "queues", multiple=True, callback=queue_name,
                      help="Queue name (repeat for several).")


LOG_FORMATS = click.Choice(["auto", "console", "json"])
LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"])


class Command(click.Command):
    """A subcommand that also takes the group's ``--log-format`` and ``--log-level`` after
    its name (``leaseq worker ... --log-format json``); given there, they win."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params += [
            click.Option(["--log-format", "sub_log_format"], type=LOG_FORMATS, default=None,
                         help="As `leaseq --log-format`, given after the command."),
            click.Option(["--log-level", "sub_log_level"], type=LOG_LEVELS, default=None,
                         help="As `leaseq --log-level`, given after the command."),
        ]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Every option also reads LEASEQ_<COMMAND>_<OPTION> (LEASEQ_WORKER_CONCURRENCY,
        # LEASEQ_DEAD_LIST_LIMIT), listed in --help: containers configure by environment.
        # Named here, where the command's path is known (before --help is rendered).
        names, outer = [], ctx
        while outer.parent is not None:  # the root is `leaseq` (or `python -m leaseq`)
            names.append(outer.info_name or "")
            outer = outer.parent
        path = "_".join(reversed(names)).upper().replace("-", "_")
        for param in self.params:
            if isinstance(param, click.Option) and param.envvar is None:
                flag = max(param.opts, key=len).lstrip("-").upper().replace("-", "_")
                param.envvar = f"LEASEQ_{path}_{flag}"
                param.show_envvar = True
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        fmt = ctx.params.pop("sub_log_format", None)
        level = ctx.params.pop("sub_log_level", None)
        settings = ctx.find_object(util.Settings)
        if settings is not None and (fmt is not None or level is not None):
            ctx.obj = dataclasses.replace(settings, log_format=fmt or settings.log_format,
                                          log_level=level or settings.log_level)
            logsetup.configure(ctx.obj.log_format, ctx.obj.log_level)
        return super().invoke(ctx)


class Group(click.Group):
    command_class = Command
    group_class = type  # subgroups (`dead`) are _Group too, so their commands are _Command



"""Plumbing of the command line: Redis clients, error handling, exit codes, loading."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TypeVar

import anyio
import click
import redis.asyncio as aioredis
from redis.exceptions import (
    RedisError,
)

from ..exceptions import LeaseqError
from ..protocol.keys import QUEUES_KEY
from ..protocol.wire import redis_failure
from ..runtime.outage import Outage

if TYPE_CHECKING:
    from ..protocol.queue import Queue
    from .signals import Signals

from .connect import close_client, make_client
from .errors import describe, first_line, hint, permanent, single
from .exits import EXIT_BROKEN_PIPE, EXIT_OK, EXIT_UNREACHABLE, Failure, fail, notice

T = TypeVar("T")

@dataclass(frozen=True, slots=True)
class Settings:
    """Options of the ``leaseq`` group, shared by every command."""

    redis_url: str
    log_format: str
    log_level: str
    redis_url_given: bool = False
    """Whether the URL came from --redis or LEASEQ_REDIS_URL rather than the default."""


def loop_options() -> dict[str, bool]:
    """anyio's options for the command's event loop: uvloop when it is installed (the
    ``fast`` extra; about 8% less worker CPU per job, measured), unless
    ``LEASEQ_EVENT_LOOP=asyncio`` asks for the standard library's loop."""
    if os.environ.get("LEASEQ_EVENT_LOOP", "").strip().lower() == "asyncio":
        return {}
    try:
        import uvloop  # noqa: F401 - only whether it is there
    except ImportError:
        return {}
    return {"use_uvloop": True}


def run(settings: Settings, main: Callable[[aioredis.Redis], Awaitable[T]],
        max_connections: int | None = None) -> T:
    """Run ``main(client)`` on a fresh event loop; turn known errors into one-line
    messages and exit codes (never a traceback). A closed stdout ends the command quietly
    with :data:`EXIT_BROKEN_PIPE`."""
    client = make_client(settings.redis_url, max_connections)

    async def wrapper() -> T:
        try:
            return await main(client)
        except Exception as exc:
            leaf = single(exc)
            if leaf is exc:
                raise
            raise leaf from None
        finally:
            with anyio.CancelScope(shield=True):
                await close_client(client)

    try:
        return anyio.run(wrapper, backend_options=loop_options())
    except Failure as exc:
        fail(exc.message, exc.code)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            broken_pipe()
        described = describe(exc, settings.redis_url)
        if described is None:
            raise
        fail(*described)
    except (RedisError, LeaseqError) as exc:
        described = describe(exc, settings.redis_url)
        if described is None:
            raise
        fail(*described)


def broken_pipe() -> NoReturn:
    """Exit quietly because stdout's reader went away (``| head``)."""
    # Point stdout at /dev/null so the interpreter's last flush cannot fail again and
    # print "Exception ignored ... BrokenPipeError".
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
    sys.exit(EXIT_BROKEN_PIPE)


_PROBE_SCRIPT = "return 1"


async def await_redis(client: aioredis.Redis, queues: Sequence[Queue], url: str,
                      signals: Signals) -> int | None:
    """The start-up round trip of ``worker`` and ``reaper``: PING, then prepare each queue
    (registry, epoch marker: key permissions) and run a no-op script on its keys the way
    leaseq runs its own (SCRIPT LOAD, EVALSHA: scripting permission).

    Returns ``None`` once Redis answered. An error that cannot heal (:func:`permanent`)
    is printed as the one line other commands print, and its exit code returned; one
    that can (connection refused, timeout, a loading server) is logged once
    (``redis_unavailable``, component ``startup``) and retried with a backoff up to 5 s.
    A signal from ``signals`` while waiting returns :data:`EXIT_OK`.
    """
    outage = Outage("startup", queues=[q.name for q in queues])

    async def probe() -> BaseException | None:
        backoff = 0.05
        while True:
            try:
                await client.ping()
                for q in queues:
                    await q.prepare()
                    # As leaseq runs its scripts: SCRIPT LOAD, then EVALSHA on its keys.
                    sha = await client.script_load(_PROBE_SCRIPT)
                    await client.evalsha(sha, 1, q.keys.meta)
                outage.ok()
                return None
            except Exception as exc:
                if not redis_failure(exc):
                    raise
                if permanent(exc):
                    return exc
                outage.failed(exc, retry_in=backoff, **hint(exc, url))
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    error, signum = await signals.until(probe)
    if signum is not None:
        return EXIT_OK
    if error is None:
        return None
    message, code = describe(error, url) or (first_line(error), EXIT_UNREACHABLE)
    click.echo(f"leaseq: {message}", err=True)
    return code


async def warn_unknown_queues(client: aioredis.Redis, names: Sequence[str]) -> None:
    """Say on stderr which of ``names`` the server's queue registry does not hold (a typo
    reads as an empty queue otherwise)."""
    if not names:
        return
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.sismember(QUEUES_KEY, name)
        known = await pipe.execute()
    for name, found in zip(names, known, strict=True):
        if not found:
            notice(f"queue {name} is not known on this server (no job was ever enqueued)")


def duration(seconds: float | None) -> str:
    """Seconds for a table column: ``42.0s``, ``3.5m``, ``2.1h``, ``1.0d``; ``-`` for
    none, and nothing below zero."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"

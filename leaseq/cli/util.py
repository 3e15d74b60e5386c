"""Plumbing of the command line: Redis clients, error handling, exit codes, loading."""

from __future__ import annotations

import errno
import importlib
import inspect
import os
import re
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import anyio
import click
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    InvalidResponse,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import LeaseqError
from ..protocol.keys import QUEUES_KEY
from ..protocol.wire import redis_failure
from ..runtime.outage import Outage

if TYPE_CHECKING:
    from ..protocol.queue import Queue

T = TypeVar("T")

EXIT_OK = 0
"""Success."""
EXIT_FAILURE = 1
"""The command ran but the answer is "no": job not found, problems found, aborted."""
EXIT_USAGE = 2
"""Bad arguments (click's convention)."""
EXIT_UNREACHABLE = 3
"""Redis could not be reached, refused our credentials or permissions, or what answered
is not a usable Redis server (protocol or TLS error, a command leaseq needs is missing)."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (SIGINT) before the work was done (128 + SIGINT, the shell's way)."""
EXIT_BROKEN_PIPE = 141
"""The reader of stdout went away (``leaseq dead list | head -1``): 128 + SIGPIPE, what a
shell reports for a program that SIGPIPE ended. Nothing is printed."""

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")


@dataclass(frozen=True, slots=True)
class Settings:
    """Options of the ``leaseq`` group, shared by every command."""

    redis_url: str
    log_format: str
    log_level: str
    redis_url_given: bool = False
    """Whether the URL came from --redis or LEASEQ_REDIS_URL rather than the default."""


def redact(url: str) -> str:
    """The URL with its password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def make_client(url: str, max_connections: int | None = None) -> aioredis.Redis:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs, or a Redis
    Cluster client for ``redis+cluster://host:port`` (any node as the seed); user and
    password (ACL) may be given in the URL. ``max_connections`` sizes the pool."""
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise click.BadParameter(
            f"{redact(url)!r}: use redis://, rediss://, unix://, redis+cluster:// or "
            "redis+sentinel://",
            param_hint="--redis")
    if scheme == "redis+sentinel":
        return sentinel_client(url, max_connections)
    if scheme.endswith("+cluster"):
        plain = url.replace("+cluster", "", 1)
        return RedisCluster.from_url(  # type: ignore[return-value]
            plain, socket_connect_timeout=5.0, max_connections=max_connections or 2**31)
    if scheme == "rediss":
        _check_tls_files(url)
    try:
        return aioredis.Redis.from_url(url, socket_connect_timeout=5.0,
                                       max_connections=max_connections)
    except ValueError as exc:
        raise click.BadParameter(f"{redact(url)!r}: {exc}", param_hint="--redis") from exc


def _check_tls_files(url: str) -> None:
    """A certificate or key named in the URL that is not a readable file is a usage error
    (redis-py would report it at every connection attempt, as a connection error)."""
    query = parse_qs(urlsplit(url).query)
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        for path in query.get(name, []):
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise click.BadParameter(f"{name}={path}: no such readable file",
                                         param_hint="--redis")


def sentinel_client(url: str, max_connections: int | None = None) -> aioredis.Redis:
    """``redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/DB]``: a client
    of the service's current master, which follows failovers."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise click.BadParameter(f"{redact(url)!r}: name the master: .../SERVICE[/DB]",
                                 param_hint="--redis")
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter(f"{redact(url)!r}: sentinel hosts are host:port",
                                     param_hint="--redis")
        hosts.append((host, int(port)))
    kwargs: dict[str, Any] = {"socket_connect_timeout": 5.0, "db": int(path[1])
                              if len(path) > 1 and path[1].isdigit() else 0}
    if parts.password is not None:
        kwargs["password"] = parts.password
    if parts.username:
        kwargs["username"] = parts.username
    if max_connections:
        kwargs["max_connections"] = max_connections
    sentinel = Sentinel(hosts, socket_connect_timeout=5.0)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(path[0], **kwargs)
    return client


async def close_client(client: aioredis.Redis) -> None:
    """Close a client, and for a Sentinel client the connections to the sentinels too."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


class Failure(Exception):
    """Raised inside a command's coroutine to end it as :func:`fail` would (``run`` prints
    ``leaseq: message`` and exits with ``code``): ``sys.exit`` inside a task group would
    come out as an exception group."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``leaseq: message`` to stderr and exit with ``code``."""
    click.echo(f"leaseq: {message}", err=True)
    sys.exit(code)


def notice(message: str) -> None:
    """Print ``leaseq: message`` to stderr (a remark; the command goes on)."""
    click.echo(f"leaseq: {message}", err=True)


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
            leaf = _single(exc)
            if leaf is exc:
                raise
            raise leaf from None
        finally:
            with anyio.CancelScope(shield=True):
                await close_client(client)

    try:
        return anyio.run(wrapper)
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


def _single(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one member each (a task
    group wraps what a task raised), else ``exc`` itself."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if not isinstance(inner, tuple) or len(inner) != 1:
            return exc
        exc = inner[0]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    return next((e for e in _chain(exc) if isinstance(e, ssl.SSLError)), None)


def _unknown_command(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and "unknown command" in str(exc).lower()


def permanent(exc: BaseException) -> bool:
    """Whether a Redis error cannot heal by waiting, so a worker or reaper must not start
    (and retry forever): credentials or permissions refused, a server that does not speak
    the Redis protocol, a TLS failure, a command leaseq needs is missing, or a server that
    denies clients (protected mode). Connection refused, timeouts, a loading, read-only,
    out-of-memory or busy server do heal."""
    if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError,
                        NoPermissionError, InvalidResponse)):
        return True
    if _tls_error(exc) is not None or _unknown_command(exc):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith("DENIED")


def describe(exc: BaseException, url: str) -> tuple[str, int] | None:
    """The one-line message and exit code for an error of a command, or ``None`` for an
    error this module does not know (a bug: the traceback is worth having)."""
    where = redact(url)
    if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError)):
        return f"Redis at {where} refused the credentials: {_first_line(exc)}", \
            EXIT_UNREACHABLE
    if isinstance(exc, NoPermissionError):
        return f"Redis at {where} refused a command (ACL): {_first_line(exc)}", \
            EXIT_UNREACHABLE
    if isinstance(exc, InvalidResponse):
        return (f"cannot reach Redis at {where}: what answered does not speak the Redis "
                f"protocol ({_first_line(exc)})"), EXIT_UNREACHABLE
    tls = _tls_error(exc)
    if tls is not None:
        return f"cannot reach Redis at {where}: TLS error: {_first_line(tls)}", \
            EXIT_UNREACHABLE
    if isinstance(exc, MasterNotFoundError):
        return f"cannot reach Redis at {where}: {_short_sentinel(str(exc))}", \
            EXIT_UNREACHABLE
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError)):
        return f"cannot reach Redis at {where}: {_first_line(exc)}", EXIT_UNREACHABLE
    if _unknown_command(exc):
        return (f"Redis at {where} lacks a command leaseq needs: {_first_line(exc)}",
                EXIT_UNREACHABLE)
    if isinstance(exc, ResponseError) and str(exc).startswith("DENIED"):
        return f"Redis at {where} denied the connection: {_first_line(exc)}", \
            EXIT_UNREACHABLE
    if isinstance(exc, (ResponseError, RedisClusterException)):
        return f"Redis error: {_first_line(exc)}", EXIT_FAILURE
    if isinstance(exc, RedisError):
        return f"Redis error: {type(exc).__name__}: {_first_line(exc)}", EXIT_FAILURE
    if isinstance(exc, LeaseqError):
        return str(exc), EXIT_FAILURE
    return None


def _short_sentinel(message: str) -> str:
    """redis-py's "No master found" lists the repr of every sentinel client (1,000
    characters each); keep the service, each sentinel's address and what went wrong."""
    head, _, rest = message.partition(" : ")
    asked = re.findall(r"host=([^,>]+),port=(\d+),.*?\)>\)>\)> - ([^,]+)", rest)
    if not asked:
        return head
    return f"{head} (" + "; ".join(f"sentinel {h}:{p}: {e.strip()[:80]}"
                                   for h, p, e in asked) + ")"


_PIPELINE_ERROR = re.compile(r"^Command # \d+ \((?P<command>.*?)\) of pipeline caused error: "
                             r"(?:\('(?P<quoted>.*)',\)|(?P<plain>.*))$")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    # redis-py's pipelines wrap an error as "Command # 1 (SADD k v) of pipeline caused
    # error: ('message',)"; say "message (SADD k v)".
    match = _PIPELINE_ERROR.match(line)
    if match:
        return f"{match['quoted'] or match['plain']} ({match['command']})"
    return line


async def until_signal(body: Callable[[], Awaitable[T]],
                       *signums: signal.Signals) -> tuple[T | None, int | None]:
    """Run ``body()``; the first of ``signums`` to arrive cancels it. Returns
    ``(result, None)``, or ``(None, signum)`` when a signal ended it. Exceptions of the
    body come out as themselves, not in an exception group."""
    received: list[int] = []
    results: list[T] = []
    errors: list[Exception] = []
    with anyio.open_signal_receiver(*signums) as signals:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                async for signum in signals:
                    received.append(signum)
                    tg.cancel_scope.cancel()
                    return

            tg.start_soon(watch)
            try:
                results.append(await body())
            except Exception as exc:  # re-raised below, outside the task group
                errors.append(exc)
            tg.cancel_scope.cancel()
    if errors:
        raise errors[0]
    return (results[0] if results else None), (received[0] if received else None)


_PROBE_SCRIPT = "return 1"


async def await_redis(client: aioredis.Redis, queues: Sequence[Queue], url: str) -> int | None:
    """The start-up round trip of ``worker`` and ``reaper``: PING, then prepare each queue
    (registry, epoch marker: key permissions) and run a no-op script on its keys the way
    leaseq runs its own (SCRIPT LOAD, EVALSHA: scripting permission).

    Returns ``None`` once Redis answered. An error that cannot heal (:func:`permanent`)
    is printed as the one line other commands print, and its exit code returned; one
    that can (connection refused, timeout, a loading server) is logged once
    (``redis_unavailable``, component ``startup``) and retried with a backoff up to 5 s.
    SIGTERM/SIGINT while waiting return :data:`EXIT_OK`.
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
                outage.failed(exc, retry_in=backoff, **_hint(exc, url))
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    error, signum = await until_signal(probe, signal.SIGTERM, signal.SIGINT)
    if signum is not None:
        return EXIT_OK
    if error is None:
        return None
    message, code = describe(error, url) or (_first_line(error), EXIT_UNREACHABLE)
    click.echo(f"leaseq: {message}", err=True)
    return code


def _hint(exc: BaseException, url: str) -> dict[str, str]:
    """Advice for the start-up log line when an error that may heal smells of a TLS
    mismatch (both look like a server that hangs up or never answers)."""
    scheme = urlsplit(url).scheme
    if scheme == "redis" and isinstance(exc, RedisConnectionError) and any(
            isinstance(e, ConnectionResetError) for e in _chain(exc)):
        return {"hint": "a TLS-only port resets plain connections: rediss:// ?"}
    if scheme == "rediss" and isinstance(exc, RedisTimeoutError):
        return {"hint": "a TLS handshake with a plain-text port times out: redis:// ?"}
    return {}


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


def load_target(spec: str) -> Any:
    """Import ``MODULE:ATTR`` (the current directory is importable, as with uvicorn); a
    target that cannot serve is one line on stderr and :data:`EXIT_USAGE`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        _bad_target(spec, ": expected MODULE:ATTR")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        _bad_target(spec, f": cannot import {module_name!r}: {exc}")
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            _bad_target(spec, f": {module_name!r} has no attribute {attr!r}")
    expected = ("expected a dict of task handlers ({'name': handler, ...}) or a function "
                "that takes a Queue and returns a Worker")
    if not isinstance(obj, Mapping) and not callable(obj):
        _bad_target(spec, f" is of type {type(obj).__name__}; {expected}")
    if not isinstance(obj, Mapping) and not _takes_one_argument(obj):
        what = "a handler" if inspect.iscoroutinefunction(obj) else "a callable"
        _bad_target(spec, f" is {what} taking {_parameters(obj)}; {expected}")
    return obj


def _bad_target(spec: str, problem: str) -> NoReturn:
    fail(f"TARGET {spec!r}{problem}", EXIT_USAGE)


def _takes_one_argument(obj: Any) -> bool:
    try:
        inspect.signature(obj).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): let the call decide
        return True
    return True


def _parameters(obj: Any) -> str:
    try:
        names = list(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return "unknown arguments"
    return f"({', '.join(names)})"

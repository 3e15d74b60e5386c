"""Plumbing of the command line: Redis clients, error handling, exit codes, loading."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import click
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import AuthenticationError, RedisClusterException, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .exceptions import LeaseqError

T = TypeVar("T")

EXIT_OK = 0
"""Success."""
EXIT_FAILURE = 1
"""The command ran but the answer is "no": job not found, problems found, aborted."""
EXIT_USAGE = 2
"""Bad arguments (click's convention)."""
EXIT_UNREACHABLE = 3
"""Redis could not be reached (or refused our credentials)."""

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
    try:
        return aioredis.Redis.from_url(url, socket_connect_timeout=5.0,
                                       max_connections=max_connections)
    except ValueError as exc:
        raise click.BadParameter(f"{redact(url)!r}: {exc}", param_hint="--redis") from exc


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


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``leaseq: message`` to stderr and exit with ``code``."""
    click.echo(f"leaseq: {message}", err=True)
    sys.exit(code)


def run(settings: Settings, main: Callable[[aioredis.Redis], Awaitable[T]],
        max_connections: int | None = None) -> T:
    """Run ``main(client)`` on a fresh event loop; turn known errors into one-line
    messages and exit codes (never a traceback)."""
    client = make_client(settings.redis_url, max_connections)

    async def wrapper() -> T:
        try:
            return await main(client)
        finally:
            with anyio.CancelScope(shield=True):
                await close_client(client)

    try:
        return anyio.run(wrapper)
    except AuthenticationError as exc:
        fail(f"Redis at {redact(settings.redis_url)} refused the credentials: {exc}",
             EXIT_UNREACHABLE)
    except (RedisConnectionError, RedisTimeoutError, ConnectionError) as exc:
        fail(f"cannot reach Redis at {redact(settings.redis_url)}: {_first_line(exc)}",
             EXIT_UNREACHABLE)
    except (ResponseError, RedisClusterException) as exc:
        fail(f"Redis error: {exc}")
    except LeaseqError as exc:
        fail(str(exc))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def load_target(spec: str) -> Any:
    """Import ``MODULE:ATTR`` (the current directory is importable, as with uvicorn)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"{spec!r}: expected MODULE:ATTR", param_hint="TARGET")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}",
                                 param_hint="TARGET") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise click.BadParameter(f"{module_name!r} has no attribute {attr!r}",
                                     param_hint="TARGET") from None
    if not isinstance(obj, Mapping) and not callable(obj):
        raise click.BadParameter(
            f"{spec!r} is a {type(obj).__name__}: expected a dict of task handlers or a "
            "function that takes a Queue and returns a Worker", param_hint="TARGET")
    return obj

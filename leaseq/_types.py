"""Type aliases shared by the modules (kept apart to avoid import cycles)."""

from __future__ import annotations

from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.exceptions import (
    AskError,
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Clients may be created with or without ``decode_responses``; leaseq copes with both.
AnyRedis: TypeAlias = "aioredis.Redis"
AnyPipeline: TypeAlias = "aioredis.client.Pipeline"


RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError,
             ClusterError, TryAgainError, AskError)
"""Errors after which a call may be tried again: the connection failed, not the command;
or a cluster refused it for now (its slot moving: ASK, MOVED, TRYAGAIN, redis-py's
"TTL exhausted" after too many of those; CLUSTERDOWN while a master fails over)."""

REFUSED = (OutOfMemoryError, ReadOnlyError)
"""Refusals redis-py has a class for that pass by themselves (LOADING, MASTERDOWN,
CLUSTERDOWN and TRYAGAIN already derive from the :data:`RETRYABLE` classes)."""

_REFUSAL_CODES = frozenset(
    {"OOM", "BUSY", "MISCONF", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN",
     "CLUSTERDOWN", "NOREPLICAS"})


def retryable(exc: BaseException) -> bool:
    """Whether a call that raised ``exc`` may succeed if tried again later: the
    connection failed (:data:`RETRYABLE`), or the server refused the command for a
    reason that passes (out of memory under ``noeviction``, BUSY running another
    client's script, MISCONF after a failed save, LOADING, READONLY while a replica,
    MASTERDOWN, TRYAGAIN, CLUSTERDOWN, NOREPLICAS). Such a refused command did not run."""
    if isinstance(exc, RETRYABLE + REFUSED):
        return True
    if isinstance(exc, ResponseError):
        # Codes redis-py has no class for keep their code at the start of the message;
        # inside a transaction redis-py rewrites it to "Command # N (...) of pipeline
        # caused error: ('MISCONF ...',)".
        message = str(exc)
        marker = "of pipeline caused error: ("
        if marker in message:
            message = message.split(marker, 1)[1].lstrip("'\"")
        return message.split(" ", 1)[0] in _REFUSAL_CODES
    return False


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an error, for a log field (redis-py's ``repr`` of its errors
    drops the message)."""
    return f"{type(exc).__name__}: {exc}"


def text(value: Any) -> str:
    """A reply value as ``str`` whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def opt_text(value: Any) -> str | None:
    """Like :func:`text`, keeping ``None``."""
    return None if value is None else text(value)


def opt_int(value: Any) -> int | None:
    """An integer reply or hash field, keeping ``None``; a field that is not an integer
    (written behind the queue's back) reads as ``None`` rather than failing the read."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is redis-py's (asyncio) ``RedisCluster``."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)

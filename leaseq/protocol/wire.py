"""Type aliases shared by the modules (kept apart to avoid import cycles)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import anyio
import redis
import redis.asyncio as aioredis
from redis.exceptions import (
    AskError,
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Clients may be created with or without ``decode_responses``; leaseq copes with both.
AnyRedis: TypeAlias = "aioredis.Redis"
AnyPipeline: TypeAlias = "aioredis.client.Pipeline"


RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError,
             ClusterError, TryAgainError, AskError, SlotNotCoveredError)
"""Errors after which a call may be tried again: the connection failed, not the command;
or a cluster refused it for now (its slot moving: ASK, MOVED, TRYAGAIN, redis-py's
"TTL exhausted" after too many of those; CLUSTERDOWN while a master fails over; a slot
redis-py's map shows uncovered while it migrates, which is not a ``RedisError``)."""

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
"""The connection failed (or timed out) under a call: whether the call ran is unknown."""

REFUSED = (OutOfMemoryError, ReadOnlyError)
"""Refusals redis-py has a class for that pass by themselves (LOADING, MASTERDOWN,
CLUSTERDOWN and TRYAGAIN already derive from the :data:`RETRYABLE` classes)."""

_REFUSAL_CODES = frozenset(
    {"OOM", "BUSY", "MISCONF", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN",
     "CLUSTERDOWN", "NOREPLICAS"})


_TRANSPORT_DIRS = (os.path.dirname(redis.__file__) + os.sep,
                   os.path.dirname(asyncio.__file__) + os.sep)


def broken_connection(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection that broke under redis-py without being reported
    as one: a pooled connection torn down while a command was being written (by a
    cluster client replacing a node whose slots moved, or by the peer's reset) leaks
    ``AttributeError: 'NoneType' object has no attribute 'writelines'`` or
    ``TypeError: 'NoneType' object is not callable`` from redis-py's connection or
    asyncio's transport. Nothing was written, and redis-py has already dropped the
    connection; only the error's class is wrong. Errors of those classes raised anywhere
    else (leaseq's own code, a handler) are not connection failures."""
    if not isinstance(exc, (AttributeError, TypeError)):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(_TRANSPORT_DIRS)


@contextmanager
def connection_errors() -> Iterator[None]:
    """Report a :func:`broken_connection` as the ``ConnectionError`` it is, so callers
    (and their retries) see one kind of connection failure."""
    try:
        yield
    except (AttributeError, TypeError) as exc:
        if broken_connection(exc):
            raise RedisConnectionError(f"connection broke: {error_text(exc)}") from exc
        raise


def redis_failure(exc: BaseException) -> bool:
    """Whether a call to Redis that raised ``exc`` failed at Redis or on the way there
    (any redis-py error, an ``OSError``, or a :func:`broken_connection`) rather than in
    the caller's own code."""
    return (isinstance(exc, (RedisError, OSError, SlotNotCoveredError))
            or broken_connection(exc))


def retryable(exc: BaseException) -> bool:
    """Whether a call that raised ``exc`` may succeed if tried again later: the
    connection failed (:data:`RETRYABLE`), or the server refused the command for a
    reason that passes (out of memory under ``noeviction``, BUSY running another
    client's script, MISCONF after a failed save, LOADING, READONLY while a replica,
    MASTERDOWN, TRYAGAIN, CLUSTERDOWN, NOREPLICAS). Such a refused command did not run."""
    if isinstance(exc, RETRYABLE + REFUSED) or broken_connection(exc):
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


_CLUSTER_TYPES: dict[type, bool] = {}


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is redis-py's (asyncio) ``RedisCluster``."""
    # By type, remembered: RedisCluster derives from typing.Protocol, whose isinstance
    # costs a microsecond, and every script call asks.
    kind = type(client)
    known = _CLUSTER_TYPES.get(kind)
    if known is None:
        from redis.asyncio.cluster import RedisCluster

        known = _CLUSTER_TYPES[kind] = issubclass(kind, RedisCluster)
    return known


async def close_pubsub(pubsub: Any) -> None:
    """Close a subscription, shielded and within a second; a Redis failure while closing
    is ignored (the connection is gone either way)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
        try:
            await pubsub.aclose()
        except Exception as exc:
            if not redis_failure(exc):
                raise


async def subscribe(pubsub: Any, channels: Any, cluster: bool) -> None:
    """Subscribe to the queue channels ``channels`` (shard channels on a cluster, where
    a queue's channels live with its slot); a torn connection is a ``ConnectionError``."""
    with connection_errors():
        if cluster:
            await pubsub.ssubscribe(*channels)
        else:
            await pubsub.subscribe(*channels)


async def next_message(pubsub: Any, cluster: bool, timeout: float) -> dict[str, Any] | None:
    """The next published message of a :func:`subscribe`, or ``None`` after ``timeout``
    seconds (subscribe confirmations skipped)."""
    with connection_errors():
        if cluster:
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True,
                                                       timeout=timeout)
        else:
            message = await pubsub.get_message(ignore_subscribe_messages=True,
                                               timeout=timeout)
    if message is None or message.get("type") not in ("message", "smessage"):
        return None
    return dict(message)

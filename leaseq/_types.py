"""Type aliases shared by the modules (kept apart to avoid import cycles)."""

from __future__ import annotations

from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.exceptions import AskError, ClusterError, TryAgainError
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


def text(value: Any) -> str:
    """A reply value as ``str`` whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def opt_text(value: Any) -> str | None:
    """Like :func:`text`, keeping ``None``."""
    return None if value is None else text(value)


def opt_int(value: Any) -> int | None:
    """An integer reply or hash field, keeping ``None``."""
    return None if value is None else int(value)


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is redis-py's (asyncio) ``RedisCluster``."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)

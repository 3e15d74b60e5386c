"""The ack's WATCH/MULTI/EXEC on one pooled connection (protocol/tx.py): a long one
commits every command, an error among the queued replies is raised, and the connection
it came on is closed, never lent out again with replies left unread."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from leaseq.protocol.tx import watch_read_exec

pytestmark = pytest.mark.real_redis


async def test_a_long_transaction_commits_every_command(real_redis: aioredis.Redis):
    await real_redis.set("w", "1")

    def decide(values: Any) -> list[tuple[Any, ...]]:
        assert values == [b"1"]
        return [("HSET", "h", f"f{i}", i) for i in range(2000)]

    for _ in range(3):
        assert await watch_read_exec(real_redis, ["w"], decide) is True
    assert await real_redis.hlen("h") == 2000
    await assert_clean(real_redis)


async def assert_clean(client: aioredis.Redis) -> None:
    """Every pooled connection answers its own commands: none was given back with a
    reply of an earlier call still unread."""
    for i in range(20):
        assert await client.echo(f"ping-{i}") == f"ping-{i}".encode()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_an_error_while_queueing_is_raised_and_the_connection_dropped(
        redis_server: Any, protocol: int):
    client = aioredis.Redis.from_url(redis_server.url, protocol=protocol)
    try:
        await client.flushall()

        def decide(values: Any) -> list[tuple[Any, ...]]:
            # The second command is refused as it is queued (wrong number of arguments).
            return [("SET", "a", "1"), ("HSET", "h"), ("SET", "b", "2")]

        with pytest.raises(ResponseError, match="wrong number of arguments"):
            await watch_read_exec(client, ["w"], decide)
        # Nothing ran (EXEC was refused), and the next call on the pool reads its own
        # replies, not the rest of that transaction's.
        assert await client.mget("a", "b") == [None, None]
        await assert_clean(client)
    finally:
        await client.aclose()

"""leaseq's own RESP packer (protocol/resp.py, used by the ack transaction) writes what
redis-py's packer writes, and refuses what redis-py refuses."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis._parsers.encoders import Encoder
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from leaseq.protocol import resp
from leaseq.protocol.scripts import Script

COMMANDS: list[tuple[Any, ...]] = [
    ("MULTI",),
    ("HSET", "leaseq:{q}:job:é", "result", b"\x00\r\n{}", "finished_at", 1796143175024,
     "n", -3, "f", 0.1, "big", 10**20),
    ("SREM", "leaseq:{q}:in_progress", *[f"id-{i}" for i in range(50)]),
    ("SET", "k", b"x" * 100_000),  # past redis-py's buffer cutoff
    ("EXEC",),
]


def redis_py(commands: list[tuple[Any, ...]], encoding: str) -> bytes:
    conn = Connection(encoding=encoding)
    return b"".join(bytes(chunk) for chunk in conn.pack_commands(commands))


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_the_bytes_are_redis_pys(encoding: str):
    assert resp.pack(COMMANDS, Encoder(encoding, "strict", False)) == redis_py(COMMANDS,
                                                                             encoding)


def test_without_hiredis_the_bytes_are_the_same(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(resp, "_hiredis_pack", None)
    assert resp.pack(COMMANDS, Encoder("utf-8", "strict", False)) == redis_py(COMMANDS,
                                                                            "utf-8")


@pytest.mark.parametrize("bad", [True, None, object()], ids=["bool", "none", "object"])
def test_what_redis_py_refuses_is_refused(bad: Any):
    with pytest.raises(DataError):
        resp.pack([("SET", "k", bad)], Encoder("utf-8", "strict", False))


@pytest.mark.real_redis
async def test_a_script_call_that_cannot_be_packed_gives_its_connection_back(
        real_redis: aioredis.Redis):
    script = Script("extend")
    pool = real_redis.connection_pool
    with pytest.raises(DataError):
        await script(real_redis, ["k"], [object()])  # type: ignore[list-item]
    assert len(pool._in_use_connections) == 0  # type: ignore[attr-defined]
    assert len(pool._available_connections) == 1  # type: ignore[attr-defined]

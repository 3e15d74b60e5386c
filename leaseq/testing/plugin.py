"""pytest plugin of leaseq (registered as ``leaseq`` in the ``pytest11`` entry points).

Fixtures:

- ``leaseq_redis_server``: a private redis-server for the session (skips the test when
  redis-server is not installed);
- ``leaseq_worker_processes``: a factory ``(target, queue, **options) -> WorkerProcess``
  bound to that server; every process it started is killed at the end of the test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._procs import WorkerProcess
from ._server import RedisServer


@pytest.fixture(scope="session")
def leaseq_redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, for the whole session."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


@pytest.fixture
def leaseq_worker_processes(
    leaseq_redis_server: RedisServer,
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes for your handlers; all are killed after the test."""
    started: list[WorkerProcess] = []

    def start(target: str, queue: str, **options: Any) -> WorkerProcess:
        proc = WorkerProcess(leaseq_redis_server.url, target, queue, **options)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()

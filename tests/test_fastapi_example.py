"""``examples/fastapi_app.py`` as its users run it: uvicorn in a subprocess on a real
redis-server, requests through httpx, and a SIGTERM while jobs are in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis as syncredis

from leaseq.protocol.keys import QueueKeys
from leaseq.testing import RedisServer, free_port

from .test_cli_ops import r  # noqa: F401 - the flushed sync client fixture

pytestmark = pytest.mark.real_redis

ROOT = Path(__file__).resolve().parent.parent


def start_app(url: str, port: int, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(port),
         "--log-level", "info"],
        cwd=ROOT, env={**os.environ, "LEASEQ_REDIS_URL": url, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError("the app did not become healthy")


def test_the_app_enqueues_and_waits_and_a_sigterm_loses_nothing(
    redis_server: RedisServer, r: syncredis.Redis,  # noqa: F811 - the imported fixture
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_app(redis_server.url, port, THUMBNAIL_SECONDS="0.4", THUMBNAIL_GRACE="0.2")
    try:
        wait_healthy(base, proc)
        made = httpx.post(base + "/thumbnails", json={"image_id": 7, "width": 128}, timeout=10)
        assert made.status_code == 202
        job_id = made.json()["job_id"]
        got = httpx.get(f"{base}/thumbnails/{job_id}", params={"wait": 30}, timeout=40)
        assert got.status_code == 200, got.text
        result = got.json()["result"]
        assert result["image_id"] == 7 and result["width"] == 128
        assert result["made_by"] == proc.pid  # the worker runs inside the app
        assert httpx.get(base + "/thumbnails/nope", timeout=10).status_code == 404
        bad = httpx.post(base + "/thumbnails", json={"image_id": "x", "width": 1}, timeout=10)
        assert bad.status_code == 422

        ids = [httpx.post(base + "/thumbnails", json={"image_id": i, "width": 64},
                          timeout=10).json()["job_id"] for i in range(20)]
        k = QueueKeys("thumbnails")
        deadline = time.monotonic() + 30
        while not r.scard(k.in_progress) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.scard(k.in_progress), "no job was running when the app was stopped"
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (the lifespan's exit drains the worker), then
        # re-raises the signal on itself, as a process stopped by it.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert proc.stderr is not None
        log = proc.stderr.read().decode()
        assert "Application shutdown complete" in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    # Nothing lost: every job is done or back in todos; no lease is left behind.
    done = {m.decode() for m in r.smembers(k.done)}
    todos = {m.decode() for m in r.smembers(k.todos)}
    assert set(ids) <= done | todos and not done & todos
    assert r.scard(k.in_progress) == 0 and not list(r.scan_iter(match=k.prefix + "lease:*"))

"""docker-compose.yml, the Dockerfile and the examples: valid, consistent, and runnable
without Docker (no engine exists here, so the compose file is validated, and what it
describes is run as plain processes)."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from leaseq import Queue
from leaseq.testing import RedisServer, WebProcess

ROOT = Path(__file__).parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def test_compose_file_validates_against_the_compose_spec():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_topology_is_redis_reaper_two_workers_a_producer_and_the_dashboard():
    services = load_compose()["services"]
    assert set(services) == {"redis", "reaper", "worker-1", "worker-2", "producer", "web"}
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in ("reaper", "worker-1", "worker-2", "producer", "web"):
        service = services[name]
        assert service["build"] == "."  # one Dockerfile for all
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["LEASEQ_REDIS_URL"] == "redis://redis:6379/0"
    # The dashboard listens on all interfaces in its container: it must have a token.
    assert "LEASEQ_WEB_TOKEN" in services["web"]["environment"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["leaseq"]' in dockerfile
    assert "'.[web]'" in dockerfile


@pytest.mark.parametrize("service", ["reaper", "worker-1", "worker-2", "web"])
def test_compose_commands_are_valid_leaseq_command_lines(service: str):
    command = load_compose()["services"][service]["command"]
    result = subprocess.run([sys.executable, "-m", "leaseq", *command, "--help"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    if command[0] == "worker":
        from leaseq.cli.targets import load_target

        assert set(load_target(command[1])) == {"add", "get_title", "work"}


def test_compose_producer_script_exists_and_takes_its_arguments():
    producer = load_compose()["services"]["producer"]
    script = ROOT / producer["entrypoint"][1]
    assert script.exists()
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 0
    for flag in producer["command"]:
        if flag.startswith("--"):
            assert flag in result.stdout


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return redis_server.url


def run_example(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def start_worker(url: str, queue: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "leaseq", "--redis", url, "worker", "examples.tasks:HANDLERS",
         "--queue", queue], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.mark.real_redis
def test_compose_topology_as_plain_processes(url: str):
    """The producer's map of sums, served by two workers and the reaper sidecar."""
    queue = f"compose-{os.getpid()}"
    procs = [start_worker(url, queue), start_worker(url, queue),
             subprocess.Popen([sys.executable, "-m", "leaseq", "--redis", url, "reaper",
                               "--queue", queue], cwd=ROOT, stderr=subprocess.PIPE,
                              text=True)]
    # The dashboard, as compose runs it but on loopback (so without a token).
    web = WebProcess(url, "--queue", queue)
    web.start()
    try:
        result = run_example("examples/producer.py", "--redis", url, "--queue", queue,
                             "--jobs", "300")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("300 sums done")
        web.wait_ready()
        summary = httpx.get(f"{web.url}/queues/{queue}").json()["summary"]
        assert (summary["done"], summary["todos"], summary["dead"]) == (300, 0, 0)
        assert summary["reaper_seen_ms"] is not None
    finally:
        for p in procs:
            stop(p)
        assert web.terminate() == 0


@pytest.mark.real_redis
def test_graceful_quit_example(url: str):
    result = run_example("examples/graceful_quit.py", "--redis", url, "--workers", "3",
                         "--jobs", "100")
    assert result.returncode == 0, result.stderr
    assert "100 squares, sum 328350; all 3 workers quit" in result.stdout


@pytest.mark.real_redis
def test_embedded_service_example_serves_jobs_and_stops_on_sigterm(url: str):
    proc = subprocess.Popen([sys.executable, "examples/service.py", "--redis", url], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        # structlog's default output (the example leaves logging to its user) shares stdout.
        lines = iter(proc.stdout.readline, "")
        assert "service ready" in (line.strip() for line in lines)

        async def resize() -> Any:
            client = aioredis.Redis.from_url(url)
            try:
                q = Queue(client, "images")
                return await q.wait(await q.enqueue("resize", {"width": 640}), timeout=30)
            finally:
                await client.aclose()

        assert anyio.run(resize) == {"width": 320}
    finally:
        stop(proc)


@pytest.fixture
def page_server() -> Iterator[str]:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><head><title>Hello leaseq</title></head></html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.mark.real_redis
def test_url_fetch_map_example_task(url: str, page_server: str):
    queue = f"fetch-{os.getpid()}"
    proc = start_worker(url, queue)
    try:
        async def titles() -> list[Any]:
            client = aioredis.Redis.from_url(url)
            try:
                return await Queue(client, queue).map(
                    "get_title", [page_server + str(i) for i in range(5)], timeout=60)
            finally:
                await client.aclose()

        assert anyio.run(titles) == ["Hello leaseq"] * 5
    finally:
        stop(proc)

"""``leaseq web`` as a user starts it: a subprocess on a real redis-server."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as syncredis

from leaseq.cli.web import listen
from leaseq.testing import RedisServer, free_port

from ..test_cli import cli

pytestmark = pytest.mark.real_redis


@pytest.fixture
def r(redis_server: RedisServer) -> Any:
    client = syncredis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def snapshot_events(reply: httpx.Response) -> Iterator[dict[str, Any]]:
    """The ``snapshot`` events of a live stream, as they arrive."""
    event = None
    for line in reply.iter_lines():
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:") and event == "snapshot":
            yield json.loads(line.partition(":")[2])


def snapshots(base: str, query: str, count: int, **kw: Any) -> list[dict[str, Any]]:
    """The first ``count`` snapshots of the live stream."""
    out: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{base}/live{query}", timeout=30, **kw) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for snapshot in snapshot_events(reply):
            out.append(snapshot)
            if len(out) == count:
                break
    return out


def test_serves_the_page_api_and_a_live_stream_that_follows_the_queue(
    start_web: Any, redis_server: RedisServer, r: syncredis.Redis,
):
    assert cli(redis_server.url, "enqueue", "-q", "mail", "send", "1").returncode == 0
    web = start_web()
    page = httpx.get(web.url + "/")
    assert page.status_code == 200 and "<title>leaseq</title>" in page.text
    assert httpx.get(web.url + "/static/app.js").status_code == 200

    (first,) = snapshots(web.url, "?queue=mail&interval=0.2", 1)
    assert [q["name"] for q in first["overview"]["queues"]] == ["mail"]
    assert first["detail"]["summary"]["todos"] == 1

    reply = httpx.post(web.url + "/queues/mail/jobs", json={"task": "send", "payload": 2})
    assert reply.status_code == 201
    # A stream opened now reports the new job without anyone reloading anything.
    later = snapshots(web.url, "?queue=mail&interval=0.2", 2)
    assert later[-1]["detail"]["summary"]["todos"] == 2


def test_token_from_the_environment_guards_the_api(start_web: Any, r: syncredis.Redis):
    web = start_web(env={"LEASEQ_WEB_TOKEN": "tok"})
    assert httpx.get(web.url + "/queues").status_code == 401
    assert httpx.get(web.url + "/healthz").status_code == 200
    ok = httpx.get(web.url + "/queues", headers={"Authorization": "Bearer tok"})
    assert ok.status_code == 200
    (snap,) = snapshots(web.url, "", 1, cookies={"leaseq_token": "tok"})
    assert snap["overview"]["queues"] == []


def test_a_non_loopback_address_needs_a_token(redis_server: RedisServer):
    done = cli(redis_server.url, "web", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2
    assert "LEASEQ_WEB_TOKEN" in done.stderr and "Traceback" not in done.stderr
    done = cli(redis_server.url, "web", "--token", " ")
    assert done.returncode == 2 and "empty" in done.stderr


def test_unreachable_redis_is_one_line_and_exit_3():
    done = cli(f"redis://127.0.0.1:{free_port()}/0", "web", "--port", str(free_port()))
    assert done.returncode == 3
    assert "cannot reach Redis" in done.stderr and "Traceback" not in done.stderr


def test_a_port_in_use_is_an_error_not_a_hang(start_web: Any, redis_server: RedisServer):
    web = start_web()
    port = web.url.rsplit(":", 1)[1]
    done = cli(redis_server.url, "web", "--port", port, timeout=30)
    assert done.returncode != 0
    assert "address already in use" in done.stderr.lower()


def test_the_listening_socket_says_it_is_tcp():
    # asyncio sets TCP_NODELAY on accepted sockets only when proto is IPPROTO_TCP; with
    # 0 (what socket.create_server leaves) each kept-alive response waited ~40 ms for a
    # delayed ACK. The latency itself is measured in benchmarks/web.py, not asserted.
    sock = listen("127.0.0.1", 0)
    with sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[1] > 0


def test_the_dashboard_shows_what_the_demo_did(start_web: Any, redis_server: RedisServer,
                                               r: syncredis.Redis):
    done = cli(redis_server.url, "demo", "--jobs", "300", "--workers", "2", "--keep",
               timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    name = re.search(r"kept queue (demo-\w+)", done.stdout).group(1)  # type: ignore[union-attr]
    victim = re.search(r"worker pid (\d+) while it held (\d+) leases", done.stdout)
    assert victim is not None
    pid, held = victim.group(1), int(victim.group(2))

    web = start_web()
    detail = httpx.get(f"{web.url}/queues/{name}?events=200").json()
    summary = detail["summary"]
    assert (summary["done"], summary["todos"], summary["in_progress"]) == (300, 0, 0)
    # Every lease the SIGKILLed worker died holding was reaped, and the page says whose
    # (>=: on a starved machine one of its leases may also have run out before the kill).
    expired = [e for e in detail["events"] if e["owner"].endswith(f":{pid}")]
    assert len(expired) >= held
    assert {e["outcome"] for e in expired} <= {"requeued"}


def test_a_queue_with_a_lifecycle_stream_pushes_a_snapshot_when_an_event_arrives(
    start_web: Any, redis_server: RedisServer, r: syncredis.Redis,
):
    """With ``events=``, the stream's next event (here: an enqueue) sends a snapshot at
    once, not after the interval (30 s here; the read gives up well before that)."""
    assert cli(redis_server.url, "enqueue", "-q", "pushed", "t", "1").returncode == 0
    r.hset("leaseq:{pushed}:settings", "events", 1000)  # what Queue(events=1000) stores
    web = start_web()
    with httpx.stream("GET", f"{web.url}/live?queue=pushed&interval=30", timeout=10) as reply:
        assert reply.status_code == 200
        stream = snapshot_events(reply)
        assert next(stream)["detail"]["summary"]["todos"] == 1
        posted = httpx.post(web.url + "/queues/pushed/jobs", json={"task": "t", "payload": 2})
        assert posted.status_code == 201
        assert next(stream)["detail"]["summary"]["todos"] == 2

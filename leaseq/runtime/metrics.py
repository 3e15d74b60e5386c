"""Prometheus metrics and a health endpoint for workers and reapers.

``Metrics`` holds the instruments in a registry of its own. Give it to a
:class:`~leaseq.Worker` or :class:`~leaseq.Reaper` (``metrics=``) and call
:meth:`Metrics.serve` to expose ``/metrics`` (Prometheus text format) and ``/healthz``
(200 when Redis answered the last probe, 503 otherwise) over HTTP. :meth:`Metrics.watch`
refreshes queue depths and the Redis probe in the background.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import MetricsHandler

from ..protocol.wire import redis_failure

if TYPE_CHECKING:
    from ..protocol.queue import Queue

__all__ = ["Metrics"]

log = structlog.get_logger(__name__)

_STATES = ("todos", "in_progress", "done", "dead", "delayed", "cancelled")


class Metrics:
    """The instruments of one process (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "leaseq_jobs", "Jobs by lifecycle event: claimed, acked, failed (retried), "
            "dead, lease_lost, released.", ["queue", "event"], registry=self.registry)
        self.reaped = Counter(
            "leaseq_reaped", "Expired leases handled by the reaper, by outcome: requeued, "
            "dead, repaired, cancelled.", ["queue", "outcome"], registry=self.registry)
        self.data_lost = Counter(
            "leaseq_data_lost", "Times a reaper found a queue's epoch marker changed or "
            "gone: the server lost its data.", ["queue"], registry=self.registry)
        self.in_flight = Gauge(
            "leaseq_jobs_in_flight", "Handlers running now.", ["queue"],
            registry=self.registry)
        self.duration = Histogram(
            "leaseq_handler_duration_seconds", "Handler run time, from claim to settle.",
            ["queue", "task"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, float("inf")))
        self.depth = Gauge(
            "leaseq_queue_jobs", "Jobs in each state of the queue.", ["queue", "state"],
            registry=self.registry)
        self.held_back = Counter(
            "leaseq_claims_held_back", "Claims that found waiting jobs no worker may start "
            "now, by reason: paused, full (max_in_flight), limited (rate_limit), keys "
            "(every waiting key at its limit); the worker then sleeps until the next start "
            "is due or a slot frees.", ["queue", "reason"], registry=self.registry)
        self.redis_up = Gauge(
            "leaseq_redis_up", "1 when Redis answered the last probe.", registry=self.registry)
        self._healthy = False
        self._server: ThreadingHTTPServer | None = None

    @property
    def healthy(self) -> bool:
        """Whether Redis answered the last probe of :meth:`watch`."""
        return self._healthy

    def set_health(self, up: bool) -> None:
        """Record the result of a Redis probe."""
        self._healthy = up
        self.redis_up.set(1 if up else 0)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` and ``/healthz`` from a daemon thread; return the port (useful
        with ``port=0``)."""
        metrics = self
        base: Any = MetricsHandler.factory(self.registry)

        class Handler(base):  # type: ignore[misc]
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    ok = metrics.healthy
                    body = b"ok\n" if ok else b"redis unreachable\n"
                    self.send_response(200 if ok else 503)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # scrapes are not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="leaseq-metrics",
                         daemon=True).start()
        log.info("metrics_serving", host=host, port=self._server.server_port)
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop the HTTP server, if serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    async def watch(self, queues: Sequence[Queue], interval: float = 5.0) -> None:
        """Probe Redis and refresh queue depths every ``interval`` seconds, until
        cancelled."""
        while True:
            started = time.monotonic()
            try:
                for q in queues:
                    stats = await q.stats()
                    for state in _STATES:
                        self.depth.labels(q.name, state).set(getattr(stats, state))
                self.set_health(True)
            except Exception as exc:
                if not redis_failure(exc):
                    raise
                if self._healthy:
                    log.warning("redis_unavailable", error=repr(exc))
                self.set_health(False)
            await anyio.sleep(max(0.0, interval - (time.monotonic() - started)))

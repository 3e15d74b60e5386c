"""The ``enqueue`` command: one job from a JSON argument (optionally waiting for its
result), or a stream of JSON lines from stdin, enqueued in batches as they arrive."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

import anyio
import click
import redis.asyncio as aioredis

from ..exceptions import JobDead, WaitTimeout
from ..protocol.controls import MAX_PRIORITY
from ..protocol.queue import Queue
from ..protocol.validate import MAX_SECONDS
from . import exits, util
from .params import QUEUE, Command
from .signals import stop_signals

_BATCH_LINES = 500
"""Stdin lines enqueued in one round trip at most."""
_BATCH_IDLE = 0.05
"""Seconds without a new stdin line after which the lines read so far are enqueued."""


@click.command(cls=Command)
@QUEUE
@click.argument("task")
@click.argument("payload", required=False)
@click.option("--job-id", default=None, help="Explicit id (enqueue is a no-op if known).")
@click.option("--delay", type=click.FloatRange(min=0), default=None, help="Seconds to wait.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None)
@click.option("--priority", type=click.IntRange(-MAX_PRIORITY, MAX_PRIORITY), default=None,
              help="Fifo queues: higher runs first among the jobs of its key (default 0).")
@click.option("--key", default=None,
              help="Fifo queues: the job's fair-queueing key (keys take turns; per-key "
                   "limits apply to it).")
@click.option("--expires-in", type=click.FloatRange(0, MAX_SECONDS, min_open=True),
              default=None, metavar="SECONDS",
              help="A start deadline: a job not started this many seconds from now is "
                   "never run (it ends dead, counted as expired).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"queue": ..., "job_id": ...} per job instead of the bare id.')
@click.option("--wait", "wait_", is_flag=True,
              help="Wait for the job (one PAYLOAD) to finish and print its result as JSON; "
                   "exit 1 if it ends dead.")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=None,
              help="With --wait: give up after this many seconds (exit 1).")
@click.pass_obj
def enqueue(settings: util.Settings, queue: str, task: str, payload: str | None,
            job_id: str | None, delay: float | None, max_attempts: int | None,
            priority: int | None, key: str | None, expires_in: float | None,
            as_json: bool, wait_: bool, timeout: float | None) -> None:
    """Enqueue a TASK with a JSON PAYLOAD and print its id.

    Without PAYLOAD (or with -), read one JSON payload per line from stdin and enqueue
    them as they arrive: in batches, after 50 ms without a new line or every 500 lines,
    printing each id as soon as its job is written. Ctrl-C enqueues the lines already
    read, says how many jobs were enqueued and exits 130.
    """

    # The same placing for one job or a whole stream (enqueue_many takes it per batch).
    placing: dict[str, Any] = {"delay": delay, "max_attempts": max_attempts,
                               "priority": priority, "key": key, "expires_in": expires_in}

    def show(job: str) -> None:
        click.echo(json.dumps({"queue": queue, "job_id": job}) if as_json else job)

    if payload is not None and payload != "-":
        value = _parse_json(payload, "PAYLOAD")

        async def one(client: aioredis.Redis) -> int:
            q = Queue(client, queue)
            job = await q.enqueue(task, value, job_id=job_id, **placing)
            show(job)
            if not wait_:
                return exits.EXIT_OK
            try:
                result = await q.wait(job, timeout=timeout)
            except (JobDead, WaitTimeout) as exc:
                exits.notice(str(exc))
                return exits.EXIT_FAILURE
            click.echo(json.dumps({"queue": queue, "job_id": job, "result": result})
                       if as_json else json.dumps(result))
            return exits.EXIT_OK

        sys.exit(util.run(settings, one))
    if job_id is not None:
        raise click.UsageError("--job-id needs a single PAYLOAD argument")
    if wait_:
        raise click.UsageError("--wait needs a single PAYLOAD argument")

    async def many(client: aioredis.Redis) -> int:
        if sys.stdin.isatty():
            exits.notice("reading one JSON payload per line until Ctrl-D "
                         "(Ctrl-C enqueues the lines entered and stops)")
        feed = _StdinFeed(Queue(client, queue), task, placing, show)
        with stop_signals(signal.SIGINT) as signals:
            _, interrupted = await signals.until(feed.run)
        if interrupted is not None:
            exits.notice(f"interrupted: {_jobs(feed.enqueued)} enqueued")
            return exits.EXIT_INTERRUPTED
        return exits.EXIT_OK

    sys.exit(util.run(settings, many))


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


class _StdinFeed:
    """Enqueues stdin's JSON lines as they arrive (see ``enqueue``)."""

    def __init__(self, queue: Queue, task: str, placing: dict[str, Any],
                 show: Any) -> None:
        self.queue = queue
        self.task = task
        self.placing = placing
        """``enqueue_many``'s keyword arguments (delay, attempts, priority, ...)."""
        self.show = show
        self.enqueued = 0
        """Jobs written so far."""
        self._pending: list[Any] = []
        self._line_no = 0
        self._tail = b""

    async def run(self) -> None:
        send, receive = anyio.create_memory_object_stream[bytes](4)
        async with anyio.from_thread.BlockingPortal() as portal:
            # A thread of its own, a daemon: a read that Ctrl-C abandons must not keep the
            # process alive (anyio's worker threads are joined at exit).
            threading.Thread(target=_read_stdin, args=(portal, send), daemon=True,
                             name="leaseq-stdin").start()
            try:
                with receive:
                    await self._consume(receive)
            except anyio.get_cancelled_exc_class():
                # Ctrl-C: the lines in hand are still enqueued.
                with anyio.CancelScope(shield=True):
                    await self._flush()
                raise

    async def _consume(self, receive: Any) -> None:
        eof = False
        while not eof:
            chunk = b""
            idle = False
            try:
                if self._pending:
                    with anyio.move_on_after(_BATCH_IDLE) as wait:
                        chunk = await receive.receive()
                    idle = wait.cancelled_caught
                else:
                    chunk = await receive.receive()
            except anyio.EndOfStream:
                eof = True
            await self._take(chunk, eof)
            if idle or eof or len(self._pending) >= _BATCH_LINES:
                with anyio.CancelScope(shield=True):
                    await self._flush()

    async def _take(self, chunk: bytes, eof: bool) -> None:
        *lines, self._tail = (self._tail + chunk).split(b"\n")
        if eof and self._tail:
            lines.append(self._tail)
            self._tail = b""
        for line in lines:
            self._line_no += 1
            if not line.strip():
                continue
            try:
                self._pending.append(_loads(line))
            except ValueError as exc:
                with anyio.CancelScope(shield=True):
                    await self._flush()
                raise exits.Failure(
                    f"stdin line {self._line_no}: invalid JSON: {exc} (stopped there; "
                    f"{_jobs(self.enqueued)} enqueued)", exits.EXIT_USAGE) from None

    async def _flush(self) -> None:
        while self._pending:
            # Taken out first: a batch whose enqueue failed is not sent again (without job
            # ids a re-sent enqueue would make second jobs).
            batch = self._pending[:_BATCH_LINES]
            del self._pending[:_BATCH_LINES]
            for job in await self.queue.enqueue_many(self.task, batch, **self.placing):
                self.show(job)
                self.enqueued += 1


def _read_stdin(portal: anyio.from_thread.BlockingPortal, send: Any) -> None:
    """Blocking reads of stdin; each read's bytes (what arrived, up to 64 KiB) go to the
    event loop at once, and end of input closes ``send``."""
    try:
        fd: int | None = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # a replaced stdin (tests, embedding)
        fd = None
    try:
        while True:
            try:
                chunk = (os.read(fd, 65536) if fd is not None
                         else sys.stdin.readline().encode())
            except OSError:
                chunk = b""
            if not chunk:
                portal.call(send.aclose)
                return
            portal.call(send.send, chunk)
    except Exception:
        # The loop is done with stdin: a closed stream or portal, or a send cancelled as
        # the portal stopped. Nobody is listening any more.
        return


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(raw: str | bytes) -> Any:
    """Strict JSON: NaN and Infinity are refused like any other invalid JSON."""
    return json.loads(raw, parse_constant=_reject_constant)


def _parse_json(raw: str, where: str) -> Any:
    try:
        return _loads(raw)
    except ValueError as exc:
        exits.fail(f"{where}: invalid JSON: {exc}", exits.EXIT_USAGE)


COMMANDS = (enqueue,)
"""What this module adds to the ``leaseq`` group."""

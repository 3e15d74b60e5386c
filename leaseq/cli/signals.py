"""SIGTERM and SIGINT for the command line: one receiver for a command's whole life.

A long-running command passes through stages (waiting for Redis, building the worker,
running it). A receiver per stage would drop a signal that arrives as one stage ends:
the event loop reads its self-pipe a tick later and ignores a signal whose handler is gone
by then. So a command opens one receiver at its start and each stage reads from it; a
signal nobody is reading yet waits in the receiver for the next stage.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import anyio
from anyio.abc import TaskStatus

if TYPE_CHECKING:
    from ..runtime.worker import Worker

__all__ = ["Signals", "stop_signals"]

T = TypeVar("T")


class Signals:
    """The signals a command stops on, as they arrive (see :func:`stop_signals`)."""

    def __init__(self, received: AsyncIterator[int]) -> None:
        self._received = received

    async def next(self) -> int:
        """Wait for the next signal. Cancelling the wait loses nothing: a signal stays in
        the receiver until a call returns it."""
        return await anext(self._received)

    async def until(self, body: Callable[[], Awaitable[T]]) -> tuple[T | None, int | None]:
        """Run ``body()``; the first signal to arrive cancels it. Returns ``(result, None)``,
        or ``(None, signum)`` when a signal ended it. Exceptions of the body come out as
        themselves, not in an exception group."""
        received: list[int] = []
        results: list[T] = []
        errors: list[Exception] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                received.append(await self.next())
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                results.append(await body())
            except Exception as exc:  # re-raised below, outside the task group
                errors.append(exc)
            tg.cancel_scope.cancel()
        if errors:
            raise errors[0]
        return (results[0] if results else None), (received[0] if received else None)

    async def run_worker(self, worker: Worker, *, burst: bool = False) -> None:
        """Run ``worker`` and pass it each signal (:meth:`Worker.on_signal`: the first
        stops it gracefully, a second at once). A signal that came before the worker
        was ready is passed on once it is, so it always has a stop to act on."""
        async with anyio.create_task_group() as tg:

            async def run(*, task_status: TaskStatus[None]) -> None:
                await worker.run(burst=burst, handle_signals=False, task_status=task_status)
                tg.cancel_scope.cancel()

            await tg.start(run)
            while True:
                worker.on_signal(await self.next())


@contextmanager
def stop_signals(*signums: signal.Signals) -> Iterator[Signals]:
    """Receive ``signums`` (default SIGTERM and SIGINT) until the block ends; the default
    action (the process ends) applies again after it."""
    with anyio.open_signal_receiver(*(signums or (signal.SIGTERM, signal.SIGINT))) as got:
        yield Signals(got)

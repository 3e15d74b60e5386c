"""The hand-off of claimed leases to runner tasks: order, closing, and no item lost to a
cancelled taker."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from leaseq.runtime.handoff import Handoff


async def test_items_go_to_waiting_takers_in_order_and_the_rest_wait_for_the_next():
    h = Handoff[int]()
    got: list[tuple[str, int]] = []

    async def taker(name: str) -> None:
        got.append((name, await h.take()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(taker, "a")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(taker, "b")
        await anyio.wait_all_tasks_blocked()
        for i in range(4):
            h.put(i)
    assert got == [("a", 0), ("b", 1)]
    assert [await h.take(), h.take_nowait(), h.take_nowait()] == [2, 3, None]


async def test_a_closed_handoff_gives_what_is_left_then_ends_every_taker():
    h = Handoff[int]()
    ended: list[str] = []

    async def waiter() -> None:
        with pytest.raises(anyio.EndOfStream):
            await h.take()
        ended.append("waiter")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        h.close()  # wakes the waiter with EndOfStream
    assert ended == ["waiter"]
    with pytest.raises(anyio.ClosedResourceError):
        h.put(3)
    left = Handoff[int]()
    left.put(1)
    left.close()
    assert await left.take() == 1
    with pytest.raises(anyio.EndOfStream):
        await left.take()


async def test_an_item_handed_to_a_taker_cancelled_before_it_ran_goes_to_the_next():
    """The taker's task is cancelled after put() chose it and before it resumed: the
    item goes back to the front, ahead of later ones."""
    h = Handoff[str]()
    taker = asyncio.ensure_future(h.take())
    await anyio.wait_all_tasks_blocked()
    h.put("first")  # resolves the taker's future...
    h.put("second")
    taker.cancel()  # ...and its task is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await taker
    assert [h.take_nowait(), h.take_nowait()] == ["first", "second"]


async def test_an_anyio_cancel_after_the_hand_off_lets_the_taker_keep_its_item():
    """anyio delivers a cancel to a task whose wait already ended at its next
    checkpoint: the taker has the item (the worker's runner then releases its lease)."""
    h = Handoff[str]()
    kept: list[str] = []
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            async def taker() -> None:
                kept.append(await h.take())
                await anyio.sleep(10)

            tg.start_soon(taker)
            await anyio.wait_all_tasks_blocked()
            h.put("lease")
            scope.cancel()
    assert (kept, h.take_nowait()) == (["lease"], None)


async def test_async_iteration_ends_when_closed_and_drained():
    h = Handoff[int]()
    for i in range(3):
        h.put(i)
    h.close()
    assert [item async for item in h] == [0, 1, 2]

"""The watchdog that enforces the sessions' read deadlines."""

from __future__ import annotations

import math

import trio
import trio.testing

from mta.server.watchdog import MAX_TICK, MIN_TICK, Deadline, Watchdog, tick_for


def test_tick_is_a_twentieth_of_the_shortest_timeout_within_bounds() -> None:
    assert tick_for(300.0, 180.0) == MAX_TICK
    assert tick_for(3.0, 1.8) == 1.8 / 20
    assert tick_for(0.01) == MIN_TICK


async def test_check_expires_only_passed_deadlines() -> None:
    watchdog = Watchdog(1.0)
    passed, future, idle = (Deadline(trio.CancelScope()) for _ in range(3))
    passed.at, future.at = 10.0, 20.0
    for deadline in (passed, future, idle):
        watchdog.add(deadline)
    assert watchdog.check(15.0) == 1
    assert passed.expired and passed.scope.cancel_called
    assert not future.expired and not future.scope.cancel_called
    assert not idle.expired and idle.at == math.inf
    assert len(watchdog) == 2  # an expired deadline is dropped
    assert watchdog.check(15.0) == 0
    watchdog.discard(future)
    watchdog.discard(future)
    assert watchdog.check(100.0) == 0 and len(watchdog) == 1


async def test_a_waiting_task_is_cancelled_at_most_a_tick_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watchdog = Watchdog(0.5)
    ended: dict[str, float] = {}

    async def reader(name: str, timeout: float) -> None:
        with trio.CancelScope() as scope:
            deadline = Deadline(scope)
            watchdog.add(deadline)
            deadline.at = trio.current_time() + timeout
            await trio.sleep(100)  # a read that never completes
        ended[name] = trio.current_time()
        assert deadline.expired and scope.cancelled_caught

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog.run)
        start = trio.current_time()
        async with trio.open_nursery() as readers:
            readers.start_soon(reader, "short", 2.0)
            readers.start_soon(reader, "long", 7.2)
        nursery.cancel_scope.cancel()
    assert 2.0 <= ended["short"] - start <= 2.5
    assert 7.2 <= ended["long"] - start <= 7.7
    assert len(watchdog) == 0

"""A kept-open relay session's hand-over of messages (mta.relay.pool)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
import trio.testing

from mta.relay.pool import Connection, Work
from mta.relay.transaction import Recipient, Transaction


async def nothing(_index: int) -> AsyncIterator[bytes]:
    empty: list[bytes] = []
    for chunk in empty:
        yield chunk


def work(rcpt: str) -> Work:
    return Work(Transaction("a@example.org", (Recipient(rcpt),)), nothing)


async def test_a_waiting_session_takes_the_next_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    idle: list[bool] = []
    conn = Connection(
        work("b@x"),
        via="127.0.0.1",
        keepalive=10,
        mail_max=100,
        on_idle=lambda c, w: idle.append(w),
    )
    got: list[object] = []

    async def session() -> None:
        got.append(await conn.more())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(session)
        await trio.testing.wait_all_tasks_blocked()
        assert idle == [True]
        assert conn.give(work("c@x"))
    assert idle == [True, False] and got == [(conn.works[1].transaction,)]


async def test_keepalive_expires_and_stop_ends_the_wait_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    conn = Connection(work("b@x"), via="127.0.0.1", keepalive=10, mail_max=100)
    start = trio.current_time()
    assert await conn.more() == ()  # nobody came within 10 s
    assert trio.current_time() - start >= 10

    async def stopper() -> None:
        await trio.testing.wait_all_tasks_blocked()
        conn.stop()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stopper)
        assert await conn.more() == ()
    assert trio.current_time() - start < 1  # stopped: no keep-alive wait
    assert await conn.more() == () and not conn.give(work("c@x"))


async def test_the_transaction_delay_comes_before_the_session_takes_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    idle: list[float] = []
    conn = Connection(
        work("b@x"),
        via="127.0.0.1",
        keepalive=10,
        mail_max=100,
        transaction_delay=3,
        on_idle=lambda c, w: idle.append(trio.current_time()) if w else None,
    )
    start = trio.current_time()
    got: list[object] = []

    async def session() -> None:
        got.append(await conn.more())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(session)
        await trio.sleep(1)
        assert not conn.give(work("c@x"))  # still in the delay: not taken
        await trio.sleep(2.5)
        assert conn.give(work("d@x"))
    assert [at - start for at in idle] == [3]
    assert got == [(conn.works[1].transaction,)]


async def test_stop_during_the_transaction_delay(autojump_clock: trio.testing.MockClock) -> None:
    conn = Connection(work("b@x"), via="127.0.0.1", keepalive=10, mail_max=100, transaction_delay=5)

    async def stopper() -> None:
        await trio.sleep(1)
        conn.stop()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stopper)
        assert await conn.more() == ()
    assert trio.current_time() - start == 1

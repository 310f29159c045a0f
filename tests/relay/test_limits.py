"""``mta limit max-conn-per-*``: limits per domain, and limiters that wait,
count per key and clean up after themselves."""

from __future__ import annotations

import pytest
import trio

from mta.config.model import MTA_LIMIT_DEFAULTS, MtaLimits
from mta.relay.limits import ConnectionLimits, Key, limit_for

LIMITS = {
    "": MtaLimits((("max-conn-per-host", 2), ("session-keepalive", 5))),
    "example.net": MtaLimits((("max-conn-per-host", 1),)),
}


def test_a_domain_s_own_limit_then_the_global_one_then_the_default() -> None:
    assert limit_for(LIMITS, "Example.NET.", "max-conn-per-host") == 1
    assert limit_for(LIMITS, "example.net", "session-keepalive") == 5  # not set for the domain
    assert limit_for(LIMITS, "example.org", "max-conn-per-host") == 2
    assert limit_for(LIMITS, "example.org", "max-conn-per-route") == 5
    assert (
        limit_for({}, "example.org", "session-mail-max") == MTA_LIMIT_DEFAULTS["session-mail-max"]
    )


def test_the_keys_of_a_session() -> None:
    keys = ConnectionLimits(LIMITS).keys(
        address="192.0.2.1", source=None, relay="plan", domain="example.net"
    )
    assert keys == [
        (("host", "192.0.2.1"), 1),
        (("route", None, "192.0.2.1"), 5),
        (("source", None), 100),
        (("relay", "plan"), 20),  # max-conn-per-connector is lower
        (("domain", "example.net"), 100),
    ]


async def test_a_full_key_makes_the_next_session_wait() -> None:
    limits = ConnectionLimits(LIMITS)
    keys = limits.keys(address="192.0.2.1", source=None, relay="p", domain="example.net")
    first, second = object(), object()
    await limits.acquire(first, keys)
    with trio.move_on_after(0.05) as scope:
        await limits.acquire(second, keys)
    assert scope.cancelled_caught
    other = limits.keys(address="192.0.2.2", source=None, relay="p", domain="example.net")
    with trio.fail_after(1):
        await limits.acquire(second, other)  # another host: no wait
    limits.release(second, [key for key, _ in other])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(limits.acquire, second, keys)
        await trio.sleep(0.01)
        limits.release(first, [key for key, _ in keys])
    limits.release(second, [key for key, _ in keys])
    assert len(limits) == 0  # nobody holds or waits: nothing kept


async def test_a_cancelled_wait_keeps_no_token() -> None:
    limits = ConnectionLimits({"": MtaLimits((("max-conn-per-domain", 1),))})
    keys = limits.keys(address="192.0.2.1", source=None, relay="p", domain="example.org")
    holder = object()
    await limits.acquire(holder, keys)
    with trio.move_on_after(0.01):
        await limits.acquire(object(), keys)  # host, route, source, relay taken; domain full
    limits.release(holder, [key for key, _ in keys])
    assert len(limits) == 0
    with pytest.raises(KeyError):
        limits.release(holder, [("host", "192.0.2.1")])


# -- conn-delay-* -------------------------------------------------------------

PACED = {
    "": MtaLimits((("conn-delay-relay", 2),)),
    "example.net": MtaLimits((("conn-delay-route", 5), ("conn-delay-host", 1))),
}


def test_no_delay_by_default() -> None:
    limits = ConnectionLimits({})
    assert limits.delays(address="192.0.2.1", source=None, relay="p", domain="x.org") == []


def test_the_delays_of_a_session() -> None:
    delays = ConnectionLimits(PACED).delays(
        address="192.0.2.1", source=None, relay="plan", domain="example.net"
    )
    assert delays == [
        (("host", "192.0.2.1"), 1),
        (("route", None, "192.0.2.1"), 5),
        (("relay", "plan"), 2),  # the global one: not set for the domain
    ]


async def test_connections_of_one_key_start_the_delay_apart(
    autojump_clock: trio.abc.Clock,
) -> None:
    limits = ConnectionLimits(PACED)

    def delays(address: str, domain: str = "example.net") -> list[tuple[Key, float]]:
        return limits.delays(address=address, source=None, relay="plan", domain=domain)

    starts: list[tuple[str, float]] = []

    async def connect(address: str) -> None:
        await limits.pace(delays(address))
        starts.append((address, trio.current_time()))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for address in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
            nursery.start_soon(connect, address)
            await trio.sleep(0)
    offsets = sorted((address, round(at - start, 3)) for address, at in starts)
    # the same route waits 5 s; another host of the relay only the relay's 2 s
    assert offsets == [("192.0.2.1", 0.0), ("192.0.2.1", 5.0), ("192.0.2.2", 2.0)]


async def test_a_delay_already_passed_costs_nothing(autojump_clock: trio.abc.Clock) -> None:
    limits = ConnectionLimits(PACED)
    delays = limits.delays(address="192.0.2.1", source=None, relay="p", domain="example.net")
    await limits.pace(delays)
    await trio.sleep(10)
    start = trio.current_time()
    await limits.pace(delays)
    assert trio.current_time() == start


async def test_take_holds_the_tokens_and_gives_them_back_when_cancelled_while_paced(
    autojump_clock: trio.abc.Clock,
) -> None:
    limits = ConnectionLimits(PACED)
    first = object()
    held = await limits.take(first, address="192.0.2.1", source=None, relay="p", domain="d.net")
    keys = limits.keys(address="192.0.2.1", source=None, relay="p", domain="d.net")
    assert held == [key for key, _ in keys]
    with trio.move_on_after(1):  # the relay's 2 s have not passed
        await limits.take(object(), address="192.0.2.1", source=None, relay="p", domain="d.net")
        pytest.fail("the second session should have waited")
    limits.release(first, held)
    assert len(limits) == 0  # the cancelled one kept nothing

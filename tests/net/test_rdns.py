"""Tests for mta.net.rdns: PTR + forward confirmation against a test DNS server
on loopback, timeouts that never hold up other tasks, and the cache."""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.reversename
import pytest
import trio

from mta.net import rdns as rdns_module
from mta.net.rdns import CACHE_SIZE, CACHE_TTL, Rdns, RdnsResult, reverse_lookup
from mta.net.resolver import DnsResolver
from tests.net.dnsserver import Behaviour, DnsServer


def ptr(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


@pytest.fixture
async def server(nursery: trio.Nursery) -> DnsServer:
    s = DnsServer()
    await nursery.start(s.serve)
    # confirmed
    s.add(ptr("192.0.2.1"), "PTR", "mail.example.org.")
    s.add("mail.example.org", "A", "192.0.2.99", "192.0.2.1")
    # PTR points to a name that resolves elsewhere
    s.add(ptr("192.0.2.2"), "PTR", "liar.example.org.")
    s.add("liar.example.org", "A", "198.51.100.7")
    # PTR points to a name that does not exist
    s.add(ptr("192.0.2.3"), "PTR", "ghost.example.org.")
    # PTR lookup fails
    s.set(ptr("192.0.2.4"), Behaviour.SERVFAIL)
    # PTR lookup never answered
    s.set(ptr("192.0.2.5"), Behaviour.DROP)
    # PTR found, forward lookup fails
    s.add(ptr("192.0.2.6"), "PTR", "flaky.example.org.")
    s.set("flaky.example.org", Behaviour.SERVFAIL)
    # PTR target that is not a host name
    s.add(ptr("192.0.2.7"), "PTR", "bad\\032name.example.org.")
    # PTR found, forward lookup never answered
    s.add(ptr("192.0.2.8"), "PTR", "slow.example.org.")
    s.set("slow.example.org", Behaviour.DROP)
    # IPv6 client: AAAA confirms
    s.add(ptr("2001:db8::25"), "PTR", "v6.example.org.")
    s.add("v6.example.org", "AAAA", "2001:db8::25")
    s.add("v6.example.org", "A", "192.0.2.25")
    return s


def make(
    server: DnsServer,
    timeout: float = 2.0,
    *,
    cache_size: int = CACHE_SIZE,
    cache_ttl: float = CACHE_TTL,
    clock: Callable[[], float] = time.monotonic,
) -> Rdns:
    resolver = DnsResolver([server.nameserver], timeout=timeout)
    return Rdns(resolver, timeout=timeout, cache_size=cache_size, cache_ttl=cache_ttl, clock=clock)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("192.0.2.1", RdnsResult("mail.example.org", True, False)),
        ("192.0.2.2", RdnsResult("liar.example.org", False, False)),
        ("192.0.2.3", RdnsResult("ghost.example.org", False, False)),
        ("192.0.2.9", RdnsResult(None, False, False)),  # NXDOMAIN
        ("192.0.2.4", RdnsResult(None, False, True)),  # SERVFAIL
        ("192.0.2.6", RdnsResult("flaky.example.org", False, True)),
        ("192.0.2.7", RdnsResult(None, False, False)),
        ("2001:db8::25", RdnsResult("v6.example.org", True, False)),
        ("2001:DB8:0::25", RdnsResult("v6.example.org", True, False)),
        ("::ffff:192.0.2.1", RdnsResult("mail.example.org", True, False)),
    ],
)
async def test_lookup(server: DnsServer, ip: str, expected: RdnsResult) -> None:
    assert await make(server).lookup(ip) == expected


async def test_forward_uses_the_client_family(server: DnsServer) -> None:
    await make(server).lookup("2001:db8::25")
    assert ("v6.example.org.", "AAAA") in server.queries
    assert ("v6.example.org.", "A") not in server.queries


async def test_not_an_address_is_answered_at_once(server: DnsServer) -> None:
    assert await make(server).lookup("local") == RdnsResult(None, False, False)
    assert server.queries == []


async def test_no_resolver_is_unknown_at_once() -> None:
    with trio.fail_after(0.1):
        assert await Rdns(None).lookup("192.0.2.1") == RdnsResult(None, False, True)


@pytest.mark.parametrize(("ip", "name"), [("192.0.2.5", None), ("192.0.2.8", "slow.example.org")])
async def test_silent_server_gives_up_and_others_keep_running(
    server: DnsServer, ip: str, name: str | None
) -> None:
    rdns = make(server, timeout=0.6)
    ticks = 0
    result: RdnsResult | None = None

    async def ticker() -> None:
        nonlocal ticks
        while result is None:
            ticks += 1
            await trio.sleep(0.01)

    async def look() -> None:
        nonlocal result
        result = await rdns.lookup(ip)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        nursery.start_soon(look)
    elapsed = trio.current_time() - start
    assert result == RdnsResult(name, False, True)
    assert elapsed < 0.6 + 0.5
    assert ticks >= 20  # the other task ran all along
    # a confirmed lookup still works at the same time as a silent one
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rdns.lookup, ip)
        with trio.fail_after(0.3):
            assert (await rdns.lookup("192.0.2.1")).fcrdns


async def test_cache_hits_expiry_and_bound(server: DnsServer) -> None:
    now = [0.0]
    rdns = make(server, cache_size=2, cache_ttl=10.0, clock=lambda: now[0])
    first = await rdns.lookup("192.0.2.1")
    count = len(server.queries)
    assert await rdns.lookup("192.0.2.1") == first
    assert await rdns.lookup("::ffff:192.0.2.1") == first
    assert len(server.queries) == count  # cached
    now[0] = 10.5
    assert await rdns.lookup("192.0.2.1") == first
    assert len(server.queries) == count + 2  # expired: PTR and A again
    await rdns.lookup("192.0.2.2")
    await rdns.lookup("192.0.2.3")  # evicts 192.0.2.1, the least recently used
    count = len(server.queries)
    await rdns.lookup("192.0.2.1")
    assert len(server.queries) > count


async def test_failures_are_not_cached(server: DnsServer) -> None:
    rdns = make(server)
    assert (await rdns.lookup("192.0.2.4")).error
    count = len(server.queries)
    server.behaviour.clear()
    server.add(ptr("192.0.2.4"), "PTR", "mail.example.org.")
    assert (await rdns.lookup("192.0.2.4")).name == "mail.example.org"
    assert len(server.queries) > count


async def test_from_env_and_reverse_lookup(
    server: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"MTA_DNS": f"127.0.0.1:{server.port}"}
    rdns = Rdns.from_env(env)
    assert await rdns.reverse_lookup("192.0.2.1") == RdnsResult("mail.example.org", True, False)
    assert Rdns.from_env({"MTA_DNS": "bogus"}).resolver is None
    monkeypatch.setenv("MTA_DNS", f"127.0.0.1:{server.port}")
    monkeypatch.setattr(rdns_module, "_default", None)
    assert (await reverse_lookup("192.0.2.2")).name == "liar.example.org"

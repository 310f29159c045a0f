"""Tests for mta.net.rdns: PTR + forward confirmation against a test DNS server
on loopback, timeouts that never hold up other tasks, and the cache; the hosts
file read before DNS, and the warnings of a failing DNS rate-limited."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.reversename
import pytest
import trio

from mta.net import rdns as rdns_module
from mta.net.hosts import HostsFile
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


# -- the hosts file first ---------------------------------------------------------

HOSTS = """\
127.0.0.1 localhost
127.0.0.1 runsc
::1 localhost ip6-localhost ip6-loopback
192.0.2.1 hosts-name.example.org  # DNS names it mail.example.org
198.51.100.9 liar.example.org
2001:db8::99 mail.example.org
192.0.2.50 bad..name
"""


@pytest.fixture
def hosts(tmp_path: Path) -> HostsFile:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    return HostsFile(str(path))


def with_hosts(server: DnsServer | None, hosts: HostsFile, **kwargs: Any) -> Rdns:
    resolver = None if server is None else DnsResolver([server.nameserver], timeout=2.0)
    return Rdns(resolver, hosts=hosts, **kwargs)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("127.0.0.1", RdnsResult("localhost", True, False)),
        ("::ffff:127.0.0.1", RdnsResult("localhost", True, False)),
        ("::1", RdnsResult("localhost", True, False)),
        ("[::1]", RdnsResult("localhost", True, False)),
        # in the hosts file and in DNS: the hosts file wins, as with "hosts: files dns"
        ("192.0.2.1", RdnsResult("hosts-name.example.org", True, False)),
        ("192.0.2.50", RdnsResult(None, False, False)),  # not a host name
    ],
)
async def test_a_hosts_file_answer_needs_no_dns(
    server: DnsServer, hosts: HostsFile, ip: str, expected: RdnsResult
) -> None:
    assert await with_hosts(server, hosts).lookup(ip) == expected
    assert server.queries == []


async def test_names_only_in_dns_are_still_found(server: DnsServer, hosts: HostsFile) -> None:
    rdns = with_hosts(server, hosts)
    assert await rdns.lookup("2001:db8::25") == RdnsResult("v6.example.org", True, False)
    assert await rdns.lookup("192.0.2.9") == RdnsResult(None, False, False)  # NXDOMAIN
    assert ("9.2.0.192.in-addr.arpa.", "PTR") in server.queries


async def test_forward_confirmation_reads_the_hosts_file_first(
    server: DnsServer, hosts: HostsFile
) -> None:
    rdns = with_hosts(server, hosts)
    # DNS: PTR 192.0.2.2 -> liar.example.org, whose A record is 198.51.100.7; the
    # hosts file says 198.51.100.9: not confirmed either way, and no A query
    assert await rdns.lookup("192.0.2.2") == RdnsResult("liar.example.org", False, False)
    assert ("liar.example.org.", "A") not in server.queries
    # the hosts file lists mail.example.org with an IPv6 address only: an IPv4
    # client's confirmation asks DNS for A records
    server.add(ptr("192.0.2.11"), "PTR", "mail.example.org.")
    server.add("mail.example.org", "A", "192.0.2.11")
    assert await rdns.lookup("192.0.2.11") == RdnsResult("mail.example.org", True, False)
    assert ("mail.example.org.", "A") in server.queries


async def test_hosts_file_without_dns(hosts: HostsFile) -> None:
    rdns = with_hosts(None, hosts)
    assert rdns.enabled
    with trio.fail_after(0.1):
        assert await rdns.lookup("127.0.0.1") == RdnsResult("localhost", True, False)
        assert await rdns.lookup("192.0.2.2") == RdnsResult(None, False, True)
    assert not Rdns(None).enabled


async def test_hosts_file_changes_are_seen_at_once(
    server: DnsServer, hosts: HostsFile, tmp_path: Path
) -> None:
    rdns = with_hosts(server, hosts)
    assert (await rdns.lookup("127.0.0.1")).name == "localhost"
    (tmp_path / "hosts").write_text("127.0.0.1 loopback.example.org\n")
    st = (tmp_path / "hosts").stat()
    os.utime(tmp_path / "hosts", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert (await rdns.lookup("127.0.0.1")).name == "loopback.example.org"
    (tmp_path / "hosts").unlink()
    assert await rdns.lookup("127.0.0.1") == RdnsResult(None, False, False)  # DNS: NXDOMAIN


async def test_dns_down_is_unknown_and_warned_once_a_minute(
    server: DnsServer, hosts: HostsFile, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    rdns = with_hosts(server, hosts, clock=lambda: now[0])
    server.set(ptr("192.0.2.12"), Behaviour.SERVFAIL)
    with caplog.at_level(logging.DEBUG, "mta.dns"):
        for _ in range(4):
            assert await rdns.lookup("192.0.2.4") == RdnsResult(None, False, True)
            assert await rdns.lookup("127.0.0.1") == RdnsResult("localhost", True, False)
            now[0] += 10
        now[0] = 61.0
        assert await rdns.lookup("192.0.2.12") == RdnsResult(None, False, True)
        assert await rdns.lookup("192.0.2.6") == RdnsResult("flaky.example.org", False, True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(warnings) == 2
    assert warnings[0].startswith("dns: PTR lookup for 192.0.2.4 failed: ")
    assert warnings[1].startswith("dns: PTR lookup for 192.0.2.12 failed: ")
    assert warnings[1].endswith(
        " (and 3 more like it since the last warning, logged at debug level)"
    )
    assert len(debug) == 4 and debug[-1].startswith("dns: A lookup for flaky.example.org failed")


async def test_from_env_reads_mta_hosts(server: DnsServer, tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("192.0.2.1 lab.example.org\n")
    rdns = Rdns.from_env({"MTA_DNS": f"127.0.0.1:{server.port}", "MTA_HOSTS": str(path)})
    assert rdns.hosts is not None and rdns.hosts.path == str(path)
    assert await rdns.lookup("192.0.2.1") == RdnsResult("lab.example.org", True, False)
    rdns = Rdns.from_env({"MTA_DNS": f"127.0.0.1:{server.port}", "MTA_HOSTS": "none"})
    assert rdns.hosts is None
    assert await rdns.lookup("192.0.2.1") == RdnsResult("mail.example.org", True, False)
    default = Rdns.from_env({"MTA_DNS": "none"})
    assert default.hosts is not None and default.hosts.path == "/etc/hosts"
    assert default.resolver is None and default.enabled

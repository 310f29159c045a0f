"""Tests for mta.net.resolver: configuration and queries against a test DNS
server on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import dns.rdatatype
import pytest
import trio

from mta.net.resolver import (
    DnsResolver,
    LookupStatus,
    Nameserver,
    load_nameservers,
    parse_nameservers,
    resolv_conf_nameservers,
)
from tests.net.dnsserver import Behaviour, DnsServer

A = dns.rdatatype.A
MX = dns.rdatatype.MX


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", [Nameserver("127.0.0.1", 53)]),
        ("127.0.0.1:5353", [Nameserver("127.0.0.1", 5353)]),
        ("::1", [Nameserver("::1", 53)]),
        ("[::1]", [Nameserver("::1", 53)]),
        ("[::1]:5353", [Nameserver("::1", 5353)]),
        (
            "127.0.0.1:5353,[::1]:5353",
            [Nameserver("127.0.0.1", 5353), Nameserver("::1", 5353)],
        ),
        (" 10.0.0.1 , 10.0.0.2:54 ,", [Nameserver("10.0.0.1"), Nameserver("10.0.0.2", 54)]),
        ("[2001:DB8::1]:53", [Nameserver("2001:db8::1", 53)]),
    ],
)
def test_parse_nameservers(text: str, expected: list[Nameserver]) -> None:
    assert list(parse_nameservers(text)) == expected


@pytest.mark.parametrize(
    "text",
    ["", " , ", "localhost", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:x", "[::1", "[::1]x",
     "[::1]:", "1.2.3.4.5", "::1:5353:x"],
)  # fmt: skip
def test_parse_nameservers_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_nameservers(text)


def test_nameserver_text() -> None:
    assert str(Nameserver("::1", 5353)) == "[::1]:5353"
    assert str(Nameserver("127.0.0.1")) == "127.0.0.1:53"


def test_load_nameservers_env_wins(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.1\n")
    env = {"MTA_DNS": "127.0.0.1:5353"}
    assert load_nameservers(env, str(conf)) == (Nameserver("127.0.0.1", 5353),)
    assert load_nameservers({}, str(conf)) == (Nameserver("192.0.2.1", 53),)


def test_load_nameservers_nothing_usable(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.1\n")
    # a broken MTA_DNS never falls back to the system resolver
    assert load_nameservers({"MTA_DNS": "nonsense"}, str(conf)) == ()
    assert load_nameservers({"MTA_DNS": "none"}, str(conf)) == ()
    assert load_nameservers({"MTA_DNS": ""}, str(conf)) == ()
    assert load_nameservers({}, str(tmp_path / "missing")) == ()
    empty = tmp_path / "empty.conf"
    empty.write_text("# nothing\nsearch example.org\n")
    assert load_nameservers({}, str(empty)) == ()
    assert DnsResolver.from_env({}, str(empty)) is None


def test_resolver_needs_a_server() -> None:
    with pytest.raises(ValueError):
        DnsResolver([])


@pytest.fixture
async def server(nursery: trio.Nursery) -> DnsServer:
    dns_server = DnsServer()
    await nursery.start(dns_server.serve)
    dns_server.add("mx.example.org", "A", "192.0.2.10", "192.0.2.11")
    dns_server.add("example.org", "MX", "10 mx.example.org.")
    dns_server.set("broken.example.org", Behaviour.SERVFAIL)
    dns_server.set("gone.example.org", Behaviour.NXDOMAIN)
    dns_server.set("silent.example.org", Behaviour.DROP)
    return dns_server


async def test_found(server: DnsServer) -> None:
    resolver = DnsResolver([server.nameserver], timeout=2)
    result = await resolver.query("mx.example.org", A)
    assert result.status is LookupStatus.FOUND
    assert sorted(r.to_text() for r in result.records) == ["192.0.2.10", "192.0.2.11"]
    mx = await resolver.query("EXAMPLE.org.", MX)
    assert mx.status is LookupStatus.FOUND
    assert [r.to_text().lower() for r in mx.records] == ["10 mx.example.org."]


async def test_nxdomain_nodata_servfail(server: DnsServer) -> None:
    resolver = DnsResolver([server.nameserver], timeout=2)
    assert (await resolver.query("gone.example.org", A)).status is LookupStatus.NXDOMAIN
    assert (await resolver.query("nothing.example.org", A)).status is LookupStatus.NXDOMAIN
    assert (await resolver.query("example.org", A)).status is LookupStatus.NODATA
    failed = await resolver.query("broken.example.org", A)
    assert failed.status is LookupStatus.ERROR and failed.reason


async def test_names_are_absolute(server: DnsServer) -> None:
    resolver = DnsResolver([server.nameserver], timeout=2)
    await resolver.query("mx.example.org", A)
    assert server.queries == [("mx.example.org.", "A")]


async def test_silent_server_gives_up_in_time(server: DnsServer) -> None:
    resolver = DnsResolver([server.nameserver], timeout=0.5)
    start = trio.current_time()
    result = await resolver.query("silent.example.org", A)
    elapsed = trio.current_time() - start
    assert result.status is LookupStatus.ERROR
    assert 0.4 <= elapsed < 1.0


async def test_dead_first_server_then_a_live_one(server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never read: queries vanish
        silent = Nameserver("127.0.0.1", dead.getsockname()[1])
        resolver = DnsResolver([silent, server.nameserver], timeout=1.0)
        result = await resolver.query("mx.example.org", A)
    assert result.status is LookupStatus.FOUND


async def test_zero_budget_is_an_error(server: DnsServer) -> None:
    resolver = DnsResolver([server.nameserver])
    assert (await resolver.query("mx.example.org", A, timeout=0)).status is LookupStatus.ERROR
    assert server.queries == []


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_nameserver_from_env(nursery: trio.Nursery) -> None:
    server = DnsServer("::1")
    await nursery.start(server.serve)
    server.add("v6.example.org", "AAAA", "2001:db8::25")
    resolver = DnsResolver.from_env({"MTA_DNS": f"[::1]:{server.port}"}, timeout=2)
    assert resolver is not None
    result = await resolver.query("v6.example.org", dns.rdatatype.AAAA)
    assert [r.to_text() for r in result.records] == ["2001:db8::25"]


def test_resolv_conf_nameservers_as_the_resolver_library_reads_them() -> None:
    text = (
        "# nameserver 192.0.2.9\n"
        "; nameserver 192.0.2.8\n"
        "search example.org\n"
        "nameserver 192.0.2.1\n"
        "  nameserver\t2001:db8::1   # trailing words are ignored\n"
        "nameserver\n"
        "nameservers 192.0.2.7\n"
        "options timeout:1\n"
    )
    assert resolv_conf_nameservers(text) == ["192.0.2.1", "2001:db8::1"]


def test_unusable_resolv_conf_entries_are_skipped(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.300\nnameserver not-an-address\nnameserver ::1\n")
    assert load_nameservers({}, str(conf)) == (Nameserver("::1", 53),)

"""Tests for mta.tables.netaddr: address and network parsing and matching."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from mta.tables.netaddr import NetAddr, netaddr_match, parse_address, parse_netaddr


def test_ipv4_forms() -> None:
    assert parse_netaddr("10/8") is not None
    n = parse_netaddr("192.168.1")
    assert n is not None and n.bits == 24 and str(n.address) == "192.168.1.0"
    n = parse_netaddr("10.1.2.3")
    assert n is not None and n.bits == 32
    assert parse_netaddr("256.1.1.1") is None
    assert parse_netaddr("1.2.3.4/33") is None


def test_ipv6_forms() -> None:
    for text in ("::1", "[::1]", "IPv6:::1", "[IPv6:::1]"):
        n = parse_netaddr(text)
        assert n is not None and n.bits == 128, text
    for text in ("2001:db8::/32", "[2001:db8::]/32", "[2001:db8::/32]"):
        n = parse_netaddr(text)
        assert n is not None and n.bits == 32, text
    assert parse_netaddr("[::1") is None
    assert parse_netaddr("::1/129") is None
    assert parse_netaddr("example.org") is None


def test_match() -> None:
    assert netaddr_match("192.0.2.9", "192.0.2.0/24")
    assert netaddr_match("LOCAL", "local")
    assert not netaddr_match("192.0.2.9", "::/0")
    assert netaddr_match("2001:db8::9", "::/0")
    assert netaddr_match("192.0.2.9", "0.0.0.0/0")
    assert not netaddr_match("garbage", "0.0.0.0/0")


def test_parse_address() -> None:
    assert parse_address("[::1]") == ipaddress.IPv6Address("::1")
    assert parse_address("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")
    assert parse_address("192.0.2.1") == ipaddress.IPv4Address("192.0.2.1")
    assert parse_address("192.0.2") is None


@given(st.text(max_size=60), st.text(max_size=60))
def test_match_never_raises(a: str, b: str) -> None:
    netaddr_match(a, b)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
def test_contains_agrees_with_ipaddress(
    net4: int, addr4: int, bits4: int, net6: int, bits6: int
) -> None:
    v4 = NetAddr(ipaddress.IPv4Address(net4), bits4)
    candidate = ipaddress.IPv4Address(addr4)
    assert v4.contains(candidate) == (candidate in v4.network)
    assert v4.contains(ipaddress.IPv4Address(net4))
    v6 = NetAddr(ipaddress.IPv6Address(net6), bits6)
    assert v6.contains(ipaddress.IPv6Address(net6 ^ 1)) == (
        ipaddress.IPv6Address(net6 ^ 1) in v6.network
    )
    assert not v6.contains(candidate) and not v4.contains(ipaddress.IPv6Address(net6))

"""Tests for mta.relay.route: MX ordering and pruning without DNS."""

from __future__ import annotations

import ipaddress
import random

import pytest

from mta.errors import RoutePermanentFailure, RouteTemporaryFailure
from mta.relay.route import (
    Family,
    Hop,
    HostAddresses,
    Mx,
    RouteKind,
    backup_preference,
    build_route,
    interleave,
    literal_route,
    order_mxs,
    parse_literal,
    usable_mxs,
)

A = HostAddresses


def test_parse_literal() -> None:
    assert parse_literal("example.org") is None
    assert parse_literal("[192.0.2.1]") == ipaddress.IPv4Address("192.0.2.1")
    assert parse_literal("[ipv6:2001:db8::1]") == ipaddress.IPv6Address("2001:db8::1")
    for bad in ("[2001:db8::1]", "[IPv6:192.0.2.1]", "[]", "[192.0.2.1", "[1.2.3]"):
        with pytest.raises(RoutePermanentFailure):
            parse_literal(bad)


def test_literal_route() -> None:
    address = ipaddress.ip_address("2001:db8::1")
    route = literal_route("[IPv6:2001:db8::1]", address)
    assert route.kind is RouteKind.LITERAL
    assert route.hops == (Hop(-1, "[IPv6:2001:db8::1]", ("2001:db8::1",)),)
    with pytest.raises(RouteTemporaryFailure, match="family"):
        literal_route("[IPv6:2001:db8::1]", address, family=Family.INET4)
    with pytest.raises(RoutePermanentFailure, match="back to us"):
        literal_route("[IPv6:2001:db8::1]", address, our_addresses={"2001:DB8:0::1"})


def test_null_mx() -> None:
    with pytest.raises(RoutePermanentFailure) as info:
        usable_mxs([Mx(0, "")])
    assert (info.value.text, info.value.status) == ("Domain does not accept mail", "5.1.10")
    with pytest.raises(RoutePermanentFailure):
        usable_mxs([Mx(10, "localhost")])
    assert usable_mxs([Mx(0, ""), Mx(10, "mx.example.org")]) == (Mx(10, "mx.example.org"),)
    # a "." at another preference is not a Null MX (OpenSMTPD): kept, it has no address
    assert usable_mxs([Mx(10, "")]) == (Mx(10, ""),)
    assert usable_mxs([]) == ()


def test_order_is_by_preference_and_random_among_equals() -> None:
    mxs = [Mx(20, "c"), Mx(10, "a"), Mx(10, "b"), Mx(5, "z")]
    seen = set()
    for seed in range(20):
        ordered = order_mxs(mxs, random.Random(seed))
        assert [mx.preference for mx in ordered] == [5, 10, 10, 20]
        seen.add(tuple(mx.host for mx in ordered))
    assert seen == {("z", "a", "b", "c"), ("z", "b", "a", "c")}


def test_interleave() -> None:
    mixed = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1", "2001:db8::2"]
    assert interleave(mixed) == (
        "2001:db8::1",
        "192.0.2.1",
        "2001:db8::2",
        "192.0.2.2",
        "192.0.2.3",
    )
    assert interleave(mixed, Family.INET4) == (
        "192.0.2.1",
        "2001:db8::1",
        "192.0.2.2",
        "2001:db8::2",
        "192.0.2.3",
    )
    assert interleave([]) == ()


MXS = (Mx(10, "a.example"), Mx(20, "b.example"), Mx(30, "c.example"))
HOSTS = {
    "a.example": A(("192.0.2.1", "2001:db8::1")),
    "b.example": A(("192.0.2.2",)),
    "c.example": A(("2001:db8::3",)),
}


def test_build_route() -> None:
    route = build_route("example", RouteKind.MX, MXS, HOSTS)
    assert route.hops == (
        Hop(10, "a.example", ("2001:db8::1", "192.0.2.1")),
        Hop(20, "b.example", ("192.0.2.2",)),
        Hop(30, "c.example", ("2001:db8::3",)),
    )


def test_backup() -> None:
    route = build_route("example", RouteKind.MX, MXS, HOSTS, backup_name="C.example.")
    assert [hop.host for hop in route.hops] == ["a.example", "b.example"]
    assert backup_preference(MXS, "b.example") == 20
    assert backup_preference(MXS, "x.example") is None
    with pytest.raises(RouteTemporaryFailure) as info:
        build_route("example", RouteKind.MX, MXS, HOSTS, backup_name="a.example")
    assert info.value.status == "4.4.4"
    route = build_route("example", RouteKind.MX, MXS, HOSTS, backup_name="x.example")
    assert len(route.hops) == 3


def test_pruning_ourselves() -> None:
    route = build_route("example", RouteKind.MX, MXS, HOSTS, our_names={"B.EXAMPLE."})
    assert [hop.host for hop in route.hops] == ["a.example"]
    route = build_route("example", RouteKind.MX, MXS, HOSTS, our_addresses={"2001:db8:0::3"})
    assert [hop.host for hop in route.hops] == ["a.example", "b.example"]
    with pytest.raises(RoutePermanentFailure) as info:
        build_route("example", RouteKind.MX, MXS, HOSTS, our_addresses={"192.0.2.1"})
    assert info.value.status == "5.4.6"


def test_family_restriction() -> None:
    route = build_route("example", RouteKind.MX, MXS, HOSTS, family=Family.INET6)
    assert route.hops == (
        Hop(10, "a.example", ("2001:db8::1",)),
        Hop(30, "c.example", ("2001:db8::3",)),
    )
    with pytest.raises(RouteTemporaryFailure, match="family mismatch"):
        build_route("example", RouteKind.MX, MXS[1:2], HOSTS, family=Family.INET6)


def test_duplicate_addresses_are_tried_once() -> None:
    hosts = {"a.example": A(("192.0.2.1",)), "b.example": A(("192.0.2.1", "192.0.2.2"))}
    route = build_route("example", RouteKind.MX, MXS[:2], hosts)
    assert route.hops == (
        Hop(10, "a.example", ("192.0.2.1",)),
        Hop(20, "b.example", ("192.0.2.2",)),
    )
    hosts = {"a.example": A(("192.0.2.1",)), "b.example": A(("192.0.2.1",))}
    route = build_route("example", RouteKind.MX, MXS[:2], hosts)
    assert [hop.host for hop in route.hops] == ["a.example"]


def test_hosts_without_addresses() -> None:
    hosts = {"a.example": A(error="A timeout"), "b.example": A(("192.0.2.2",))}
    route = build_route("example", RouteKind.MX, MXS[:2], hosts)
    assert [hop.host for hop in route.hops] == ["b.example"]
    with pytest.raises(RouteTemporaryFailure, match=r"a\.example: A timeout") as info:
        build_route("example", RouteKind.MX, MXS[:1], hosts)
    assert info.value.status == "4.4.3"
    with pytest.raises(RouteTemporaryFailure, match="No MX found") as info:
        build_route("example", RouteKind.MX, MXS, {})
    assert info.value.status == "4.4.4"

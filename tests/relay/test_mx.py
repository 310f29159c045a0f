"""Tests for mta.relay.mx: MX resolution against a real DNS server on loopback
(dnsmasq with its own zone; its SERVFAIL and silent names are forwarded to the
test DNS server of tests/net), plus stalls against the test DNS server alone,
and the hosts file read before A/AAAA queries (never for MX)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest
import trio

from mta.config.model import MtaLimits, Relay
from mta.delivery.result import Outcome
from mta.errors import RoutePermanentFailure, RouteTemporaryFailure, TemporaryFailure
from mta.net.hosts import HostsFile
from mta.net.resolver import DnsResolver
from mta.relay.mx import backup_name, family_limit, resolve_host, resolve_route
from mta.relay.route import Family, Hop, RouteKind
from mta.status import StatusCode
from tests.net.dnsserver import Behaviour, DnsServer
from tests.relay.dnsmasq import run_dnsmasq
from tests.relay.test_agent import Sessions, accepted, agent, envelope

ZONE = [
    "--local=/test/",  # names of .test are answered here alone: unknown => NXDOMAIN
    # preference: mx-a (10) before mx-b (20), whatever the answer's order
    "--mx-host=pref.test,mx-b.pref.test,20",
    "--mx-host=pref.test,mx-a.pref.test,10",
    "--host-record=mx-a.pref.test,192.0.2.10,2001:db8::10",
    "--host-record=mx-b.pref.test,192.0.2.20",
    # equal preferences
    "--mx-host=equal.test,one.equal.test,10",
    "--mx-host=equal.test,two.equal.test,10",
    "--mx-host=equal.test,three.equal.test,20",
    "--host-record=one.equal.test,192.0.2.1",
    "--host-record=two.equal.test,192.0.2.2",
    "--host-record=three.equal.test,192.0.2.3",
    # fallback: the best MX does not exist, or its lookup fails
    "--mx-host=fallback.test,dead.fallback.test,10",
    "--mx-host=fallback.test,live.fallback.test,20",
    "--host-record=live.fallback.test,192.0.2.21",
    "--mx-host=flaky.test,mx.broken.test,10",
    "--mx-host=flaky.test,live.fallback.test,20",
    "--mx-host=allbroken.test,mx.broken.test,10",
    # implicit MX, and a name with neither MX nor address
    "--host-record=implicit.test,192.0.2.30,2001:db8::30",
    "--txt-record=empty.test,nothing here",
    "--host-record=v6only.test,2001:db8::6",
    # Null MX (RFC 7505), "localhost" MX, and a Null MX next to a real one
    "--mx-host=nullmx.test,.,0",
    "--mx-host=lhmx.test,localhost,10",
    "--mx-host=mixed.test,.,0",
    "--mx-host=mixed.test,live.fallback.test,10",
    # backup MX: primary 10, us 20, another backup 30
    "--mx-host=backup.test,primary.backup.test,10",
    "--mx-host=backup.test,us.backup.test,20",
    "--mx-host=backup.test,other.backup.test,30",
    "--host-record=primary.backup.test,192.0.2.40",
    "--host-record=us.backup.test,192.0.2.41",
    "--host-record=other.backup.test,192.0.2.42",
]


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> DnsServer:
    """What dnsmasq forwards to for the names it cannot answer itself."""
    server = DnsServer()
    await nursery.start(server.serve)
    server.set("broken.test", Behaviour.SERVFAIL)
    server.set("mx.broken.test", Behaviour.SERVFAIL)
    server.set("stalled.test", Behaviour.DROP)
    return server


@pytest.fixture
async def dnsmasq(upstream: DnsServer) -> AsyncIterator[DnsResolver]:
    records = [
        *ZONE,
        f"--server=/broken.test/127.0.0.1#{upstream.port}",
        f"--server=/stalled.test/127.0.0.1#{upstream.port}",
    ]
    async with run_dnsmasq(records) as nameserver:
        yield DnsResolver([nameserver], timeout=1.0)


def hosts(route_hops: tuple[Hop, ...]) -> list[tuple[int, str]]:
    return [(hop.preference, hop.host) for hop in route_hops]


# -- through dnsmasq ------------------------------------------------------------------


async def test_mx_by_preference_with_both_families(dnsmasq: DnsResolver) -> None:
    route = await resolve_route("pref.test", resolver=dnsmasq)
    assert route.kind is RouteKind.MX
    assert route.hops == (
        Hop(10, "mx-a.pref.test", ("2001:db8::10", "192.0.2.10")),
        Hop(20, "mx-b.pref.test", ("192.0.2.20",)),
    )
    assert [a for _, a in route.targets()] == ["2001:db8::10", "192.0.2.10", "192.0.2.20"]


async def test_domain_is_case_insensitive_and_may_end_with_a_dot(dnsmasq: DnsResolver) -> None:
    route = await resolve_route("PREF.Test.", resolver=dnsmasq)
    assert route.domain == "pref.test"
    assert hosts(route.hops) == [(10, "mx-a.pref.test"), (20, "mx-b.pref.test")]


async def test_preferred_family_first(dnsmasq: DnsResolver) -> None:
    route = await resolve_route("pref.test", resolver=dnsmasq, prefer=Family.INET4)
    assert route.hops[0].addresses == ("192.0.2.10", "2001:db8::10")


async def test_family_restriction(dnsmasq: DnsResolver) -> None:
    route = await resolve_route("pref.test", resolver=dnsmasq, family=Family.INET6)
    assert route.hops == (Hop(10, "mx-a.pref.test", ("2001:db8::10",)),)
    route = await resolve_route("pref.test", resolver=dnsmasq, family=Family.INET4)
    assert [a for _, a in route.targets()] == ["192.0.2.10", "192.0.2.20"]
    with pytest.raises(RouteTemporaryFailure, match="family mismatch") as info:
        await resolve_route("v6only.test", resolver=dnsmasq, family=Family.INET4)
    assert info.value.status == "4.4.4"


async def test_equal_preferences_in_random_order(dnsmasq: DnsResolver) -> None:
    orders = set()
    for seed in range(12):
        route = await resolve_route("equal.test", resolver=dnsmasq, rng=random.Random(seed))
        orders.add(tuple(hop.host for hop in route.hops))
    assert orders == {
        ("one.equal.test", "two.equal.test", "three.equal.test"),
        ("two.equal.test", "one.equal.test", "three.equal.test"),
    }


async def test_falls_back_to_the_next_mx(dnsmasq: DnsResolver) -> None:
    # the best MX's name does not exist: skipped
    route = await resolve_route("fallback.test", resolver=dnsmasq)
    assert route.hops == (Hop(20, "live.fallback.test", ("192.0.2.21",)),)
    # the best MX's lookups answer SERVFAIL: skipped too
    route = await resolve_route("flaky.test", resolver=dnsmasq)
    assert route.hops == (Hop(20, "live.fallback.test", ("192.0.2.21",)),)


async def test_every_mx_lookup_failing_is_temporary(dnsmasq: DnsResolver) -> None:
    with pytest.raises(RouteTemporaryFailure, match=r"mx\.broken\.test") as info:
        await resolve_route("allbroken.test", resolver=dnsmasq)
    assert info.value.status == "4.4.3"


async def test_implicit_mx(dnsmasq: DnsResolver) -> None:
    route = await resolve_route("implicit.test", resolver=dnsmasq)
    assert route.kind is RouteKind.IMPLICIT
    assert route.hops == (Hop(0, "implicit.test", ("2001:db8::30", "192.0.2.30")),)


async def test_no_mx_and_no_address_is_temporary(dnsmasq: DnsResolver) -> None:
    # OpenSMTPD: DNS_ENOTFOUND, "No MX found for domain", a temporary failure
    with pytest.raises(RouteTemporaryFailure, match="No MX found") as info:
        await resolve_route("empty.test", resolver=dnsmasq)
    assert info.value.status == "4.4.4"


@pytest.mark.parametrize("domain", ["nullmx.test", "lhmx.test"])
async def test_null_mx_is_permanent(dnsmasq: DnsResolver, domain: str) -> None:
    with pytest.raises(RoutePermanentFailure, match="Domain does not accept mail") as info:
        await resolve_route(domain, resolver=dnsmasq)
    assert info.value.status == "5.1.10"


async def test_null_mx_reaches_the_relay_result_as_5_1_10(dnsmasq: DnsResolver) -> None:
    """The real resolution, through the relay agent: the envelope's result
    (what the envelope, the bounce and the log get) says 5.1.10."""
    relay = agent(
        "action out relay\n",
        Sessions(accepted),
        lambda plan: resolve_route(plan.domain, resolver=dnsmasq),
    )
    result = await relay(envelope("bob@nullmx.test"))
    assert (result.outcome, result.text) == (Outcome.PERMFAIL, "Domain does not accept mail")
    assert result.esc == StatusCode(5, 1, 10) and result.status == "5.1.10"


async def test_null_mx_next_to_a_real_mx_is_ignored(dnsmasq: DnsResolver) -> None:
    route = await resolve_route("mixed.test", resolver=dnsmasq)
    assert route.hops == (Hop(10, "live.fallback.test", ("192.0.2.21",)),)


async def test_nxdomain_is_permanent(dnsmasq: DnsResolver) -> None:
    with pytest.raises(RoutePermanentFailure, match="Domain does not exist") as info:
        await resolve_route("nx.test", resolver=dnsmasq)
    assert info.value.status == "5.1.2"


async def test_servfail_is_temporary(dnsmasq: DnsResolver, upstream: DnsServer) -> None:
    # check that dnsmasq itself answers SERVFAIL (relaying its upstream's)
    response = await trio.to_thread.run_sync(_servfail_probe, dnsmasq)
    assert response == "SERVFAIL"
    with pytest.raises(RouteTemporaryFailure, match="MX lookup") as info:
        await resolve_route("broken.test", resolver=dnsmasq)
    assert info.value.status == "4.4.3"
    assert isinstance(info.value, TemporaryFailure)


def _servfail_probe(resolver: DnsResolver) -> str:
    import dns.query
    import dns.rcode

    server = resolver.nameservers[0]
    query = dns.message.make_query("broken.test", "MX")
    answer = dns.query.udp(query, server.host, port=server.port, timeout=2)
    return dns.rcode.to_text(answer.rcode())


async def test_refused_is_temporary(dnsmasq: DnsResolver) -> None:
    # a name outside dnsmasq's zones, with no upstream: REFUSED
    with pytest.raises(RouteTemporaryFailure) as info:
        await resolve_route("example.invalid", resolver=dnsmasq)
    assert info.value.status == "4.4.3"


async def test_stalled_upstream_is_temporary_within_the_timeout(dnsmasq: DnsResolver) -> None:
    start = trio.current_time()
    with pytest.raises(RouteTemporaryFailure, match=r"timeout|timed out"):
        await resolve_route("stalled.test", resolver=dnsmasq, timeout=0.5)
    assert trio.current_time() - start < 1.5


async def test_backup_uses_only_more_preferred_mxs(dnsmasq: DnsResolver) -> None:
    route = await resolve_route("backup.test", resolver=dnsmasq, backup_name="US.backup.test.")
    assert route.hops == (Hop(10, "primary.backup.test", ("192.0.2.40",)),)


async def test_backup_when_we_are_the_best_mx(dnsmasq: DnsResolver) -> None:
    with pytest.raises(RouteTemporaryFailure, match="backup") as info:
        await resolve_route("backup.test", resolver=dnsmasq, backup_name="primary.backup.test")
    assert info.value.status == "4.4.4"


async def test_backup_name_not_listed_uses_every_mx(dnsmasq: DnsResolver) -> None:
    route = await resolve_route("backup.test", resolver=dnsmasq, backup_name="elsewhere.example")
    assert hosts(route.hops) == [
        (10, "primary.backup.test"),
        (20, "us.backup.test"),
        (30, "other.backup.test"),
    ]


async def test_our_own_mx_and_less_preferred_ones_are_pruned(dnsmasq: DnsResolver) -> None:
    # by address (the address we receive mail on)...
    route = await resolve_route("backup.test", resolver=dnsmasq, our_addresses={"192.0.2.41"})
    assert hosts(route.hops) == [(10, "primary.backup.test")]
    # ...or by name
    route = await resolve_route("backup.test", resolver=dnsmasq, our_names={"other.backup.test"})
    assert hosts(route.hops) == [(10, "primary.backup.test"), (20, "us.backup.test")]


async def test_mx_pointing_back_to_us_is_a_loop(dnsmasq: DnsResolver) -> None:
    with pytest.raises(RoutePermanentFailure, match="points back to us") as info:
        await resolve_route("backup.test", resolver=dnsmasq, our_names={"primary.backup.test"})
    assert info.value.status == "5.4.6"
    with pytest.raises(RoutePermanentFailure, match="points back to us"):
        await resolve_route("implicit.test", resolver=dnsmasq, our_addresses={"192.0.2.30"})


# -- without DNS ----------------------------------------------------------------------


async def test_address_literals_bypass_dns() -> None:
    route = await resolve_route("[192.0.2.1]", resolver=None)
    assert route.kind is RouteKind.LITERAL
    assert route.hops == (Hop(-1, "[192.0.2.1]", ("192.0.2.1",)),)
    route = await resolve_route("[IPv6:2001:DB8::1]", resolver=None)
    assert route.hops == (Hop(-1, "[IPv6:2001:DB8::1]", ("2001:db8::1",)),)


@pytest.mark.parametrize("domain", ["[2001:db8::1]", "[300.1.1.1]", "[192.0.2.1", "", "a..b"])
async def test_invalid_destinations_are_permanent(domain: str) -> None:
    with pytest.raises(RoutePermanentFailure) as info:
        await resolve_route(domain, resolver=None)
    assert info.value.status == "5.1.2"


async def test_no_resolver_is_temporary() -> None:
    with pytest.raises(RouteTemporaryFailure, match="no DNS resolver"):
        await resolve_route("example.org", resolver=None)


# -- the hosts file before A/AAAA, never for MX ---------------------------------------

HOSTS = """\
192.0.2.70 smarthost.lab relay
2001:db8::70 smarthost.lab
192.0.2.71 mx1.hosts.test
192.0.2.72 hosts.test nx.test
"""


@pytest.fixture
def hostsfile(tmp_path: Path) -> HostsFile:
    (tmp_path / "hosts").write_text(HOSTS)
    return HostsFile(str(tmp_path / "hosts"))


@pytest.fixture
async def server(nursery: trio.Nursery) -> DnsServer:
    s = DnsServer()
    await nursery.start(s.serve)
    s.add("hosts.test", "MX", "10 mx1.hosts.test.", "20 mx2.hosts.test.")
    s.add("mx1.hosts.test", "A", "198.51.100.1")  # the hosts file wins
    s.add("mx2.hosts.test", "A", "198.51.100.2")
    s.add("implicit.hosts.test", "A", "198.51.100.3")
    s.add("smarthost.lab", "A", "198.51.100.4")
    s.add("dnsonly.lab", "A", "198.51.100.5")
    return s


async def test_smarthost_from_the_hosts_file(server: DnsServer, hostsfile: HostsFile) -> None:
    resolver = DnsResolver([server.nameserver], timeout=1.0)
    for name in ("smarthost.lab", "SmartHost.LAB."):
        route = await resolve_host(name, resolver=resolver, hosts=hostsfile)
        assert route.kind is RouteKind.IMPLICIT
        assert route.hops == (Hop(0, "smarthost.lab", ("2001:db8::70", "192.0.2.70")),)
    route = await resolve_host("relay", resolver=resolver, hosts=hostsfile, prefer=Family.INET4)
    assert route.hops == (Hop(0, "relay", ("192.0.2.70",)),)
    assert server.queries == []
    route = await resolve_host("dnsonly.lab", resolver=resolver, hosts=hostsfile)
    assert route.hops == (Hop(0, "dnsonly.lab", ("198.51.100.5",)),)
    assert set(server.queries) == {("dnsonly.lab.", "A"), ("dnsonly.lab.", "AAAA")}


async def test_smarthost_in_the_hosts_file_needs_no_dns(hostsfile: HostsFile) -> None:
    route = await resolve_host("smarthost.lab", resolver=None, hosts=hostsfile)
    assert route.hops == (Hop(0, "smarthost.lab", ("2001:db8::70", "192.0.2.70")),)
    with pytest.raises(RouteTemporaryFailure, match="no DNS resolver"):
        await resolve_host("dnsonly.lab", resolver=None, hosts=hostsfile)
    with pytest.raises(RouteTemporaryFailure, match="no DNS resolver"):
        await resolve_host("smarthost.lab", resolver=None)


async def test_mx_hosts_from_the_hosts_file(server: DnsServer, hostsfile: HostsFile) -> None:
    resolver = DnsResolver([server.nameserver], timeout=1.0)
    route = await resolve_route("hosts.test", resolver=resolver, hosts=hostsfile)
    assert route.kind is RouteKind.MX  # the MX from DNS, though the domain is in the file
    assert route.hops == (
        Hop(10, "mx1.hosts.test", ("192.0.2.71",)),
        Hop(20, "mx2.hosts.test", ("198.51.100.2",)),
    )
    assert ("hosts.test.", "MX") in server.queries
    assert not any(name == "mx1.hosts.test." for name, _ in server.queries)
    assert ("mx2.hosts.test.", "A") in server.queries


async def test_the_hosts_file_has_no_mx(server: DnsServer, hostsfile: HostsFile) -> None:
    resolver = DnsResolver([server.nameserver], timeout=1.0)
    with pytest.raises(RoutePermanentFailure, match="Domain does not exist"):
        await resolve_route("nx.test", resolver=resolver, hosts=hostsfile)
    with pytest.raises(RouteTemporaryFailure, match="no DNS resolver"):
        await resolve_route("hosts.test", resolver=None, hosts=hostsfile)


async def test_implicit_mx_from_the_hosts_file(server: DnsServer, tmp_path: Path) -> None:
    resolver = DnsResolver([server.nameserver], timeout=1.0)
    (tmp_path / "hosts").write_text("192.0.2.73 implicit.hosts.test\n")
    hostsfile = HostsFile(str(tmp_path / "hosts"))
    route = await resolve_route("implicit.hosts.test", resolver=resolver, hosts=hostsfile)
    assert route.kind is RouteKind.IMPLICIT
    assert route.hops == (Hop(0, "implicit.hosts.test", ("192.0.2.73",)),)
    assert set(server.queries) == {("implicit.hosts.test.", "MX")}


# -- stalls, against the test DNS server alone -----------------------------------------


class _NoAAAA(DnsServer):
    """Answers everything but AAAA queries, which it never answers."""

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        if query.question[0].rdtype == dns.rdatatype.AAAA:
            return None
        return super().answer(query)


async def test_stalled_mx_query_is_temporary_within_the_timeout(nursery: trio.Nursery) -> None:
    server = DnsServer()
    await nursery.start(server.serve)
    server.set("stalled.test", Behaviour.DROP)
    resolver = DnsResolver([server.nameserver], timeout=0.3)
    start = trio.current_time()
    with pytest.raises(RouteTemporaryFailure) as info:
        await resolve_route("stalled.test", resolver=resolver)
    assert info.value.status == "4.4.3"
    assert trio.current_time() - start < 1.0


async def test_stalled_aaaa_still_gives_the_ipv4_route(nursery: trio.Nursery) -> None:
    server = _NoAAAA()
    await nursery.start(server.serve)
    server.add("slow6.test", "MX", "10 mx.slow6.test.")
    server.add("mx.slow6.test", "A", "192.0.2.60")
    resolver = DnsResolver([server.nameserver], timeout=0.3)
    start = trio.current_time()
    route = await resolve_route("slow6.test", resolver=resolver, timeout=0.6)
    assert route.hops == (Hop(10, "mx.slow6.test", ("192.0.2.60",)),)
    assert trio.current_time() - start < 1.2


# -- configuration helpers ------------------------------------------------------------


def test_backup_name_from_the_relay_action() -> None:
    assert backup_name(Relay(), "mx.example.org") is None
    assert backup_name(Relay(backup=True), "mx.example.org") == "mx.example.org"
    assert backup_name(Relay(backup=True, backup_mx="b.example.org"), "x") == "b.example.org"
    assert backup_name(Relay(backup_mx="b.example.org"), "x") == "b.example.org"


def test_family_limit_per_domain_else_default() -> None:
    limits = {
        "": MtaLimits(family="inet6"),
        "gmail.com": MtaLimits(family="inet4"),
        "example.org": MtaLimits((("max-conn", 2),)),
    }
    assert family_limit(limits, "GMail.com.") is Family.INET4
    assert family_limit(limits, "other.example") is Family.INET6
    assert family_limit(limits, "example.org") is None  # its own entry, no family
    assert family_limit({}, "gmail.com") is None

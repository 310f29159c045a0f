"""MX resolution on trio: the route to a destination domain, as OpenSMTPD's
``dns.c`` finds it, with the RFC 5321 §5.1 rules it leaves out.

``await resolve_route(domain, resolver=..., ...)`` returns a
:class:`~mta.relay.route.Route` (hops most preferred first, each with its
addresses interleaved by family for happy eyeballs) or raises
:class:`~mta.errors.RouteTemporaryFailure` / :class:`~mta.errors.RoutePermanentFailure`
(``text`` for the log and bounce, ``status`` the enhanced status code):

- address literal (``[192.0.2.1]``, ``[IPv6:...]``): used as is, no DNS;
- MX query: NXDOMAIN => permanent ``5.1.2`` "Domain does not exist"; SERVFAIL,
  REFUSED, timeout, no resolver => temporary ``4.4.3``; Null MX only => permanent
  ``5.1.10``; no MX (NODATA) => implicit MX, the domain's own A/AAAA;
- the addresses of every MX host (or of the domain, for an implicit MX), all
  looked up at once: from the hosts file when it lists the host, as the
  system's ``getaddrinfo`` does (never for the MX query itself: a hosts file
  has no MX records), else its A and AAAA records; a host whose lookups fail
  is skipped, and when no host has an address the failure is temporary;
- pruning (``backup`` / ``backup mx NAME``, ourselves, ``mta limit`` family)
  and ordering are the pure functions of :mod:`mta.relay.route`.

:func:`resolve_host` is the route to a smarthost (``relay host``): its
addresses only, no MX, from the hosts file first, as for an MX host; an IP
address or address literal needs no lookup.

The whole resolution takes at most ``timeout`` seconds (two rounds of the
resolver's query timeout by default).  :func:`backup_name` and
:func:`family_limit` read the relay action and ``mta limit`` settings of the
configuration.  ``our_addresses`` should be the addresses we accept mail on at
port 25 (not every local address: lab instances on one machine relay to each
other over loopback).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Collection, Mapping

import trio

from mta.config.model import MtaLimits, Relay
from mta.errors import RoutePermanentFailure, RouteTemporaryFailure
from mta.log import get_logger, visible
from mta.net.hosts import HostsFile
from mta.net.resolver import DnsResolver, Lookup, LookupStatus
from mta.relay.route import (
    Family,
    Hop,
    HostAddresses,
    Mx,
    Route,
    RouteKind,
    backup_preference,
    build_route,
    interleave,
    literal_route,
    order_mxs,
    parse_literal,
    usable_mxs,
)

__all__ = ["backup_name", "family_limit", "resolve_host", "resolve_route"]

log = get_logger("mta")

_ADDRESS_TYPES = ("A", "AAAA")  # dns.rdatatype names, in the order they are read


def backup_name(relay: Relay, hostname: str) -> str | None:
    """The backup MX name of a relay action: ``backup mx NAME``, our hostname for
    plain ``backup``, None when the action is not a backup relay."""
    if relay.backup_mx is not None:
        return relay.backup_mx
    return hostname if relay.backup else None


def family_limit(limits: Mapping[str, MtaLimits], domain: str) -> Family | None:
    """The ``mta limit [for domain D] inet4|inet6`` restriction for ``domain``: its
    own ``mta limit for domain`` entry when there is one, else the default's."""
    wanted = domain.rstrip(".").lower()
    for key, value in limits.items():
        if key and key.rstrip(".").lower() == wanted:
            return Family.from_config(value.family)
    default = limits.get("")
    return Family.from_config(default.family) if default is not None else None


def _mx(record: object) -> Mx:
    import dns.name
    import dns.rdtypes.ANY.MX

    assert isinstance(record, dns.rdtypes.ANY.MX.MX)
    exchange = record.exchange
    host = "" if exchange == dns.name.root else exchange.to_text(omit_final_dot=True).lower()
    return Mx(record.preference, host)


class _Clock:
    """What is left of the whole resolution's time budget."""

    def __init__(self, timeout: float) -> None:
        self.deadline = trio.current_time() + timeout

    def left(self) -> float:
        return max(0.0, self.deadline - trio.current_time())


async def _listed(hosts: HostsFile | None, host: str) -> HostAddresses | None:
    """The addresses of ``host`` in the hosts file, None when it has none."""
    if hosts is None or not host:
        return None
    found = (await hosts.current()).addresses_of(host)
    return HostAddresses(found) if found else None


async def _host_addresses(
    resolver: DnsResolver, host: str, clock: _Clock, hosts: HostsFile | None
) -> HostAddresses:
    """The addresses of ``host``: those the hosts file lists, else its A and
    AAAA records, queried at once; a host named by an IP address (which
    OpenSMTPD's getaddrinfo accepts) is that address."""
    try:
        return HostAddresses((str(ipaddress.ip_address(host)),))
    except ValueError:
        pass
    if not host:  # a "." target at a preference other than 0
        return HostAddresses()
    listed = await _listed(hosts, host)
    if listed is not None:
        return listed
    import dns.rdatatype

    lookups: dict[str, Lookup] = {}

    async def one(rdtype: str) -> None:
        lookups[rdtype] = await resolver.query(
            host, dns.rdatatype.RdataType[rdtype], timeout=clock.left()
        )

    async with trio.open_nursery() as nursery:
        for rdtype in _ADDRESS_TYPES:
            nursery.start_soon(one, rdtype)
    addresses: list[str] = []
    errors: list[str] = []
    for rdtype in _ADDRESS_TYPES:
        lookup = lookups[rdtype]
        if lookup.status is LookupStatus.FOUND:
            addresses += [record.to_text() for record in lookup.records]
        elif lookup.status is LookupStatus.ERROR:
            errors.append(f"{rdtype} {lookup.reason or 'failed'}")
    return HostAddresses(tuple(addresses), ", ".join(errors) or None)


async def _resolve_hosts(
    resolver: DnsResolver, names: Collection[str], clock: _Clock, hosts: HostsFile | None
) -> dict[str, HostAddresses]:
    found: dict[str, HostAddresses] = {}

    async def one(host: str) -> None:
        found[host] = await _host_addresses(resolver, host, clock, hosts)

    async with trio.open_nursery() as nursery:
        for host in dict.fromkeys(names):
            nursery.start_soon(one, host)
    return found


async def resolve_route(
    domain: str,
    *,
    resolver: DnsResolver | None,
    hosts: HostsFile | None = None,
    backup_name: str | None = None,
    our_names: Collection[str] = (),
    our_addresses: Collection[str] = (),
    family: Family | None = None,
    prefer: Family = Family.INET6,
    rng: random.Random | None = None,
    timeout: float | None = None,
) -> Route:
    """The route to ``domain`` (see the module docstring).

    ``resolver``: None when DNS is off (only literals then work).  ``hosts``:
    the hosts file for the MX hosts' addresses (None: none).
    ``backup_name``: :func:`backup_name` of the relay action.  ``our_names`` /
    ``our_addresses``: our host names and the addresses we receive mail on.
    ``family``: :func:`family_limit`.  ``prefer``: the family tried first (IPv6,
    as RFC 8305 and OpenSMTPD portable).  ``rng``: for the order of equal MXs.
    """
    import dns.exception
    import dns.name
    import dns.rdatatype
    import dns.rdtypes.ANY.MX

    literal = parse_literal(domain)
    if literal is not None:
        return literal_route(domain, literal, our_addresses=our_addresses, family=family)
    name = domain.strip().rstrip(".").lower()
    try:
        qname = dns.name.from_text(name) if name else None
    except dns.exception.DNSException:
        qname = None
    if qname is None or name.startswith("."):
        raise RoutePermanentFailure("Invalid domain name", "5.1.2")
    if resolver is None:
        raise RouteTemporaryFailure("Temporary failure in MX lookup (no DNS resolver)", "4.4.3")
    clock = _Clock(2 * resolver.timeout if timeout is None else timeout)

    answer = await resolver.query(qname, dns.rdatatype.MX, timeout=clock.left())
    if answer.status is LookupStatus.NXDOMAIN:
        raise RoutePermanentFailure("Domain does not exist", "5.1.2")
    if answer.status is LookupStatus.ERROR:
        log.info("smtp-out: Failed to resolve MX for %s: %s", visible(name), answer.reason)
        raise RouteTemporaryFailure(
            f"Temporary failure in MX lookup ({answer.reason or 'failed'})", "4.4.3"
        )
    if answer.status is LookupStatus.FOUND:
        records = [_mx(r) for r in answer.records if isinstance(r, dns.rdtypes.ANY.MX.MX)]
        mxs = order_mxs(usable_mxs(records), rng)
        kind = RouteKind.MX
    else:
        records = []
        mxs = (Mx(0, name),)
        kind = RouteKind.IMPLICIT
    if backup_name is not None and backup_preference(records, backup_name) is None:
        log.warning(
            "warn: Couldn't find backup preference for %s: %s is not one of its MXs",
            visible(name),
            visible(backup_name),
        )
    if clock.left() <= 0:
        raise RouteTemporaryFailure("Temporary failure in MX lookup (timeout)", "4.4.3")
    addresses = await _resolve_hosts(resolver, [mx.host for mx in mxs], clock, hosts)
    return build_route(
        name,
        kind,
        mxs,
        addresses,
        backup_name=backup_name,
        our_names=our_names,
        our_addresses=our_addresses,
        family=family,
        prefer=prefer,
    )


async def resolve_host(
    host: str,
    *,
    resolver: DnsResolver | None,
    hosts: HostsFile | None = None,
    prefer: Family = Family.INET6,
    timeout: float | None = None,
) -> Route:
    """The route to a smarthost: ``host`` itself when it is an IP address or an
    address literal, else its addresses in ``hosts``, else its A and AAAA
    records (temporary failures: no resolver, a failed lookup, no address)."""
    literal = parse_literal(host)
    if literal is not None:
        return literal_route(host, literal)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return Route(host, RouteKind.LITERAL, (Hop(-1, host, (str(address),)),))
    name = host.strip().rstrip(".").lower()
    listed = await _listed(hosts, name)
    if listed is not None:
        return _smarthost_route(name, listed, prefer)
    if resolver is None:
        raise RouteTemporaryFailure(
            f"Temporary failure resolving {visible(name)} (no DNS resolver)", "4.4.3"
        )
    clock = _Clock(2 * resolver.timeout if timeout is None else timeout)
    found = await _host_addresses(resolver, name, clock, None)  # not listed: DNS
    if not found.addresses:
        reason = found.error or "Host not found"
        raise RouteTemporaryFailure(f"{visible(name)}: {reason}", "4.4.4")
    return _smarthost_route(name, found, prefer)


def _smarthost_route(name: str, found: HostAddresses, prefer: Family) -> Route:
    return Route(name, RouteKind.IMPLICIT, (Hop(0, name, interleave(found.addresses, prefer)),))

"""MX routing without I/O: from a domain's MX records and its hosts' addresses to
the ordered list of hosts and addresses to try (RFC 5321 §5.1, RFC 7505, RFC 8305,
OpenSMTPD's ``dns.c`` / ``mta_find_route``).

:mod:`mta.relay.mx` does the DNS queries and feeds these pure functions:

- :func:`parse_literal` - ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]`` domains bypass DNS
  (an untagged IPv6 literal is refused, RFC 5321 §4.1.3);
- :func:`usable_mxs` - drops Null MX targets (``0 .``, or any MX named ``localhost``
  as OpenSMTPD 7.5 does); only those => :class:`RoutePermanentFailure` ``5.1.10``
  (RFC 7505 §4.1);
- :func:`order_mxs` - by preference, equal preferences in random order;
- :func:`build_route` - prunes for ``backup`` (only MXs strictly more preferred
  than the backup name; none left => temporary failure, as OpenSMTPD) and for
  ourselves (RFC 5321 §5.1: an MX that is us, by name or address, and every
  less preferred one; none left => ``5.4.6`` routing loop), applies the family
  restriction of ``mta limit ... inet4|inet6`` (OpenSMTPD: other-family
  addresses are never used), drops duplicate addresses and hosts without any,
  and interleaves each host's addresses by family for happy eyeballs (RFC 8305
  §4), the preferred family first.

Enhanced status codes: ``5.1.2`` bad destination system (NXDOMAIN, bad name),
``5.1.10`` Null MX, ``5.4.6`` loop, ``4.4.3`` DNS temporary failure, ``4.4.4`` no
usable route now.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence

import attrs

from mta.errors import RoutePermanentFailure, RouteTemporaryFailure

__all__ = [
    "Family",
    "Hop",
    "HostAddresses",
    "Mx",
    "Route",
    "RouteKind",
    "backup_preference",
    "build_route",
    "interleave",
    "literal_route",
    "normalize_name",
    "order_mxs",
    "parse_literal",
    "usable_mxs",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Family(enum.Enum):
    """An address family, spelled as in ``smtpd.conf`` (``mta limit inet4``)."""

    INET4 = "inet4"
    INET6 = "inet6"

    @classmethod
    def of(cls, address: str | IPAddress) -> Family:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        return cls.INET4 if ip.version == 4 else cls.INET6

    @classmethod
    def from_config(cls, text: str | None) -> Family | None:
        """``"inet4"`` / ``"inet6"`` / None, as the configuration model keeps it."""
        return None if text is None else cls(text)


class RouteKind(enum.Enum):
    """Where a route's hosts came from."""

    MX = "mx"
    IMPLICIT = "implicit"  # no MX: the domain's own A/AAAA (RFC 5321 §5.1)
    LITERAL = "literal"  # an address literal, no DNS


@attrs.frozen
class Mx:
    """One MX record: ``host`` normalised (lower case, no final dot; ``""`` is the root)."""

    preference: int
    host: str


@attrs.frozen
class HostAddresses:
    """What the A/AAAA lookups of one host gave: its addresses, and the reason of a
    temporary failure (SERVFAIL, timeout) when one of the lookups had one."""

    addresses: tuple[str, ...] = ()
    error: str | None = None


@attrs.frozen
class Hop:
    """One host to try: its MX preference (-1 for a literal), its name (the
    literal for an address literal; the TLS server name otherwise) and its
    addresses in the order to try them."""

    preference: int
    host: str
    addresses: tuple[str, ...]


@attrs.frozen
class Route:
    """The hosts of a destination domain, most preferred first."""

    domain: str
    kind: RouteKind
    hops: tuple[Hop, ...]

    def targets(self) -> Iterator[tuple[Hop, str]]:
        """Every (hop, address) pair in the order to try them."""
        for hop in self.hops:
            for address in hop.addresses:
                yield hop, address


def normalize_name(name: str) -> str:
    """A host or domain name for comparisons: lower case, without the final dot."""
    return name.strip().rstrip(".").lower()


def parse_literal(domain: str) -> IPAddress | None:
    """The address of an address-literal domain (``[192.0.2.1]``,
    ``[IPv6:2001:db8::1]``), None for a domain name; a malformed literal is a
    :class:`RoutePermanentFailure`."""
    if not domain.startswith("["):
        return None
    if not domain.endswith("]") or len(domain) < 3:
        raise RoutePermanentFailure("Invalid address literal", "5.1.2")
    body = domain[1:-1]
    try:
        if body[:5].lower() == "ipv6:":
            return ipaddress.IPv6Address(body[5:])
        return ipaddress.IPv4Address(body)
    except ValueError:
        raise RoutePermanentFailure("Invalid address literal", "5.1.2") from None


def _check_family(addresses: Sequence[str], family: Family | None) -> tuple[str, ...]:
    if family is None:
        return tuple(addresses)
    kept = tuple(a for a in addresses if Family.of(a) is family)
    if addresses and not kept:
        raise RouteTemporaryFailure("Address family mismatch on destination MXs", "4.4.4")
    return kept


def literal_route(
    domain: str,
    address: IPAddress,
    *,
    our_addresses: Collection[str] = (),
    family: Family | None = None,
) -> Route:
    """The route of an address literal: that address alone (a loop when it is ours)."""
    text = str(address)
    if text in {_canonical(a) for a in our_addresses}:
        raise RoutePermanentFailure(f"Address literal {domain} points back to us", "5.4.6")
    _check_family([text], family)
    return Route(domain, RouteKind.LITERAL, (Hop(-1, domain, (text,)),))


def is_null_mx(mx: Mx) -> bool:
    """RFC 7505's ``0 .``, or an MX named ``localhost`` (OpenSMTPD 7.5)."""
    return (mx.preference == 0 and mx.host == "") or mx.host == "localhost"


def usable_mxs(records: Iterable[Mx]) -> tuple[Mx, ...]:
    """The MXs to use: Null MX entries dropped, a permanent failure when only
    Null MX entries were published.  A ``.`` target at another preference is
    kept: it has no addresses and is dropped later (as OpenSMTPD)."""
    records = tuple(records)
    kept = tuple(mx for mx in records if not is_null_mx(mx))
    if records and not kept:
        raise RoutePermanentFailure("Domain does not accept mail", "5.1.10")
    return kept


def order_mxs(mxs: Iterable[Mx], rng: random.Random | None = None) -> tuple[Mx, ...]:
    """By preference, lowest first; equal preferences shuffled (RFC 5321 §5.1 MUST)."""
    rng = rng if rng is not None else random.Random()
    shuffled = list(mxs)
    rng.shuffle(shuffled)
    return tuple(sorted(shuffled, key=lambda mx: mx.preference))  # sort is stable


def backup_preference(mxs: Iterable[Mx], name: str) -> int | None:
    """Our preference as a backup MX named ``name``; None when not listed."""
    wanted = normalize_name(name)
    found = [mx.preference for mx in mxs if mx.host == wanted]
    return min(found) if found else None


def interleave(addresses: Iterable[str], prefer: Family = Family.INET6) -> tuple[str, ...]:
    """RFC 8305 §4: alternate families, starting with ``prefer``; order within a
    family kept."""
    first = [a for a in addresses if Family.of(a) is prefer]
    second = [a for a in addresses if Family.of(a) is not prefer]
    out: list[str] = []
    for i in range(max(len(first), len(second))):
        out += first[i : i + 1] + second[i : i + 1]
    return tuple(out)


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.partition("%")[0]))
    except ValueError:
        return address


def build_route(
    domain: str,
    kind: RouteKind,
    mxs: Sequence[Mx],
    hosts: Mapping[str, HostAddresses],
    *,
    backup_name: str | None = None,
    our_names: Collection[str] = (),
    our_addresses: Collection[str] = (),
    family: Family | None = None,
    prefer: Family = Family.INET6,
) -> Route:
    """The route from ordered, usable ``mxs`` (for an implicit MX, one entry: the
    domain at preference 0) and each host's lookups.

    ``backup_name``: relay as a backup MX of that name (only strictly more
    preferred MXs; the name not listed => all).  ``our_names`` /
    ``our_addresses``: what counts as us (an MX with one of our names or
    addresses, and every less preferred one, is pruned).  ``family``: only
    addresses of that family.  ``prefer``: the family tried first.
    """
    candidates = list(mxs)
    if backup_name is not None:
        ours = backup_preference(candidates, backup_name)
        if ours is not None:
            candidates = [mx for mx in candidates if mx.preference < ours]
            if not candidates:
                raise RouteTemporaryFailure(
                    f"No MX more preferred than the backup MX {normalize_name(backup_name)}",
                    "4.4.4",
                )
    names = {normalize_name(n) for n in our_names}
    if backup_name is not None:
        names.add(normalize_name(backup_name))
    addresses = {_canonical(a) for a in our_addresses}
    for mx in candidates:
        found = hosts.get(mx.host, HostAddresses())
        if mx.host in names or addresses.intersection(_canonical(a) for a in found.addresses):
            cutoff = mx.preference
            candidates = [c for c in candidates if c.preference < cutoff]
            if not candidates:
                raise RoutePermanentFailure(f"MX list for {domain} points back to us", "5.4.6")
            break

    hops: list[Hop] = []
    seen: set[str] = set()
    errors: list[str] = []
    mismatch = False
    for mx in candidates:
        found = hosts.get(mx.host, HostAddresses())
        if found.error is not None:
            errors.append(f"{mx.host or '.'}: {found.error}")
        unique = [a for a in dict.fromkeys(_canonical(a) for a in found.addresses) if a not in seen]
        try:
            kept = _check_family(unique, family)
        except RouteTemporaryFailure:
            mismatch = True
            continue
        if kept:
            seen.update(kept)
            hops.append(Hop(mx.preference, mx.host, interleave(kept, prefer)))
    if hops:
        return Route(domain, kind, tuple(hops))
    if mismatch:
        raise RouteTemporaryFailure("Address family mismatch on destination MXs", "4.4.4")
    if errors:
        raise RouteTemporaryFailure(
            "Temporary failure in MX lookup (" + "; ".join(errors) + ")", "4.4.3"
        )
    raise RouteTemporaryFailure("No MX found for domain", "4.4.4")

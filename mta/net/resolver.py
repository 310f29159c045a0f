"""DNS queries for the daemon: dnspython's asynchronous resolver on trio, with
short timeouts, configured from ``MTA_DNS`` or ``/etc/resolv.conf``.

``MTA_DNS`` lists nameservers as ``127.0.0.1:5353,[::1]:5353`` (port optional,
53 by default; a bare IPv6 address takes no port), so that tests and sandboxed
labs never depend on the machine's resolver; ``MTA_DNS=none`` (or empty) means
no DNS at all.  When it is unset,
``/etc/resolv.conf`` is read.  When neither gives a nameserver there is no
resolver at all and callers answer "unknown" at once.

This is DNS alone: the callers (reverse DNS, relay routes) look in the hosts
file first (:mod:`mta.net.hosts`), as the system's resolver does.

A query never raises: it returns a :class:`Lookup` whose status tells a
missing name (NXDOMAIN), a name without such records (NODATA) and a failure
(SERVFAIL, refused, timeout, malformed answer) apart.

dnspython is imported at the first query, not with this module: a server
whose clients and routes are all in the hosts file never loads it.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from mta.log import get_logger

if TYPE_CHECKING:  # dnspython is imported at the first query (a server may never make one)
    import dns.name
    import dns.rdata
    import dns.rdatatype

__all__ = [
    "DEFAULT_TIMEOUT",
    "ENV_VAR",
    "RESOLV_CONF",
    "DnsResolver",
    "Lookup",
    "LookupStatus",
    "Nameserver",
    "load_nameservers",
    "parse_nameservers",
    "resolv_conf_nameservers",
]

ENV_VAR = "MTA_DNS"
RESOLV_CONF = "/etc/resolv.conf"
DEFAULT_TIMEOUT = 2.0
"""Seconds a whole query may take, every nameserver and retry included."""

log = get_logger("dns")


@attrs.frozen
class Nameserver:
    """A nameserver address and UDP/TCP port."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r}")
    return int(text)


def parse_nameservers(text: str) -> tuple[Nameserver, ...]:
    """Parse ``MTA_DNS``: comma-separated ``ip``, ``ip:port``, ``[ipv6]`` or
    ``[ipv6]:port``; ValueError when an item is not one of those."""
    servers = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"bad nameserver {item!r}")
            servers.append(Nameserver(_address(host), _port(rest[1:]) if rest else 53))
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
            servers.append(Nameserver(_address(host), _port(port)))
        else:
            servers.append(Nameserver(_address(item)))
    if not servers:
        raise ValueError("no nameserver given")
    return tuple(servers)


def load_nameservers(
    environ: Mapping[str, str] | None = None, resolv_conf: str = RESOLV_CONF
) -> tuple[Nameserver, ...]:
    """The nameservers to use: ``MTA_DNS`` when set (empty or ``none`` switches
    DNS off; an invalid value gives none, with a warning), else those of
    ``resolv_conf``; empty when neither works."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR)
    if value is not None:
        if value.strip().lower() in ("", "none"):
            return ()  # DNS switched off on purpose
        try:
            return parse_nameservers(value)
        except ValueError as exc:
            log.warning("dns: ignoring %s=%r: %s; no DNS lookups", ENV_VAR, value, exc)
            return ()
    try:
        with open(resolv_conf, encoding="utf-8", errors="replace") as f:
            listed = resolv_conf_nameservers(f.read())
    except OSError as exc:
        log.warning("dns: cannot read %s (%s); no DNS lookups", resolv_conf, exc.strerror)
        return ()
    servers = []
    for address in listed:
        try:
            servers.append(Nameserver(_address(address)))
        except ValueError:
            continue
    if not servers:
        log.warning("dns: no usable nameserver in %s; no DNS lookups", resolv_conf)
    return tuple(servers)


def resolv_conf_nameservers(text: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf, in order, as the C
    library and dnspython read them: a line ``nameserver ADDRESS``, comments
    from ``#`` or ``;`` at the start of a line; other lines ignored."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(fields[1])
    return found


class LookupStatus(enum.Enum):
    """How a query ended."""

    FOUND = "found"
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, without records of that type
    ERROR = "error"  # SERVFAIL, refused, timeout, malformed: try again later


@attrs.frozen
class Lookup:
    """The outcome of one query; ``records`` hold the answer when FOUND."""

    status: LookupStatus
    records: tuple[dns.rdata.Rdata, ...] = ()
    reason: str = ""


class DnsResolver:
    """Asynchronous DNS queries on trio against fixed nameservers."""

    def __init__(self, nameservers: Sequence[Nameserver], *, timeout: float = DEFAULT_TIMEOUT):
        if not nameservers:
            raise ValueError("a resolver needs at least one nameserver")
        self.nameservers = tuple(nameservers)
        self.timeout = timeout
        self._resolver: Any = None  # dnspython's, made at the first query
        self._backend: Any = None

    def _dnspython(self) -> Any:
        """dnspython's resolver for these nameservers (imported and made once)."""
        if self._resolver is None:
            import dns.asyncbackend
            import dns.asyncresolver
            import dns.nameserver

            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(server.host, server.port)
                for server in self.nameservers
            ]
            # each server gets its share of the budget before the next is tried;
            # the lifetime caps the whole query
            resolver.timeout = self.timeout / len(self.nameservers)
            resolver.lifetime = self.timeout
            resolver.retry_servfail = False
            resolver.use_search_by_default = False
            self._backend = dns.asyncbackend.get_backend("trio")
            self._resolver = resolver
        return self._resolver

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        resolv_conf: str = RESOLV_CONF,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> DnsResolver | None:
        """A resolver for :func:`load_nameservers`, or None when there is none."""
        servers = load_nameservers(environ, resolv_conf)
        return cls(servers, timeout=timeout) if servers else None

    async def query(
        self,
        name: str | dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        *,
        timeout: float | None = None,
    ) -> Lookup:
        """Query ``name`` (always absolute, no search list) for ``rdtype``,
        giving up after ``timeout`` seconds (the resolver's by default)."""
        import dns.exception
        import dns.name
        import dns.resolver

        budget = self.timeout if timeout is None else timeout
        if budget <= 0:
            return Lookup(LookupStatus.ERROR, reason="timeout")
        resolver = self._dnspython()
        try:
            qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            return Lookup(LookupStatus.NXDOMAIN, reason=f"bad name: {exc}")
        with trio.move_on_after(budget + 0.1):  # in case dnspython overruns its lifetime
            try:
                answer = await resolver.resolve(
                    qname,
                    rdtype,
                    search=False,
                    lifetime=budget,
                    backend=self._backend,
                )
            except dns.resolver.NXDOMAIN:
                return Lookup(LookupStatus.NXDOMAIN)
            except dns.resolver.NoAnswer:
                return Lookup(LookupStatus.NODATA)
            except dns.exception.Timeout:
                return Lookup(LookupStatus.ERROR, reason="timeout")
            except dns.resolver.NoNameservers as exc:
                return Lookup(LookupStatus.ERROR, reason=f"no nameserver answered: {exc}")
            except (dns.exception.DNSException, OSError) as exc:
                return Lookup(LookupStatus.ERROR, reason=str(exc) or type(exc).__name__)
            return Lookup(LookupStatus.FOUND, tuple(answer))
        return Lookup(LookupStatus.ERROR, reason="timeout")

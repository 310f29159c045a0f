"""Reverse DNS of a client: its name, then forward confirmation (FCrDNS: an
address of that name, IPv4 for an IPv4 client, IPv6 for an IPv6 one, is the
client's), as OpenSMTPD's ``smtp_getnameinfo_cb`` / ``smtp_getaddrinfo_cb``.

Names come from where the system's resolver finds them: the hosts file first
(:mod:`mta.net.hosts`; ``127.0.0.1`` is ``localhost``), then DNS (a PTR
record; :mod:`mta.net.resolver`).  A hosts-file answer needs no DNS at all.
The forward confirmation of a name likewise takes its addresses from the
hosts file when it lists the name, else from DNS (A or AAAA).

DNS lookups are asynchronous with a short total timeout and never block
other tasks; their results are kept briefly in a bounded cache (failures
are not; hosts-file answers need none).  A failed lookup (SERVFAIL, timeout)
makes the answer unknown; its warning is logged at most once a minute
(:class:`~mta.net.throttle.Throttle`), not at every connection.
"""

from __future__ import annotations

import collections
import ipaddress
import re
import time
from collections.abc import Callable, Mapping

import attrs
import trio

from mta.log import get_logger
from mta.net.hosts import Hosts, HostsFile, normal_address
from mta.net.resolver import DEFAULT_TIMEOUT, RESOLV_CONF, DnsResolver, LookupStatus
from mta.net.throttle import WARN_INTERVAL, Throttle

__all__ = ["CACHE_SIZE", "CACHE_TTL", "Rdns", "RdnsResult", "reverse_lookup"]

CACHE_SIZE = 4096
CACHE_TTL = 60.0  # seconds

log = get_logger("dns")

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


@attrs.frozen
class RdnsResult:
    """``name``: the PTR name (None when there is none or it could not be
    found); ``fcrdns``: that name resolves back to the address; ``error``:
    a lookup failed (SERVFAIL, timeout, no resolver), so the answer is unknown."""

    name: str | None
    fcrdns: bool
    error: bool


UNKNOWN = RdnsResult(None, False, True)
NONE = RdnsResult(None, False, False)


def _hostname(text: str) -> str | None:
    """A PTR target usable as a host name (letters, digits, ``-``, ``_``), or None:
    a name with spaces or control characters must never reach logs or headers."""
    if not text or len(text) > 253 or not text.isascii():
        return None
    labels = text.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return text


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Rdns:
    """Reverse lookups: ``hosts`` (None: no hosts file), then ``resolver``
    (None: no DNS) with a cache; with neither, unknown at once."""

    def __init__(
        self,
        resolver: DnsResolver | None,
        *,
        hosts: HostsFile | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        cache_size: int = CACHE_SIZE,
        cache_ttl: float = CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
        warn_interval: float = WARN_INTERVAL,
    ) -> None:
        self.resolver = resolver
        self.hosts = hosts
        self.timeout = timeout
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache: collections.OrderedDict[str, tuple[float, RdnsResult]] = (
            collections.OrderedDict()
        )
        self.throttle = Throttle(log, warn_interval, clock=clock)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        resolv_conf: str = RESOLV_CONF,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Rdns:
        """The hosts file of ``MTA_HOSTS`` (``/etc/hosts`` when unset), then
        the nameservers of ``MTA_DNS``, else of ``resolv_conf``."""
        resolver = DnsResolver.from_env(environ, resolv_conf, timeout=timeout)
        return cls(resolver, hosts=HostsFile.from_env(environ), timeout=timeout)

    @property
    def enabled(self) -> bool:
        """Whether a lookup can find anything (a hosts file or DNS)."""
        return self.hosts is not None or self.resolver is not None

    def _cached(self, key: str) -> RdnsResult | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, result = entry
        if expires <= self._clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return result

    def _store(self, key: str, result: RdnsResult) -> None:
        if result.error or self.cache_size <= 0:
            return
        self._cache[key] = (self._clock() + self.cache_ttl, result)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def lookup(self, ip: str) -> RdnsResult:
        """Name of ``ip`` and whether it is forward-confirmed, within
        ``timeout`` seconds in all."""
        address = normal_address(ip)
        if address is None:
            return NONE  # not an IP client (the local socket)
        hosts = await self.hosts.current() if self.hosts is not None else None
        if hosts is not None:
            found = hosts.name_of(address)
            if found is not None:
                name = _hostname(found)
                if name is None:
                    return NONE
                return await self._confirm(name, address, self.timeout, hosts)
        if self.resolver is None:
            return UNKNOWN
        key = str(address)
        cached = self._cached(key)
        if cached is not None:
            return cached
        result = UNKNOWN
        # the queries keep to the budget themselves; this is only a backstop
        with trio.move_on_after(self.timeout + 0.5):
            result = await self._lookup(self.resolver, address)
        self._store(key, result)
        return result

    reverse_lookup = lookup

    async def _lookup(self, resolver: DnsResolver, address: Address) -> RdnsResult:
        import dns.rdatatype  # with the first query (mta.net.resolver)
        import dns.reversename

        deadline = trio.current_time() + self.timeout
        ptr = await resolver.query(
            dns.reversename.from_address(str(address)), dns.rdatatype.PTR, timeout=self.timeout
        )
        if ptr.status is LookupStatus.ERROR:
            self.throttle.warning("dns: PTR lookup for %s failed: %s", address, ptr.reason)
            return UNKNOWN
        if ptr.status is not LookupStatus.FOUND:
            return NONE
        target = getattr(ptr.records[0], "target", None)
        name = _hostname(target.to_text(omit_final_dot=True)) if target is not None else None
        if name is None:
            return NONE
        return await self._confirm(name, address, deadline - trio.current_time())

    async def _confirm(
        self, name: str, address: Address, budget: float, hosts: Hosts | None = None
    ) -> RdnsResult:
        """``name`` forward-confirmed: its addresses of the client's family
        from the hosts file when it lists them, else from DNS (``hosts``: the
        file as the lookup just read it, not read again)."""
        if hosts is None and self.hosts is not None:
            hosts = await self.hosts.current()
        if hosts is not None:
            listed = hosts.addresses_of(name, address.version)
            if listed:
                return RdnsResult(name, str(address) in listed, False)
        if self.resolver is None:
            return RdnsResult(name, False, True)
        import dns.rdatatype

        rdtype = dns.rdatatype.A if address.version == 4 else dns.rdatatype.AAAA
        forward = await self.resolver.query(name + ".", rdtype, timeout=budget)
        if forward.status is LookupStatus.ERROR:
            self.throttle.warning(
                "dns: %s lookup for %s failed: %s", rdtype.name, name, forward.reason
            )
            return RdnsResult(name, False, True)
        confirmed = any(
            normal_address(getattr(record, "address", "")) == address for record in forward.records
        )
        return RdnsResult(name, confirmed, False)


_default: Rdns | None = None


async def reverse_lookup(ip: str) -> RdnsResult:
    """:meth:`Rdns.lookup` on a process-wide :meth:`Rdns.from_env` instance."""
    global _default
    if _default is None:
        _default = Rdns.from_env()
    return await _default.lookup(ip)

"""Reverse DNS of a client: the PTR name, then forward confirmation (FCrDNS:
an A record of that name, AAAA for an IPv6 client, is the client's address),
as OpenSMTPD's ``smtp_getnameinfo_cb`` / ``smtp_getaddrinfo_cb``.

Lookups are asynchronous with a short total timeout and never block other
tasks; results are kept briefly in a bounded cache (failures are not).
"""

from __future__ import annotations

import collections
import ipaddress
import re
import time
from collections.abc import Callable, Mapping

import attrs
import dns.rdatatype
import dns.reversename
import trio

from mta.log import get_logger
from mta.net.resolver import DEFAULT_TIMEOUT, RESOLV_CONF, DnsResolver, LookupStatus

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


def _client(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a v4 client on a dual-stack socket
    return address


class Rdns:
    """Reverse lookups with a cache; ``resolver`` None answers unknown at once."""

    def __init__(
        self,
        resolver: DnsResolver | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cache_size: int = CACHE_SIZE,
        cache_ttl: float = CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self.timeout = timeout
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache: collections.OrderedDict[str, tuple[float, RdnsResult]] = (
            collections.OrderedDict()
        )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        resolv_conf: str = RESOLV_CONF,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Rdns:
        """Nameservers from ``MTA_DNS``, else ``resolv_conf``; without any, every
        lookup answers unknown immediately."""
        resolver = DnsResolver.from_env(environ, resolv_conf, timeout=timeout)
        return cls(resolver, timeout=timeout)

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
        """PTR name of ``ip`` and whether it is forward-confirmed, within
        ``timeout`` seconds in all."""
        address = _client(ip)
        if address is None:
            return NONE  # not an IP client (the local socket)
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

    async def _lookup(
        self, resolver: DnsResolver, address: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> RdnsResult:
        deadline = trio.current_time() + self.timeout
        ptr = await resolver.query(
            dns.reversename.from_address(str(address)), dns.rdatatype.PTR, timeout=self.timeout
        )
        if ptr.status is LookupStatus.ERROR:
            log.warning("dns: PTR lookup for %s failed: %s", address, ptr.reason)
            return UNKNOWN
        if ptr.status is not LookupStatus.FOUND:
            return NONE
        target = getattr(ptr.records[0], "target", None)
        name = _hostname(target.to_text(omit_final_dot=True)) if target is not None else None
        if name is None:
            return NONE
        rdtype = dns.rdatatype.A if address.version == 4 else dns.rdatatype.AAAA
        forward = await resolver.query(name + ".", rdtype, timeout=deadline - trio.current_time())
        if forward.status is LookupStatus.ERROR:
            log.warning("dns: %s lookup for %s failed: %s", rdtype.name, name, forward.reason)
            return RdnsResult(name, False, True)
        confirmed = any(
            _client(getattr(record, "address", "")) == address for record in forward.records
        )
        return RdnsResult(name, confirmed, False)


_default: Rdns | None = None


async def reverse_lookup(ip: str) -> RdnsResult:
    """:meth:`Rdns.lookup` on a process-wide :meth:`Rdns.from_env` instance."""
    global _default
    if _default is None:
        _default = Rdns.from_env()
    return await _default.lookup(ip)

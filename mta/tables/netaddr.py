"""Network address parsing for tables: OpenSMTPD's ``text_to_netaddr`` and
``parse_sockaddr``, and the CIDR comparison used by ``netaddr`` lookups.

IPv4 follows BSD ``inet_net_pton``: ``10/8``, ``192.168.1`` (24 bits implied by
the octets given) and classful widths for short forms.  IPv6 accepts ``::1``,
``::/0``, ``[::1]``, ``[::1]/64``, ``[::1/64]`` and an ``IPv6:`` prefix.
"""

from __future__ import annotations

import functools
import ipaddress

import attrs

__all__ = ["IPAddress", "NetAddr", "netaddr_match", "parse_address", "parse_netaddr"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@attrs.frozen
class NetAddr:
    """An address with a prefix length (``bits``); a plain address has all bits."""

    address: IPAddress
    bits: int

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The network this entry designates (host bits cleared)."""
        return ipaddress.ip_network(f"{self.address}/{self.bits}", strict=False)

    def contains(self, address: IPAddress) -> bool:
        """True when ``address`` falls inside this network (same family only)."""
        mine = self.address
        if address.version != mine.version:
            return False
        shift = mine.max_prefixlen - self.bits  # the host bits, compared as integers
        return int(address) >> shift == int(mine) >> shift


def _strip_prefix(text: str) -> str:
    return text[5:] if text[:5].lower() == "ipv6:" else text


def _classful_bits(octets: list[int]) -> int:
    first = octets[0]
    if first >= 240:
        bits = 32
    elif first >= 224:
        bits = 8
    elif first >= 192:
        bits = 24
    elif first >= 128:
        bits = 16
    else:
        bits = 8
    bits = max(bits, 8 * len(octets))
    if bits == 8 and first == 224:
        bits = 4
    return bits


def _parse_ipv4_net(text: str) -> NetAddr | None:
    addr, slash, width = text.partition("/")
    parts = addr.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    octets: list[int] = []
    for part in parts:
        if not part.isascii() or not part.isdigit() or len(part) > 3 or int(part) > 255:
            return None
        octets.append(int(part))
    if slash:
        if not width.isascii() or not width.isdigit() or len(width) > 2 or int(width) > 32:
            return None
        bits = int(width)
    else:
        bits = _classful_bits(octets)
    octets += [0] * (4 - len(octets))
    return NetAddr(ipaddress.IPv4Address(bytes(octets)), bits)


def _parse_ipv6_net(text: str) -> NetAddr | None:
    width = ""
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket:
            return None
        if rest:
            if not rest.startswith("/"):
                return None
            width = rest[1:]
            if not width:
                return None
        text = _strip_prefix(inner)
    if "/" in text:
        if width:
            return None
        text, _, width = text.partition("/")
        if not width:
            return None
    text = text.partition("%")[0]
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    if width:
        if not width.isascii() or not width.isdigit() or len(width) > 3 or int(width) > 128:
            return None
        return NetAddr(address, int(width))
    return NetAddr(address, 128)


@functools.lru_cache(maxsize=4096)
def parse_netaddr(text: str) -> NetAddr | None:
    """Parse an address or network (``text_to_netaddr``); None when it is not one."""
    text = _strip_prefix(text.strip())
    if not text or len(text) > 256:
        return None
    return _parse_ipv4_net(text) or _parse_ipv6_net(text)


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """Parse a single IP address (``parse_sockaddr``): dotted quad, or IPv6 with
    optional brackets, ``IPv6:`` prefix and ``%scope``; None when it is not one."""
    text = text.strip()
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        pass
    if text.startswith("["):
        text = text[1:]
        if not text.endswith("]"):
            return None
        text = text[:-1]
    text = _strip_prefix(text).partition("%")[0]
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def netaddr_match(candidate: str, entry: str) -> bool:
    """OpenSMTPD ``table_netaddr_match``: ``candidate`` (from the session) equals the
    table ``entry`` case-insensitively, or falls inside the entry's network.

    An IPv4-mapped IPv6 candidate (``::ffff:192.0.2.1``, as seen on dual-stack
    sockets) is compared as the IPv4 address it carries.
    """
    if candidate.lower() == entry.lower():
        return True
    mine = parse_netaddr(candidate)
    theirs = parse_netaddr(entry)
    if mine is None or theirs is None:
        return False
    address = mine.address
    if (
        isinstance(address, ipaddress.IPv6Address)
        and address.ipv4_mapped is not None
        and theirs.address.version == 4
    ):
        address = address.ipv4_mapped
    return theirs.contains(address)

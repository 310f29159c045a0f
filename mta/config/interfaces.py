"""Resolve what ``listen on X`` names into socket addresses, as OpenSMTPD does.

The order is OpenSMTPD's: an interface name, then an IPv4 literal, then an IPv6
literal, then a host name (``getaddrinfo``).  Two BSD names are understood on
Linux too, because the manual pages use them: ``lo0`` (the loopback interface)
and ``egress`` (the interfaces the default routes use).  Host name lookups run
with a short deadline so a dead resolver cannot hang ``mta -n``.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import threading

import attrs

__all__ = ["BoundAddress", "interface_names", "resolve_listen"]

_SIOCGIFADDR = 0x8915
DNS_DEADLINE = 3.0


@attrs.frozen
class BoundAddress:
    """One address a listener binds."""

    address: str
    family: int
    local: bool  # loopback: sessions from it count as local


def interface_names() -> list[str]:
    try:
        return [name for _, name in socket.if_nameindex()]
    except OSError:
        return []


def _ipv4_of(name: str) -> list[str]:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("256s", name.encode()[:15])
            res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)
    except OSError:
        return []
    return [socket.inet_ntoa(res[20:24])]


def _ipv6_of(name: str) -> list[str]:
    found = []
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == name:
                    raw = bytes.fromhex(parts[0])
                    addr = ipaddress.IPv6Address(raw)
                    if addr.is_link_local:
                        continue
                    found.append(str(addr))
    except OSError:
        pass
    return found


def _egress_interfaces() -> list[str]:
    names = []
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[1] == "00000000":
                    names.append(parts[0])
    except OSError:
        pass
    return names


def _loopback_name(names: list[str]) -> str | None:
    for name in names:
        if _ipv4_of(name) == ["127.0.0.1"] or name == "lo":
            return name
    return None


def _interface_addresses(name: str, family: str | None) -> list[BoundAddress] | None:
    names = interface_names()
    if name in names:
        chosen = [name]
    elif name == "lo0" and _loopback_name(names):
        chosen = [_loopback_name(names) or "lo"]
    elif name == "egress" and _egress_interfaces():
        chosen = _egress_interfaces()
    else:
        return None
    result = []
    for ifname in chosen:
        if family in (None, "inet4"):
            result += [_bound(a) for a in _ipv4_of(ifname)]
        if family in (None, "inet6"):
            result += [_bound(a) for a in _ipv6_of(ifname)]
    return result


def _bound(address: str) -> BoundAddress:
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return BoundAddress(str(ip), family, ip.is_loopback)


def _getaddrinfo(name: str, family: int) -> list[str] | None:
    """getaddrinfo with a deadline; None if the lookup did not finish."""
    result: list[list[str]] = []

    def run() -> None:
        try:
            infos = socket.getaddrinfo(
                name, None, family, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG
            )
        except (OSError, UnicodeError):
            result.append([])
            return
        result.append([str(info[4][0]) for info in infos])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DNS_DEADLINE)
    return result[0] if result else None


def resolve_listen(name: str, family: str | None) -> list[BoundAddress]:
    """The addresses ``listen on name [family]`` binds; empty if none (an error)."""
    by_interface = _interface_addresses(name, family)
    if by_interface is not None and by_interface:
        return by_interface
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:
        if (family == "inet4" and ip.version != 4) or (family == "inet6" and ip.version != 6):
            return []
        return [_bound(str(ip))]
    fam = {None: socket.AF_UNSPEC, "inet4": socket.AF_INET, "inet6": socket.AF_INET6}[family]
    addresses = _getaddrinfo(name, fam) or []
    seen: dict[str, None] = {}
    for a in addresses:
        seen.setdefault(a, None)
    return [_bound(a) for a in seen]

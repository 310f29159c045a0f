"""The tables every configuration has: ``<localhost>``, ``<anyhost>``,
``<localnames>``, ``<anydestination>`` and ``<getpwnam>``; and discovery of this
machine's interface addresses."""

from __future__ import annotations

import ipaddress
import itertools
import socket

from mta.tables.base import Table
from mta.tables.getpwnam import GetpwnamTable
from mta.tables.static import StaticTable

__all__ = ["builtin_tables", "local_addresses"]

_PROC_IF_INET6 = "/proc/net/if_inet6"
_PROC_FIB_TRIE = "/proc/net/fib_trie"


def _ipv6_from_proc(path: str = _PROC_IF_INET6) -> list[str]:
    addresses: list[str] = []
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if fields and len(fields[0]) == 32:
                    try:
                        raw = bytes.fromhex(fields[0])
                    except ValueError:
                        continue
                    addresses.append(str(ipaddress.IPv6Address(raw)))
    except OSError:
        pass
    return addresses


def _ipv4_from_proc(path: str = _PROC_FIB_TRIE) -> list[str]:
    """Local addresses are the ``/32 host LOCAL`` leaves of the FIB trie."""
    addresses: list[str] = []
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return addresses
    for previous, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            candidate = previous.strip().lstrip("|+-").strip()
            try:
                addresses.append(str(ipaddress.IPv4Address(candidate)))
            except ValueError:
                continue
    return addresses


def _from_hostname() -> list[str]:
    addresses: list[str] = []
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return addresses
    for info in infos:
        addresses.append(str(info[4][0]).partition("%")[0])
    return addresses


def local_addresses() -> list[str]:
    """This machine's interface addresses (loopback always included), without
    external dependencies: Linux ``/proc/net``, else the host name's addresses."""
    found = ["127.0.0.1"]
    found += _ipv4_from_proc()
    six = _ipv6_from_proc()
    found += six or ["::1"]
    if len(found) <= 2:
        found += _from_hostname()
    result: dict[str, None] = {}
    for address in found:
        result.setdefault(address, None)
    return list(result)


def builtin_tables(hostname: str, local_addresses: list[str]) -> dict[str, Table]:
    """The built-in tables, keyed by name (``<localhost>``...)."""

    def listing(name: str, keys: list[str]) -> StaticTable:
        unique = dict.fromkeys(keys)
        return StaticTable(name, entries=[(key, None) for key in unique])

    return {
        "<localhost>": listing("<localhost>", ["local", *local_addresses]),
        "<anyhost>": listing("<anyhost>", ["local", "0.0.0.0/0", "::/0"]),
        "<localnames>": listing("<localnames>", ["localhost", hostname, *local_addresses]),
        "<anydestination>": listing("<anydestination>", ["*"]),
        "<getpwnam>": GetpwnamTable("<getpwnam>"),
    }

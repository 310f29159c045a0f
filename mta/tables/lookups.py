"""Typed lookups: find a key for a service and parse the value, as OpenSMTPD
``table_lookup`` / ``table_fetch`` do with ``table_parse_lookup``."""

from __future__ import annotations

from mta.tables.base import Table
from mta.tables.mailaddr import MailAddr
from mta.tables.netaddr import IPAddress
from mta.tables.relayhost import RelayHost
from mta.tables.services import Service
from mta.tables.values import (
    AddrName,
    Credentials,
    MailAddrMap,
    Source,
    UserInfo,
    parse_addrname,
    parse_credentials,
    parse_mailaddr_value,
    parse_mailaddrmap,
    parse_relayhost_value,
    parse_source,
    parse_userinfo,
)

__all__ = [
    "fetch_relayhost",
    "fetch_source",
    "lookup_addrname",
    "lookup_credentials",
    "lookup_mailaddr",
    "lookup_mailaddrmap",
    "lookup_relayhost",
    "lookup_userinfo",
]


def lookup_credentials(table: Table, key: str) -> Credentials | None:
    """Credentials for a listener user or a relay label."""
    value = table.lookup(Service.CREDENTIALS, key)
    return None if value is None else parse_credentials(key.lower(), value)


def lookup_userinfo(table: Table, user: str) -> UserInfo | None:
    """uid, gid and home of ``user`` (a ``userbase`` table or ``<getpwnam>``)."""
    value = table.lookup(Service.USERINFO, user)
    return None if value is None else parse_userinfo(user.lower(), value)


def lookup_mailaddrmap(table: Table, user: str) -> MailAddrMap | None:
    """The addresses an authenticated ``user`` may send as (``senders``)."""
    value = table.lookup(Service.MAILADDRMAP, user)
    return None if value is None else parse_mailaddrmap(value)


def lookup_mailaddr(table: Table, key: str) -> MailAddr | None:
    """A ``mailaddr`` value."""
    value = table.lookup(Service.MAILADDR, key)
    return None if value is None else parse_mailaddr_value(value)


def lookup_relayhost(table: Table, key: str) -> RelayHost | None:
    """A relay URL stored under ``key``."""
    value = table.lookup(Service.RELAYHOST, key)
    return None if value is None else parse_relayhost_value(value)


def lookup_addrname(table: Table, address: IPAddress) -> AddrName | None:
    """The name to announce for local ``address`` (``hostnames`` / ``helo-src``);
    IPv6 keys are tried bare, then in brackets."""
    keys = [str(address)]
    if address.version == 6:
        keys.append(f"[{address}]")
    for key in keys:
        value = table.lookup(Service.ADDRNAME, key)
        if value is not None:
            return parse_addrname(key, value)
    return None


def fetch_source(table: Table) -> Source | None:
    """The next source address, round-robin."""
    value = table.fetch(Service.SOURCE)
    return None if value is None else parse_source(value)


def fetch_relayhost(table: Table) -> RelayHost | None:
    """The next relay URL, round-robin."""
    value = table.fetch(Service.RELAYHOST)
    return None if value is None else parse_relayhost_value(value)

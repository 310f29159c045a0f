"""Typed values of table lookups, one parser per service (OpenSMTPD
``table_parse_lookup``).  Every parser returns frozen attrs values and raises
TableError, and only TableError, on a malformed value."""

from __future__ import annotations

import attrs

from mta.errors import TableError
from mta.tables.aliasnodes import AliasNode, parse_alias_value
from mta.tables.mailaddr import MailAddr, mailaddr_match, parse_mailaddr
from mta.tables.netaddr import IPAddress, NetAddr, parse_address, parse_netaddr
from mta.tables.relayhost import RelayHost, parse_relay_url
from mta.tables.services import Service
from mta.tables.split import split_list

__all__ = [
    "AddrName",
    "Aliases",
    "Credentials",
    "Domain",
    "LookupValue",
    "MailAddrMap",
    "Source",
    "UserInfo",
    "parse_addrname",
    "parse_aliases_value",
    "parse_credentials",
    "parse_domain",
    "parse_mailaddr_value",
    "parse_mailaddrmap",
    "parse_netaddr_value",
    "parse_relayhost_value",
    "parse_source",
    "parse_userinfo",
    "parse_value",
]

LINE_MAX = 2048
MAX_ID = 2**32 - 2


@attrs.frozen
class Aliases:
    """An ``alias`` value: its destinations in order."""

    nodes: tuple[AliasNode, ...]


@attrs.frozen
class Domain:
    """A ``domain`` value."""

    name: str


@attrs.frozen
class Credentials:
    """A ``credentials`` value: listener (user, crypt hash) or relay (user, password)."""

    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class UserInfo:
    """A ``userinfo`` value: the system identity and home of a (virtual) user."""

    username: str
    uid: int
    gid: int
    directory: str


@attrs.frozen
class Source:
    """A ``source`` value: a local address to bind outgoing connections to."""

    address: IPAddress


@attrs.frozen
class AddrName:
    """An ``addrname`` entry: a local address and the name announced for it."""

    address: IPAddress
    name: str


@attrs.frozen
class MailAddrMap:
    """A ``mailaddrmap`` value: the addresses a user may send as."""

    addresses: tuple[MailAddr, ...]

    def allows(self, sender: str, delimiter: str = "+") -> bool:
        """True when ``sender`` matches one of the addresses (``mailaddr_match``)."""
        candidate = parse_mailaddr(sender)
        if candidate is None:
            return False
        return any(mailaddr_match(candidate, entry, delimiter) for entry in self.addresses)


LookupValue = (
    Aliases
    | Domain
    | Credentials
    | NetAddr
    | UserInfo
    | Source
    | MailAddr
    | MailAddrMap
    | AddrName
    | RelayHost
    | str
)


def parse_aliases_value(value: str) -> Aliases:
    """``alias``: see :func:`mta.tables.aliasnodes.parse_alias_value`."""
    return Aliases(parse_alias_value(value))


def parse_domain(value: str) -> Domain:
    """``domain``: a non-empty name shorter than 256 characters."""
    if not value or len(value) > 255:
        raise TableError(f"invalid domain {value!r}")
    return Domain(value)


def parse_credentials(key: str, value: str) -> Credentials:
    """``credentials``: ``user:password``; a value without ``:`` is the password
    (or crypt hash) of the user named by ``key``."""
    if len(value) < 3:
        raise TableError("invalid credentials: value too short")
    if len(value) >= LINE_MAX:
        raise TableError("invalid credentials: value too long")
    user, colon, password = value.partition(":")
    if not colon:
        return Credentials(key, value)
    if not user or not password:
        raise TableError("invalid credentials: expected user:password")
    return Credentials(user, password)


def _parse_id(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > MAX_ID:
        raise TableError(f"invalid userinfo: bad {what} {text!r}")
    return int(text)


def parse_userinfo(key: str, value: str) -> UserInfo:
    """``userinfo``: ``uid:gid:/home/dir`` for user ``key``."""
    uid, colon1, rest = value.partition(":")
    gid, colon2, directory = rest.partition(":")
    if not colon1 or not colon2:
        raise TableError(f"invalid userinfo {value!r}: expected uid:gid:directory")
    if not directory or len(directory) >= 4096:
        raise TableError(f"invalid userinfo {value!r}: bad directory")
    if not key or len(key) > 255:
        raise TableError(f"invalid userinfo: bad user name {key!r}")
    return UserInfo(key, _parse_id(uid, "uid"), _parse_id(gid, "gid"), directory)


def parse_source(value: str) -> Source:
    """``source``: an IPv4 or IPv6 address (brackets allowed)."""
    address = parse_address(value)
    if address is None:
        raise TableError(f"invalid source address {value!r}")
    return Source(address)


def parse_netaddr_value(value: str) -> NetAddr:
    """``netaddr``: an address or a network in CIDR notation."""
    netaddr = parse_netaddr(value)
    if netaddr is None:
        raise TableError(f"invalid network address {value!r}")
    return netaddr


def parse_mailaddr_value(value: str) -> MailAddr:
    """``mailaddr``: ``user``, ``@domain`` or ``user@domain``."""
    address = parse_mailaddr(value)
    if address is None or not value:
        raise TableError(f"invalid mail address {value!r}")
    return address


def parse_mailaddrmap(value: str) -> MailAddrMap:
    """``mailaddrmap``: a comma list of mail addresses (quotes honoured)."""
    addresses = tuple(parse_mailaddr_value(part) for part in split_list(value))
    if not addresses:
        raise TableError(f"invalid mail address list {value!r}")
    return MailAddrMap(addresses)


def parse_addrname(key: str, value: str) -> AddrName:
    """``addrname``: ``key`` is an address, ``value`` the host name for it."""
    address = parse_address(key)
    if address is None:
        raise TableError(f"invalid addrname key {key!r}: not an address")
    if not value or len(value) > 255:
        raise TableError(f"invalid addrname value {value!r}")
    return AddrName(address, value)


def parse_relayhost_value(value: str) -> RelayHost:
    """``relayhost``: a relay URL (:func:`mta.tables.relayhost.parse_relay_url`)."""
    return parse_relay_url(value)


def parse_value(service: Service, key: str, value: str) -> LookupValue:
    """Parse the raw ``value`` found under ``key`` for ``service``."""
    if service == Service.ALIAS:
        return parse_aliases_value(value)
    if service == Service.DOMAIN:
        return parse_domain(value)
    if service == Service.CREDENTIALS:
        return parse_credentials(key, value)
    if service == Service.NETADDR:
        return parse_netaddr_value(value)
    if service == Service.USERINFO:
        return parse_userinfo(key, value)
    if service == Service.SOURCE:
        return parse_source(value)
    if service == Service.MAILADDR:
        return parse_mailaddr_value(value)
    if service == Service.MAILADDRMAP:
        return parse_mailaddrmap(value)
    if service == Service.ADDRNAME:
        return parse_addrname(key, value)
    if service == Service.RELAYHOST:
        return parse_relayhost_value(value)
    if service in (Service.STRING, Service.REGEX, Service.AUTH):
        return value
    raise TableError(f"no value parser for service {service}")

"""Table services and table types, with OpenSMTPD's ``table_check_use`` rule.

A *service* says what a table is used for (aliases, domains, credentials...);
a *type* says how it is shaped (a list, a key/value hash, or a dynamic
backend that cannot be enumerated at configuration time).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from mta.errors import TableError

if TYPE_CHECKING:
    from mta.tables.base import Table

__all__ = ["ALL_SERVICES", "Service", "TableType", "check_use", "service_from_name"]


class Service(enum.Flag):
    """What a lookup is for; mirrors OpenSMTPD's ``enum table_service`` (K_*)."""

    ALIAS = enum.auto()
    DOMAIN = enum.auto()
    CREDENTIALS = enum.auto()
    NETADDR = enum.auto()
    USERINFO = enum.auto()
    SOURCE = enum.auto()
    MAILADDR = enum.auto()
    ADDRNAME = enum.auto()
    MAILADDRMAP = enum.auto()
    RELAYHOST = enum.auto()
    STRING = enum.auto()
    REGEX = enum.auto()
    AUTH = enum.auto()

    @property
    def protocol_name(self) -> str:
        """The lowercase name used in the table-proc protocol and in logs."""
        if self.name is None:
            raise ValueError("a combination of services has no single name")
        return self.name.lower()


ALL_SERVICES = (
    Service.ALIAS
    | Service.DOMAIN
    | Service.CREDENTIALS
    | Service.NETADDR
    | Service.USERINFO
    | Service.SOURCE
    | Service.MAILADDR
    | Service.ADDRNAME
    | Service.MAILADDRMAP
    | Service.RELAYHOST
    | Service.STRING
    | Service.REGEX
    | Service.AUTH
)
"""Every service (``K_ANY``), what a proc table supports before its handshake."""


def service_from_name(name: str) -> Service:
    """Parse a protocol service name (``alias``, ``netaddr``...); TableError if unknown."""
    try:
        return Service[name.upper()]
    except KeyError:
        raise TableError(f"unknown table service {name!r}") from None


class TableType(enum.Flag):
    """The shape of a table (``T_LIST``, ``T_HASH``, ``T_DYNAMIC``)."""

    LIST = enum.auto()
    HASH = enum.auto()
    DYNAMIC = enum.auto()


def check_use(table: Table, types: TableType, services: Service) -> bool:
    """OpenSMTPD ``table_check_use``: the table's type is in ``types`` and its
    backend supports at least one of ``services``."""
    return bool(table.type & types) and bool(table.services & services)

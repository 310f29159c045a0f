"""Tables (smtpd.conf ``table`` and table(5)): backends, lookup rules per
service, value parsers, built-in tables and makemap.

The configuration builder mostly needs :func:`open_table`,
:func:`builtin_tables`, :func:`check_use` and the typed lookups.
"""

from __future__ import annotations

from mta.tables.aliases import lookup_alias, lookup_virtual
from mta.tables.base import Table
from mta.tables.builtin import builtin_tables, local_addresses
from mta.tables.loader import open_table, split_table_spec
from mta.tables.relayhost import RelayHost, RelayTLS, parse_relay_url
from mta.tables.services import Service, TableType, check_use

__all__ = [
    "RelayHost",
    "RelayTLS",
    "Service",
    "Table",
    "TableType",
    "builtin_tables",
    "check_use",
    "local_addresses",
    "lookup_alias",
    "lookup_virtual",
    "open_table",
    "parse_relay_url",
    "split_table_spec",
]

"""Tests for mta.tables.builtin and mta.tables.getpwnam."""

from __future__ import annotations

import os
import pwd

import pytest

from mta.errors import TableError
from mta.tables.builtin import builtin_tables, local_addresses
from mta.tables.getpwnam import GetpwnamTable
from mta.tables.lookups import lookup_userinfo
from mta.tables.services import Service


def test_local_addresses_has_loopback() -> None:
    addresses = local_addresses()
    assert "127.0.0.1" in addresses
    assert len(addresses) == len(set(addresses))


def test_builtin_tables() -> None:
    tables = builtin_tables("mx.example.org", ["127.0.0.1", "::1", "192.0.2.7"])
    assert set(tables) == {
        "<localhost>",
        "<anyhost>",
        "<localnames>",
        "<anydestination>",
        "<getpwnam>",
    }
    assert tables["<localhost>"].match(Service.NETADDR, "local")
    assert tables["<localhost>"].match(Service.NETADDR, "192.0.2.7")
    assert not tables["<localhost>"].match(Service.NETADDR, "192.0.2.8")
    assert tables["<anyhost>"].match(Service.NETADDR, "203.0.113.9")
    assert tables["<anyhost>"].match(Service.NETADDR, "2001:db8::1")
    assert tables["<localnames>"].match(Service.DOMAIN, "MX.example.org")
    assert tables["<localnames>"].match(Service.DOMAIN, "localhost")
    assert not tables["<localnames>"].match(Service.DOMAIN, "example.org")
    assert tables["<anydestination>"].match(Service.DOMAIN, "example.com")


def test_getpwnam() -> None:
    me = pwd.getpwuid(os.getuid())
    table = GetpwnamTable()
    info = lookup_userinfo(table, me.pw_name)
    assert info is not None
    assert (info.uid, info.gid, info.directory) == (me.pw_uid, me.pw_gid, me.pw_dir)
    assert table.lookup(Service.USERINFO, "no-such-user-xyz") is None
    with pytest.raises(TableError):
        table.lookup(Service.ALIAS, "root")
    with pytest.raises(TableError):
        GetpwnamTable("x", "config")

"""Tests for mta.tables.services: flags and table_check_use."""

from __future__ import annotations

import pytest

from mta.errors import TableError
from mta.tables import open_table
from mta.tables.getpwnam import GetpwnamTable
from mta.tables.services import Service, TableType, check_use, service_from_name


def test_check_use_type_and_service() -> None:
    listing = open_table("l", "static", None, (("example.org", None),))
    mapping = open_table("m", "static", None, (("a", "b"),))
    assert check_use(listing, TableType.LIST, Service.DOMAIN)
    assert not check_use(listing, TableType.HASH, Service.DOMAIN)
    assert check_use(mapping, TableType.HASH | TableType.DYNAMIC, Service.ALIAS)
    assert not check_use(mapping, TableType.HASH, Service.AUTH)
    users = GetpwnamTable()
    assert check_use(users, TableType.DYNAMIC, Service.USERINFO)
    assert not check_use(users, TableType.DYNAMIC, Service.ALIAS)


def test_service_names() -> None:
    assert service_from_name("mailaddrmap") is Service.MAILADDRMAP
    assert Service.RELAYHOST.protocol_name == "relayhost"
    with pytest.raises(TableError):
        service_from_name("bogus")

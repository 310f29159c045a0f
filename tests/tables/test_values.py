"""Tests for mta.tables.values: one parser per service."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.errors import TableError
from mta.tables.mailaddr import MailAddr
from mta.tables.netaddr import NetAddr
from mta.tables.relayhost import RelayHost, RelayTLS
from mta.tables.services import Service
from mta.tables.values import (
    AddrName,
    Credentials,
    Source,
    UserInfo,
    parse_addrname,
    parse_credentials,
    parse_mailaddrmap,
    parse_userinfo,
    parse_value,
)


def test_credentials() -> None:
    assert parse_credentials("label", "user:pa:ss") == Credentials("user", "pa:ss")
    hashed = "$2b$10$hIJ4QfMcp.90nJwKqGbKM.MybArjHOTpEtoTV.DgLYAiThuoYmTSe"
    assert parse_credentials("joe", hashed) == Credentials("joe", hashed)
    for bad in ("ab", ":pass", "user:", "x" * 3000):
        with pytest.raises(TableError):
            parse_credentials("k", bad)


def test_userinfo() -> None:
    assert parse_userinfo("joe", "1000:100:/home/joe") == UserInfo("joe", 1000, 100, "/home/joe")
    assert parse_userinfo("j", "1:2:/a:b").directory == "/a:b"
    for bad in ("1000:100", "x:1:/h", "1:-1:/h", "1:2:", "99999999999:1:/h"):
        with pytest.raises(TableError):
            parse_userinfo("joe", bad)


def test_mailaddrmap() -> None:
    value = parse_mailaddrmap("joe@example.org, @example.net, joe")
    assert value.addresses == (
        MailAddr("joe", "example.org"),
        MailAddr("", "example.net"),
        MailAddr("joe", ""),
    )
    assert value.allows("joe+tag@example.org")
    assert value.allows("anyone@example.net")
    assert not value.allows("ann@example.org")
    with pytest.raises(TableError):
        parse_mailaddrmap(" , ")


def test_addrname_and_source() -> None:
    assert parse_addrname("[::1]", "localhost") == AddrName(
        ipaddress.ip_address("::1"), "localhost"
    )
    with pytest.raises(TableError):
        parse_addrname("not-an-ip", "x")
    assert parse_value(Service.SOURCE, "k", "192.0.2.1") == Source(
        ipaddress.ip_address("192.0.2.1")
    )
    with pytest.raises(TableError):
        parse_value(Service.SOURCE, "k", "example.org")


def test_dispatch() -> None:
    assert parse_value(Service.STRING, "k", "v") == "v"
    relay = parse_value(Service.RELAYHOST, "k", "smtps://mx.example.org")
    assert isinstance(relay, RelayHost) and relay.tls is RelayTLS.SMTPS
    net = parse_value(Service.NETADDR, "k", "10.0.0.0/8")
    assert isinstance(net, NetAddr) and net.bits == 8
    with pytest.raises(TableError):
        parse_value(Service.NETADDR, "k", "nope")
    with pytest.raises(TableError):
        parse_value(Service.DOMAIN, "k", "")


@given(st.sampled_from(list(Service)), st.text(max_size=40), st.text(max_size=120))
def test_parsers_raise_only_table_error(service: Service, key: str, value: str) -> None:
    with contextlib.suppress(TableError):
        parse_value(service, key, value)

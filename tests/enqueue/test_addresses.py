"""Addresses from sendmail arguments and headers: qualified, checked, never a line break."""

from __future__ import annotations

import pytest

from mta.enqueue.addresses import (
    AddressError,
    arguments_addresses,
    check_address,
    header_addresses,
    sender_option,
    unique,
)

HOST = "host.example"


def test_check_address_qualifies_and_lowercases_domain() -> None:
    assert check_address("Bob", HOST) == f"Bob@{HOST}"
    assert check_address("Bob@Example.ORG", HOST) == "Bob@example.org"


@pytest.mark.parametrize(
    "bad", ["a\r\nRCPT TO:<x@y>", "a\n@x", "a\0@x", "a b@x", "a@b@c", "a@", "<a@b>", "", "@x"]
)
def test_check_address_refuses(bad: str) -> None:
    with pytest.raises(AddressError):
        check_address(bad, HOST)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("alice", f"alice@{HOST}"), ("<alice@X.example>", "alice@x.example"), ("<>", ""), ("", "")],
)
def test_sender_option(given: str, expected: str) -> None:
    assert sender_option(given, HOST) == expected


def test_sender_option_unbalanced_bracket() -> None:
    with pytest.raises(AddressError, match="trailing"):
        sender_option("<alice@x.example", HOST)


def test_header_addresses_forms() -> None:
    value = (
        b'Bob <bob>, "x y"@Example.ORG (comment), group: a@b.example, c;, '
        b"<@route.example:z@q.example>, <>, d (nested (comment)) @ e.example"
    )
    assert header_addresses(value, HOST) == [
        f"bob@{HOST}",
        '"x y"@example.org',
        "a@b.example",
        f"c@{HOST}",
        "z@q.example",
        "d@e.example",
    ]


def test_header_addresses_utf8() -> None:
    assert header_addresses("J\u00f6rg <j\u00f6rg@b\u00fccher.example>".encode(), HOST) == [
        "j\u00f6rg@b\u00fccher.example"
    ]


def test_header_addresses_not_utf8() -> None:
    with pytest.raises(AddressError, match="UTF-8"):
        header_addresses(b"j\xff@x.example", HOST)


def test_header_addresses_unparsable() -> None:
    with pytest.raises(AddressError, match="cannot parse"):
        header_addresses(b"Bob <bob@x.example", HOST)


def test_arguments_addresses() -> None:
    assert arguments_addresses(["bob, carol@x.example", "Dan <dan@Y.example>"], HOST) == [
        f"bob@{HOST}",
        "carol@x.example",
        "dan@y.example",
    ]


def test_unique_keeps_first_order() -> None:
    assert unique(["b@x", "a@x", "b@x"]) == ["b@x", "a@x"]

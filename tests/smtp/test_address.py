"""Paths of MAIL FROM / RCPT TO and HELO domains."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.envelope import NULL_ADDRESS, Address
from mta.smtp.address import (
    PathError,
    parse_mailbox,
    split_path,
    valid_domain,
    valid_helo,
)

HOST = "mx.example.org"


def parse(path: str, *, null_ok: bool = False, smtputf8: bool = False) -> Address | PathError:
    return parse_mailbox(path, null_ok=null_ok, hostname=HOST, smtputf8=smtputf8)


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("<a@b.example>", ("a@b.example", "")),
        ("<a@b.example> SIZE=10  BODY=7BIT", ("a@b.example", "SIZE=10  BODY=7BIT")),
        ("<a@b.example>SIZE=10", ("a@b.example", "SIZE=10")),
        ("<>", ("", "")),
        ('<"a>b"@c.example> X', ('"a>b"@c.example', "X")),
        ('<"a\\">"@c.example>', ('"a\\">"@c.example', "")),
        ("a@b.example", None),
        ("<a@b.example", None),
        ('<"a>@b.example', None),
        ("", None),
    ],
)
def test_split_path(argument: str, expected: tuple[str, str] | None) -> None:
    assert split_path(argument) == expected


@pytest.mark.parametrize(
    ("path", "address"),
    [
        ("alice@example.net", Address("alice", "example.net")),
        ("Alice.B@EXAMPLE.Net", Address("Alice.B", "example.net")),
        ("a+tag@x-y.example", Address("a+tag", "x-y.example")),
        ("!#$%&'*+/=?^_`{|}~-@x.example", Address("!#$%&'*+/=?^_`{|}~-", "x.example")),
        ('"john doe"@x.example', Address('"john doe"', "x.example")),
        ('"a\\"b@c"@x.example', Address('"a\\"b@c"', "x.example")),
        ("bob", Address("bob", HOST)),
        ("@relay.example,@other.example:carol@x.example", Address("carol", "x.example")),
        ("dave@[192.0.2.1]", Address("dave", "[192.0.2.1]")),
        ("dave@[IPv6:2001:db8::1]", Address("dave", "[ipv6:2001:db8::1]")),
        ("u@under_score.example", Address("u", "under_score.example")),
    ],
)
def test_valid_paths(path: str, address: Address) -> None:
    assert parse(path) == address


@pytest.mark.parametrize(
    "path",
    [
        "@x.example",
        ".a@x.example",
        "a.@x.example",
        "a..b@x.example",
        "a b@x.example",
        "a@b@x.example",
        "a@",
        "a@x..example",
        "a@x.example.",
        "a@-x.example",
        "a@x-.example",
        "a@[192.0.2]",
        "a@[::1]",
        "a@[IPv6:nonsense]",
        "a@[tag:content]",
        '"unterminated@x.example',
        '"q"x@x.example',
        "a\x01@x.example",
        "a@x\x7f.example",
        "a\0@x.example",
        "@bad route:a@x.example",
        "@r.example:",
        "a@" + "x" * 64 + ".example",
        "x" * 65 + "@x.example",
        "a@" + ".".join(["x" * 60] * 5),
    ],
)
def test_invalid_paths(path: str) -> None:
    assert parse(path, null_ok=True) is PathError.SYNTAX


def test_length_limits() -> None:
    assert parse("x" * 64 + "@x.example") == Address("x" * 64, "x.example")
    label = "x" * 63
    domain = ".".join([label] * 3) + "." + "x" * 57  # 249 octets
    assert parse("a@" + domain) == Address("a", domain)
    assert parse("abcdef@" + domain) is PathError.SYNTAX  # the path exceeds 256 octets
    assert valid_domain("a." * 127 + "b")  # 255 octets
    assert not valid_domain("a." * 127 + "bb")
    assert valid_domain(".".join([label] * 4))
    assert not valid_domain("x" * 64)


def test_null_path() -> None:
    assert parse("", null_ok=True) == NULL_ADDRESS
    assert parse("", null_ok=False) is PathError.SYNTAX
    assert parse("@r.example:", null_ok=True) is PathError.SYNTAX


def test_non_ascii() -> None:
    assert parse("jos\xe9@x.example") is PathError.NON_ASCII
    assert parse("a@b\xfccher.example") is PathError.NON_ASCII
    assert parse("jos\xe9@b\xfccher.example", smtputf8=True) == Address(
        "jos\xe9", "b\xfccher.example"
    )
    assert parse('"jos\xe9 x"@x.example', smtputf8=True) == Address('"jos\xe9 x"', "x.example")
    invalid = b"jos\xff@x.example".decode("utf-8", "surrogateescape")
    assert parse(invalid, smtputf8=True) is PathError.BAD_UTF8
    assert parse(invalid) is PathError.BAD_UTF8
    assert parse("\u0085a@x.example", smtputf8=True) == Address("\u0085a", "x.example")


@pytest.mark.parametrize(
    ("domain", "ok"),
    [
        ("client.example", True),
        ("localhost", True),
        ("[192.0.2.1]", True),
        ("[IPv6:::1]", True),
        ("[::1]", True),
        ("[999.1.1.1]", False),
        ("", False),
        ("a b", False),
        ("x.", False),
        ("b\xfccher.example", False),
        ("[192.0.2.1", False),
    ],
)
def test_valid_helo(domain: str, ok: bool) -> None:
    assert valid_helo(domain) is ok


@given(st.text(max_size=80))
def test_parsed_addresses_never_carry_controls(text: str) -> None:
    for utf8 in (False, True):
        result = parse(text, null_ok=True, smtputf8=utf8)
        if isinstance(result, Address):
            joined = result.local + result.domain
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in joined)
            assert "@" not in result.domain
            assert utf8 or joined.isascii()
            assert result.domain == result.domain.lower()

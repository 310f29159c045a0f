"""Tests for mta.smtp.headers: address-list parsing and in-place rewriting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.smtp.headers import (
    MailboxSpan,
    _rewrite_parsed,
    parse_address_list,
    rewrite_address_header,
)

HOST = b"mx.example.org"


def qualify(value: bytes) -> bytes:
    return rewrite_address_header(value, HOST)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b" bob", b" bob@mx.example.org"),
        (b" bob@example.com", b" bob@example.com"),
        (b" Bob <bob>", b" Bob <bob@mx.example.org>"),
        (b" Bob <bob@example.com>", b" Bob <bob@example.com>"),
        (b' "Smith, Bob" <bob>', b' "Smith, Bob" <bob@mx.example.org>'),
        (b' "bob smith"', b' "bob smith"@mx.example.org'),
        (b" bob (Bob Smith)", b" bob@mx.example.org (Bob Smith)"),
        (
            b" bob (nested (comment), with comma)",
            b" bob@mx.example.org (nested (comment), with comma)",
        ),
        (b" (lead) bob", b" (lead) bob@mx.example.org"),
        (b" a, b@x.org, c", b" a@mx.example.org, b@x.org, c@mx.example.org"),
        (b" a,\r\n b,\r\n\tc", b" a@mx.example.org,\r\n b@mx.example.org,\r\n\tc@mx.example.org"),
        (b" Bob\r\n <bob>", b" Bob\r\n <bob@mx.example.org>"),
        (b" first.last", b" first.last@mx.example.org"),
        (b" first . last", b" first . last@mx.example.org"),
        (b" < bob >", b" < bob@mx.example.org >"),
        (b" <>", b" <>"),
        (b" bob@[192.0.2.1]", b" bob@[192.0.2.1]"),
        (
            b" <@relay.example,@other.example:bob>",
            b" <@relay.example,@other.example:bob@mx.example.org>",
        ),
        (b" John Q. Public <jqp>", b" John Q. Public <jqp@mx.example.org>"),
        (b" =?utf-8?q?B=C3=B6b?= <bob>", b" =?utf-8?q?B=C3=B6b?= <bob@mx.example.org>"),
        ("  Bücher <bücher>".encode(), "  Bücher <bücher@mx.example.org>".encode()),
        (b" friends: a, b@x.org;", b" friends: a@mx.example.org, b@x.org;"),
        (b" friends: a, b@x.org;, c", b" friends: a@mx.example.org, b@x.org;, c@mx.example.org"),
        (b" undisclosed-recipients:;", b" undisclosed-recipients:;"),
        (b" list: ;", b" list: ;"),
        (b" a,, b,", b" a@mx.example.org,, b@mx.example.org,"),
        (b", a", b", a@mx.example.org"),
        (b"", b""),
        (b" ", b" "),
        (b' "quoted \\" bob"', b' "quoted \\" bob"@mx.example.org'),
        (b" bob (a \\) paren)", b" bob@mx.example.org (a \\) paren)"),
    ],
)
def test_qualify(value: bytes, expected: bytes) -> None:
    assert qualify(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        b" John Smith",  # a display name without an address
        b' "unterminated',
        b" bob (unclosed comment",
        b" Bob <bob",
        b" bob>",
        b" a..b",
        b" .bob",
        b" bob.",
        b" bob@",
        b" bob@example.",
        b" bob@.example",
        b" bob@@example",
        b" bob@[unclosed",
        b" list: a, b",  # group without ;
        b" a: b: c;",  # group inside a group
        b" Bob <bob> extra",
        b" <a@b> <c@d>",
        b" bob \\x",
        b" bob\x00",
        b" ]",
        b" ) bob",
        b" <@relay.example bob>",
        b" <@relay.example:>",
        b" : a;",  # group without a name
        b" ;",
    ],
)
def test_unparseable_values_are_left_untouched(value: bytes) -> None:
    assert parse_address_list(value) is None
    assert qualify(value) == value
    assert rewrite_address_header(value, HOST, b"s@x.org") == value


def test_spans() -> None:
    value = b' Bob <bob>, "x y"@d.org, list: c;, <>'
    assert parse_address_list(value) == (
        MailboxSpan(6, 9, 9, False),
        MailboxSpan(12, 17, 23, True),
        MailboxSpan(31, 32, 32, False),
        MailboxSpan(36, 36, 36, False, empty=True),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b" Bob <bob>", b" Bob <s@x.org>"),
        (b" Bob <bob@example.com>", b" Bob <s@x.org>"),
        (b" bob@example.com (Bob)", b" s@x.org (Bob)"),
        (b" bob", b" s@x.org"),
        (b" < bob @ example.com >", b" <s@x.org>"),
        (b" <>", b" <s@x.org>"),
        (b" a, Bob <b@c.d>", b" s@x.org, Bob <s@x.org>"),
        (b" <@r.example:bob@d.example>", b" <s@x.org>"),
        (b" undisclosed:;", b" undisclosed:;"),
        (b" John Smith", b" John Smith"),
    ],
)
def test_masquerade(value: bytes, expected: bytes) -> None:
    assert rewrite_address_header(value, HOST, b"s@x.org") == expected


def test_unchanged_value_is_the_same_object() -> None:
    value = b" Bob <bob@example.com>, alice@example.org"
    assert qualify(value) is value


ATOM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~", min_size=1)
LOCAL = st.one_of(
    st.lists(ATOM, min_size=1, max_size=3).map(".".join),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8).map(
        lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
)
DOMAIN = st.one_of(st.lists(ATOM, min_size=1, max_size=3).map(".".join), st.just("[192.0.2.1]"))
ADDR_SPEC = st.tuples(LOCAL, st.none() | DOMAIN).map(
    lambda t: t[0] if t[1] is None else f"{t[0]}@{t[1]}"
)
DISPLAY = st.lists(ATOM | LOCAL.filter(lambda x: x.startswith('"')), min_size=1, max_size=3)
MAILBOX = st.one_of(
    ADDR_SPEC,
    st.tuples(st.none() | DISPLAY.map(" ".join), ADDR_SPEC).map(
        lambda t: f"<{t[1]}>" if t[0] is None else f"{t[0]} <{t[1]}>"
    ),
    st.tuples(ADDR_SPEC, ATOM).map(lambda t: f"{t[0]} ({t[1]})"),
)
GROUP = st.tuples(ATOM, st.lists(MAILBOX, max_size=3)).map(lambda t: f"{t[0]}: {', '.join(t[1])};")
ADDRESS_LIST = st.lists(MAILBOX | GROUP, min_size=1, max_size=4).map(", ".join)
SEPARATOR = st.sampled_from([" ", "\r\n ", "\r\n\t", "  "])


@given(ADDRESS_LIST, SEPARATOR)
def test_generated_lists_parse_and_qualify(value: str, lead: str) -> None:
    raw = (lead + value).encode()
    spans = parse_address_list(raw)
    assert spans is not None
    once = qualify(raw)
    assert qualify(once) == once  # idempotent
    after = parse_address_list(once)
    assert after is not None
    assert len(after) == len(spans)
    assert all(span.has_domain or span.empty for span in after)
    # only "@host" insertions: removing them gives the input back
    added = sum(1 for span in spans if not span.has_domain and not span.empty)
    assert len(once) == len(raw) + added * (len(HOST) + 1)


@given(ADDRESS_LIST)
def test_masquerade_replaces_every_address(value: str) -> None:
    raw = (" " + value).encode()
    spans = parse_address_list(raw)
    assert spans is not None
    out = rewrite_address_header(raw, HOST, b"sender@x.org")
    after = parse_address_list(out)
    assert after is not None
    assert [out[s.start : s.end].strip(b" ") for s in after] == [b"sender@x.org"] * len(spans)


@given(st.binary(max_size=60))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    out = qualify(value)
    if parse_address_list(value) is None:
        assert out == value


@given(st.one_of(ADDRESS_LIST.map(str.encode), st.binary(max_size=60)))
def test_fast_path_agrees_with_the_parser(value: bytes) -> None:
    assert qualify(value) == _rewrite_parsed(value, HOST, None)


@pytest.mark.parametrize(
    "value",
    [
        b" a@b, c@d",
        b" Name <a@b>, Other <c@[1.2.3.4]>",
        b" Name@x <bob>",  # does not parse: untouched either way
        b" <bob> @x",
        b" x@[1,2], y@z",
        b" a@b, ",
    ],
)
def test_fast_path_edge_cases(value: bytes) -> None:
    assert qualify(value) == _rewrite_parsed(value, HOST, None)


def test_huge_value_is_linear() -> None:
    value = b" " + b"@" * 200_000 + b'"'
    assert qualify(value) == value

"""Tests for mta.tables.aliasnodes: alias value parsing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.errors import TableError
from mta.tables.aliasnodes import (
    AliasAddress,
    AliasCommand,
    AliasError,
    AliasFile,
    AliasInclude,
    AliasUser,
    parse_alias_value,
)


def test_every_kind() -> None:
    nodes = parse_alias_value(
        'bob, bob@example.org, /var/mail/archive, |/usr/bin/procmail -f-, "|/bin/cat -n",'
        " :include:/etc/mail/list, include:/etc/mail/other, error:550 no such user,"
        " :ERROR:421 try later"
    )
    assert nodes == (
        AliasUser("bob"),
        AliasAddress("bob", "example.org"),
        AliasFile("/var/mail/archive"),
        AliasCommand("/usr/bin/procmail -f-"),
        AliasCommand("/bin/cat -n"),
        AliasInclude("/etc/mail/list"),
        AliasInclude("/etc/mail/other"),
        AliasError(550, "no such user"),
        AliasError(421, "try later"),
    )
    last = nodes[-1]
    assert isinstance(last, AliasError) and last.temporary


def test_quotes_and_backslashes() -> None:
    assert parse_alias_value('"|echo a,b"') == (AliasCommand("echo a,b"),)
    assert parse_alias_value("x\\-y") == (AliasUser("x-y"),)


def test_duplicates_removed_and_includes_dropped() -> None:
    assert parse_alias_value("a, a, b") == (AliasUser("a"), AliasUser("b"))
    assert parse_alias_value("a, :include:/x", includes=False) == (AliasUser("a"),)


@pytest.mark.parametrize(
    "value",
    [
        "error:600 bad",
        "error:55 short",
        "error:550nospace",
        "include:relative",
        '"|unterminated',
        "bad user",
        "a@",
        "@b",
        '"open',
        "trailing\\",
        ", ,",
    ],
)
def test_invalid(value: str) -> None:
    with pytest.raises(TableError):
        parse_alias_value(value)


@given(st.text(max_size=200))
def test_only_table_error(value: str) -> None:
    with contextlib.suppress(TableError):
        parse_alias_value(value)

"""Tests for mta.tables.aliases: lookup orders, includes, aliases(5) files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.errors import TableError
from mta.tables.aliases import (
    alias_keys,
    lookup_alias,
    lookup_virtual,
    parse_aliases_text,
    read_include,
    virtual_keys,
)
from mta.tables.aliasnodes import AliasAddress, AliasUser
from mta.tables.static import StaticTable


def test_alias_keys() -> None:
    assert alias_keys("Bob+Tag") == ["bob+tag", "bob"]
    assert alias_keys("bob") == ["bob"]
    assert alias_keys("bob-x", "-") == ["bob-x", "bob"]


def test_virtual_keys() -> None:
    assert virtual_keys("Bob+t", "Example.org") == [
        "bob+t@example.org",
        "bob@example.org",
        "bob+t",
        "bob",
        "@example.org",
        "@",
    ]
    assert virtual_keys("bob", "") == ["bob@", "bob"]


def test_lookup_alias_prefers_tagged() -> None:
    table = StaticTable("a", entries=[("bob+lists", "lists"), ("bob", "robert")])
    assert lookup_alias(table, "bob+lists") == (AliasUser("lists"),)
    assert lookup_alias(table, "bob+other") == (AliasUser("robert"),)
    assert lookup_alias(table, "carol") is None


def test_lookup_virtual_order() -> None:
    table = StaticTable(
        "v",
        entries=[
            ("joe@example.org", "joe"),
            ("@example.org", "catchall"),
            ("@", "global@example.net"),
        ],
    )
    assert lookup_virtual(table, "joe+x", "example.org") == (AliasUser("joe"),)
    assert lookup_virtual(table, "ann", "example.org") == (AliasUser("catchall"),)
    assert lookup_virtual(table, "ann", "other.test") == (AliasAddress("global", "example.net"),)


def test_include_expansion(tmp_path: Path) -> None:
    include = tmp_path / "list"
    include.write_text("# members\nann, bob # trailing\ncarol,\\\n dave\n:include:/nested\n")
    table = StaticTable("a", entries=[("team", f"zed, :include:{include}")])
    assert lookup_alias(table, "team") == (
        AliasUser("zed"),
        AliasUser("ann"),
        AliasUser("bob"),
        AliasUser("carol"),
        AliasUser("dave"),
    )
    assert len(read_include(str(include))) == 4
    include.write_text("ok\nbad user\n")
    with pytest.raises(TableError, match=r"list:2:"):
        read_include(str(include))
    with pytest.raises(TableError):
        read_include(str(tmp_path / "missing"))


def test_aliases_file_syntax() -> None:
    text = "# comment\nroot: bob, carol\nteam: ann,\n  bob\n\tcarol\nx: a\\\n  , b\n"
    entries = [(e.key, e.value) for e in parse_aliases_text(text, "aliases")]
    assert entries == [
        ("root", "bob, carol"),
        ("team", "ann, bob, carol"),
        ("x", "a , b"),
    ]
    with pytest.raises(TableError, match=r"^aliases:2: "):
        parse_aliases_text("a: b\nc: bad user\n", "aliases")

"""Tests for mta.tables.tablefile: the table(5) file format."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.errors import TableError
from mta.tables.services import TableType
from mta.tables.tablefile import parse_table_text, read_table_file


def parse(text: str) -> tuple[TableType, list[tuple[str, str | None]]]:
    kind, lines = parse_table_text(text, "t")
    return kind, [(line.key, line.value) for line in lines]


def test_mapping_separators() -> None:
    kind, entries = parse("a b\nc:d\ne\t\t f  g\nh:  i\nj::k\n")
    assert kind is TableType.HASH
    assert entries == [("a", "b"), ("c", "d"), ("e", "f  g"), ("h", "i"), ("j", ":k")]


def test_comments_blank_and_whitespace() -> None:
    kind, entries = parse("\n   # comment\n\t key   value  \n\n")
    assert kind is TableType.HASH
    assert entries == [("key", "value")]


def test_first_entry_decides_list() -> None:
    kind, entries = parse("one\ntwo words\n")
    assert kind is TableType.LIST
    assert entries == [("one", None), ("two words", None)]


def test_at_list_forces_list() -> None:
    kind, entries = parse("# @list\nkey value\n")
    assert kind is TableType.LIST
    assert entries == [("key value", None)]


def test_at_list_after_first_entry_is_a_comment() -> None:
    kind, _ = parse("key value\n# @list\n")
    assert kind is TableType.HASH


def test_bracket_keys() -> None:
    kind, entries = parse("[::1] localhost\n[fe80::1]:host\n")
    assert kind is TableType.HASH
    assert entries == [("[::1]", "localhost"), ("[fe80::1]", "host")]
    kind, entries = parse("[::1]\n[::2]\n")
    assert kind is TableType.LIST
    assert entries == [("[::1]", None), ("[::2]", None)]


def test_missing_value_rejects_file_with_location() -> None:
    with pytest.raises(TableError, match=r"^t:3: invalid map entry$"):
        parse("a b\n# x\nlonely\n")
    with pytest.raises(TableError, match=r"^t:1: invalid map entry$"):
        parse("key:   \n")
    with pytest.raises(TableError, match=r"^t:1: invalid map entry$"):
        parse("[::1 value\n")


def test_empty_file_is_hash() -> None:
    assert parse("") == (TableType.HASH, [])
    assert parse("# only\n") == (TableType.HASH, [])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="nope"):
        read_table_file(str(tmp_path / "nope"))


@given(st.text())
def test_parser_raises_only_table_error(text: str) -> None:
    with contextlib.suppress(TableError):
        parse(text)

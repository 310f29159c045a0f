"""Tests for mta.tables.loader: open_table and backend selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.errors import TableError
from mta.tables import open_table, split_table_spec
from mta.tables.getpwnam import GetpwnamTable
from mta.tables.services import Service, TableType
from mta.tables.static import StaticTable


def test_split_spec() -> None:
    assert split_table_spec("/etc/mail/aliases") == ("file", "/etc/mail/aliases")
    assert split_table_spec("db:/etc/mail/aliases.db") == ("db", "/etc/mail/aliases.db")
    assert split_table_spec("getpwnam") == ("getpwnam", None)
    assert split_table_spec("ldap:/etc/mail/ldap.conf") == ("ldap", "/etc/mail/ldap.conf")


def test_file_and_static(tmp_path: Path) -> None:
    path = tmp_path / "domains"
    path.write_text("example.org\n")
    for backend in ("file", "static"):
        table = open_table("d", backend, str(path))
        assert isinstance(table, StaticTable)
        assert table.type is TableType.LIST
        assert table.match(Service.DOMAIN, "example.org")
    inline = open_table("i", "static", None, (("k", "v"),))
    assert inline.lookup(Service.STRING, "k") == "v"


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="missing"):
        open_table("d", "file", str(tmp_path / "missing"))
    with pytest.raises(TableError, match="absolute"):
        open_table("d", "file", "relative/path")
    bad = tmp_path / "bad"
    bad.write_text("a b\nc\n")
    with pytest.raises(TableError, match=rf"^{bad}:2: invalid map entry$"):
        open_table("d", "file", str(bad))
    with pytest.raises(TableError):
        open_table("d", "db", None)
    with pytest.raises(TableError):
        open_table("d", "getpwnam", None, (("a", None),))


def test_getpwnam_and_delimiter() -> None:
    assert isinstance(open_table("u", "getpwnam"), GetpwnamTable)
    table = open_table("m", "static", None, (("jo@example.org", None),), delimiter="-")
    assert table.match(Service.MAILADDR, "jo-x@example.org")


def test_regex_tables_compile_their_patterns(tmp_path: Path) -> None:
    path = tmp_path / "patterns"
    path.write_text("^ok@\n^bad(\n")
    plain = open_table("p", "file", str(path))  # not used as a regex table: fine
    assert plain.match(Service.STRING, "^ok@")
    with pytest.raises(TableError, match=rf"^{path}:2: invalid regex '\^bad\(': unmatched \($"):
        open_table("p", "file", str(path), regex=True)
    inline = (("a**", None), ("[\\]x", None))  # valid POSIX, rewritten for RE2
    table = open_table("i", "static", None, inline, regex=True)
    assert table.match(Service.REGEX, "\\x")
    path.write_text("^ok@\n")
    table = open_table("p", "file", str(path), regex=True)
    path.write_text("^bad(\n")
    with pytest.raises(TableError, match="invalid regex"):
        table.reload()
    assert table.match(Service.REGEX, "ok@example.org")

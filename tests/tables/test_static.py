"""Tests for mta.tables.static: inline and file tables and the lookup rules."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from mta.errors import TableError
from mta.tables.services import Service, TableType
from mta.tables.static import StaticTable


def listing(*keys: str, delimiter: str = "+") -> StaticTable:
    return StaticTable("t", entries=[(k, None) for k in keys], delimiter=delimiter)


def test_inline_type_and_mixing() -> None:
    assert listing("a").type is TableType.LIST
    assert StaticTable("t", entries=[("a", "b")]).type is TableType.HASH
    with pytest.raises(TableError, match="mix"):
        StaticTable("t", entries=[("a", "b"), ("c", None)])


def test_keys_lowercased_and_exact_lookup() -> None:
    table = StaticTable("t", entries=[("Bob", "Value"), ("bob", "last")])
    assert table.lookup(Service.ALIAS, "BOB") == "last"
    assert table.lookup(Service.ALIAS, "bo") is None
    assert table.lookup(Service.CREDENTIALS, "bob") == "last"
    assert listing("Foo").lookup(Service.STRING, "FOO") == "foo"


def test_too_long_key_is_table_error() -> None:
    with pytest.raises(TableError, match="too long"):
        listing("a").lookup(Service.STRING, "a" * 2000)


def test_domain_glob() -> None:
    table = listing("example.org", "*.example.com")
    assert table.match(Service.DOMAIN, "EXAMPLE.ORG")
    assert table.match(Service.DOMAIN, "mx.Example.com")
    assert not table.match(Service.DOMAIN, "example.com")
    assert not table.match(Service.DOMAIN, "example.net")
    assert listing("*").match(Service.DOMAIN, "anything.at.all")


def test_netaddr() -> None:
    table = listing("192.168.1.0/24", "10.0.0.1", "[::1]", "2001:db8::/32", "[fe80::]/10", "local")
    assert table.match(Service.NETADDR, "192.168.1.77")
    assert not table.match(Service.NETADDR, "192.168.2.1")
    assert table.match(Service.NETADDR, "10.0.0.1")
    assert not table.match(Service.NETADDR, "10.0.0.2")
    assert table.match(Service.NETADDR, "::1")
    assert table.match(Service.NETADDR, "2001:DB8:1::5")
    assert table.match(Service.NETADDR, "fe80::1234")
    assert not table.match(Service.NETADDR, "2001:db9::1")
    assert table.match(Service.NETADDR, "local")
    assert table.match(Service.NETADDR, "::ffff:192.168.1.3")


def test_mailaddr_rules() -> None:
    table = listing("user", "@example.org", "jo@example.net", "x@*.dom.test")
    assert table.match(Service.MAILADDR, "user@anywhere.test")
    assert table.match(Service.MAILADDR, "user+tag@anywhere.test")
    assert table.match(Service.MAILADDR, "someone@EXAMPLE.org")
    assert table.match(Service.MAILADDR, "jo@example.net")
    assert table.match(Service.MAILADDR, "jo+lists@example.net")
    assert not table.match(Service.MAILADDR, "jo@example.com")
    assert table.match(Service.MAILADDR, "x@mx.dom.test")
    assert not table.match(Service.MAILADDR, "y@mx.dom.test")
    assert listing("@").match(Service.MAILADDR, "a@b.c")


def test_mailaddr_tagged_entry_requires_tag() -> None:
    table = listing("jo+news@example.net")
    assert table.match(Service.MAILADDR, "jo+news@example.net")
    assert not table.match(Service.MAILADDR, "jo@example.net")
    assert not table.match(Service.MAILADDR, "jo+other@example.net")


def test_mailaddr_delimiter_parameter() -> None:
    table = listing("jo@example.net", delimiter="-")
    assert table.match(Service.MAILADDR, "jo-tag@example.net")
    assert not table.match(Service.MAILADDR, "jo+tag@example.net")


def test_regex() -> None:
    table = listing(r"^[a-z]+\d+@example\.org$", "(?i)^ADMIN")
    assert table.match(Service.REGEX, "bob12@example.org")
    assert table.match(Service.REGEX, "BOB12@EXAMPLE.ORG")
    assert table.match(Service.REGEX, "Administrator")
    assert not table.match(Service.REGEX, "bob@example.org")


def test_regex_escape_case_preserved() -> None:
    assert listing(r"^\S+$").match(Service.REGEX, "nospace")
    assert not listing(r"^\S+$").match(Service.REGEX, "has space")


def test_regex_catastrophic_pattern_is_fast() -> None:
    table = listing("(a+)+$")
    subject = "a" * 1000 + "!"
    start = time.monotonic()
    assert not listing("(a+)+b").match(Service.REGEX, subject)
    assert table.match(Service.REGEX, "a" * 1000)
    assert time.monotonic() - start < 1.0


def test_bad_regex_fails_validation_and_lookup() -> None:
    table = listing("(unclosed")
    with pytest.raises(TableError, match="invalid regex"):
        table.validate(Service.REGEX)
    with pytest.raises(TableError):
        table.match(Service.REGEX, "x")
    table.validate(Service.DOMAIN)


def test_hash_value_for_matcher_service() -> None:
    table = StaticTable("t", entries=[("*.example.org", "relay1"), ("b.test", "relay2")])
    assert table.lookup(Service.DOMAIN, "mx.example.org") == "relay1"


def test_fetch_round_robin() -> None:
    table = listing("192.0.2.2", "192.0.2.1")
    got = [table.fetch(Service.SOURCE) for _ in range(3)]
    assert got == ["192.0.2.1", "192.0.2.2", "192.0.2.1"]
    assert StaticTable("e", entries=[]).fetch(Service.SOURCE) is None


def test_file_table_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("# aliases\nroot: bob\nBob:bob@example.org\n")
    table = StaticTable("aliases", path=str(path))
    assert table.type is TableType.HASH
    assert table.lookup(Service.ALIAS, "bob") == "bob@example.org"
    path.write_text("root: carol\n")
    table.reload()
    assert table.lookup(Service.ALIAS, "root") == "carol"
    path.write_text("root: carol\nbroken\n")
    with pytest.raises(TableError, match=r"aliases:2: invalid map entry"):
        table.reload()
    assert table.lookup(Service.ALIAS, "root") == "carol"


def test_validate_values_names_line(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("joe 1000:100:/home/joe\njack 1000:x:/home/jack\n")
    table = StaticTable("users", path=str(path))
    with pytest.raises(TableError, match=r"users:2: invalid userinfo"):
        table.validate(Service.USERINFO)
    table.validate(Service.STRING)


def test_reload_with_a_bad_pattern_keeps_the_old_contents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "patterns"
    path.write_text("^alice@\n")
    table = StaticTable("patterns", path=str(path))
    table.validate(Service.REGEX)  # what the configuration does for a regex table
    path.write_text("^bob@\n^carol(@\n")
    with (
        caplog.at_level(logging.WARNING, logger="mta.table"),
        pytest.raises(TableError, match=r"patterns:2: invalid regex '\^carol\(@': unmatched \("),
    ):
        table.reload()
    assert table.match(Service.REGEX, "alice@example.org")
    assert not table.match(Service.REGEX, "bob@example.org")
    [record] = caplog.records
    assert record.getMessage() == (
        f"table patterns: update refused, previous contents kept: {path}:2: "
        "invalid regex '^carol(@': unmatched ("
    )
    path.write_text("^bob@\n")
    table.reload()
    assert table.match(Service.REGEX, "bob@example.org")
    assert not table.match(Service.REGEX, "alice@example.org")


def test_reload_checks_patterns_only_of_regex_tables(tmp_path: Path) -> None:
    # a domain list may hold "(" in a key: only a table used with regex compiles them
    path = tmp_path / "domains"
    path.write_text("example.org\n")
    table = StaticTable("domains", path=str(path))
    table.validate(Service.DOMAIN)
    path.write_text("example.net\n(odd\n")
    table.reload()
    assert table.match(Service.DOMAIN, "example.net")


def test_failed_reload_of_a_file_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users"
    path.write_text("bob\n")
    table = StaticTable("users", path=str(path))
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="mta.table"), pytest.raises(TableError):
        table.reload()
    assert "table users: update refused, previous contents kept" in caplog.text
    assert table.match(Service.STRING, "bob")

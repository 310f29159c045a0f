"""Tests for mta.rules.tableset: opening a configuration's tables, inline tables,
and thread-safe use of helper-process tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from mta.config.model import InlineTable, NamedTable
from mta.errors import TableError
from mta.rules.tableset import TableSet, is_blocking
from mta.tables import Service
from mta.tables.proctable import ProcTable
from tests.rules.helpers import HOSTNAME, LOCAL_ADDRESSES, load, write_proc_helper

ALIASES = {f"key{index}": f"user{index}" for index in range(20)}


@pytest.fixture
def helper(tmp_path: Path) -> Path:
    return write_proc_helper(tmp_path)


def test_open_declared_and_builtin_tables(tmp_path: Path) -> None:
    senders = tmp_path / "senders"
    senders.write_text("bob@example.com\n")
    config = load(
        'smtp sub-addr-delim "-"\n'
        f"table sendertab file:{senders}\n"
        "table domains { example.com, example.net }\n"
        'action "a" relay\nmatch from any for domain <domains> action "a"\n'
    )
    tables = TableSet.open(config, HOSTNAME, LOCAL_ADDRESSES)
    try:
        assert sorted(tables.names()) == sorted(
            [
                "<localhost>",
                "<anyhost>",
                "<localnames>",
                "<anydestination>",
                "<getpwnam>",
                "sendertab",
                "domains",
            ]
        )
        # the configured sub-address delimiter reaches mailaddr matching
        assert tables.get(NamedTable("sendertab")).match(Service.MAILADDR, "bob-x@example.com")
        assert not tables.get(NamedTable("sendertab")).match(Service.MAILADDR, "bob+x@example.com")
        assert tables.get(NamedTable("domains")).match(Service.DOMAIN, "EXAMPLE.net")
        assert tables.builtin("<localhost>").match(Service.NETADDR, "192.0.2.10")
        assert tables.builtin("<localnames>").match(Service.DOMAIN, HOSTNAME)
        assert not is_blocking(tables.get(NamedTable("domains")))
        assert is_blocking(tables.builtin("<getpwnam>"))
    finally:
        tables.close()


def test_inline_tables_are_opened_once() -> None:
    tables = TableSet.open(load("match for any reject\n"), HOSTNAME, LOCAL_ADDRESSES)
    ref = InlineTable((("a@example.com", None), ("b@example.com", None)))
    first = tables.get(ref)
    assert tables.get(InlineTable((("a@example.com", None), ("b@example.com", None)))) is first
    assert first.match(Service.MAILADDR, "b+tag@example.com")
    assert tables.get(InlineTable((("x", None),))) is not first
    tables.close()


def test_unknown_table_is_a_table_error() -> None:
    tables = TableSet.open(load("match for any reject\n"), HOSTNAME, LOCAL_ADDRESSES)
    with pytest.raises(TableError, match="no such table"):
        tables.get(NamedTable("nope"))


def test_open_failure_names_the_table(tmp_path: Path) -> None:
    path = tmp_path / "domains"
    path.write_text("example.com\n")
    config = load(
        f'table domains file:{path}\naction "a" relay\n'
        'match from any for domain <domains> action "a"\n'
    )
    path.unlink()
    with pytest.raises(TableError, match="table domains"):
        TableSet.open(config, HOSTNAME, LOCAL_ADDRESSES)


async def test_regex_tables_keep_their_patterns_valid(tmp_path: Path) -> None:
    path = tmp_path / "patterns"
    path.write_text("^alice@\n")
    config = load(
        f'table patterns file:{path}\naction "a" relay\n'
        'match from any for rcpt-to regex <patterns> action "a"\n'
    )
    path.write_text("^bob(@\n")  # changed between the check and the start
    with pytest.raises(TableError, match=r"table patterns: .*invalid regex '\^bob\(@'"):
        TableSet.open(config, HOSTNAME, LOCAL_ADDRESSES)
    path.write_text("^alice@\n")
    tables = TableSet.open(config, HOSTNAME, LOCAL_ADDRESSES)
    try:
        path.write_text("^bob(@\n")
        with pytest.raises(TableError, match="invalid regex"):
            await tables.reload("patterns")  # mtactl update table
        assert tables.get(NamedTable("patterns")).match(Service.REGEX, "alice@example.org")
    finally:
        tables.close()


async def test_helper_tables_serve_one_thread_at_a_time(helper: Path) -> None:
    tables = TableSet({"dyn": ProcTable("dyn", str(helper), json.dumps([ALIASES, ["a.example"]]))})
    table = tables.get(NamedTable("dyn"))
    assert is_blocking(table)
    results: dict[int, str | None] = {}

    async def ask(index: int) -> None:
        results[index] = await tables.call(
            table, lambda: table.lookup(Service.ALIAS, f"key{index}")
        )

    try:
        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(ask, index)
        assert results == {index: f"user{index}" for index in range(20)}
        assert table.services == Service.ALIAS | Service.DOMAIN  # from the handshake
        assert table.match(Service.DOMAIN, "a.example")
        assert not table.match(Service.DOMAIN, "a.example.org")
    finally:
        tables.close()
    inner = ProcTable("dyn", str(helper), json.dumps([ALIASES, []]))
    inner.lookup(Service.ALIAS, "key1")
    TableSet({"dyn": inner}).close()
    assert inner._process is None

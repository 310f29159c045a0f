"""Tests for mta.tables.makemap and the db backend (mta.tables.db, mta.tables.bdb),
including files written by the real OpenSMTPD makemap when it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mta.errors import TableError
from mta.tables import open_table
from mta.tables.aliases import lookup_alias
from mta.tables.aliasnodes import AliasCommand, AliasUser
from mta.tables.bdb import read_hash
from mta.tables.makemap import MapType, makemap, map_records
from mta.tables.services import Service, TableType

pytest.importorskip("berkeleydb")

REAL_MAKEMAP = "/usr/sbin/makemap"


def test_records_format() -> None:
    assert map_records("Foo bar\nBaz: a, b\n", "s", MapType.PLAIN) == [
        ("foo", "bar"),
        ("baz", "a, b"),
    ]
    assert map_records("a\nb\n", "s", MapType.SET) == [("a", "<set>"), ("b", "<set>")]
    with pytest.raises(TableError, match=r"^s:2: duplicate entry for A$"):
        map_records("a 1\nA 2\n", "s", MapType.PLAIN)
    with pytest.raises(TableError, match=r"^s:1: invalid map entry$"):
        map_records("lonely\n", "s", MapType.PLAIN)
    with pytest.raises(TableError, match=r"^s:1: "):
        map_records("root: bad user\n", "s", MapType.ALIASES)


def test_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "secrets"
    source.write_text("label user:password\n[::1] localhost\n")
    dest = tmp_path / "secrets.db"
    assert makemap(str(source)) == 2
    raw = read_hash(str(dest))
    assert sorted(raw) == [("[::1]", "localhost"), ("label", "user:password")]
    with open(dest, "rb") as handle:
        assert handle.read(4096)
    table = open_table("secrets", "db", str(dest))
    assert table.type is TableType.DYNAMIC
    assert table.lookup(Service.CREDENTIALS, "LABEL") == "user:password"
    assert table.lookup(Service.CREDENTIALS, "other") is None
    assert [f.name for f in tmp_path.iterdir()] != []
    assert not [f for f in tmp_path.iterdir() if ".db." in f.name]


def test_aliases_and_set(tmp_path: Path) -> None:
    source = tmp_path / "aliases"
    source.write_text('root: bob,\n  "|/bin/cat"\n')
    makemap(str(source), str(tmp_path / "aliases.db"), "aliases")
    table = open_table("aliases", "db", str(tmp_path / "aliases.db"))
    assert lookup_alias(table, "root+x") == (AliasUser("bob"), AliasCommand("/bin/cat"))
    domains = tmp_path / "domains"
    domains.write_text("example.org\n*.example.net\n")
    makemap(str(domains), str(tmp_path / "domains.db"), MapType.SET)
    table = open_table("domains", "db", str(tmp_path / "domains.db"))
    assert table.match(Service.DOMAIN, "mx.example.net")
    assert table.lookup(Service.DOMAIN, "example.org") == "example.org"
    assert not table.match(Service.DOMAIN, "example.com")


def test_db_reloads_when_changed(tmp_path: Path) -> None:
    source = tmp_path / "t"
    source.write_text("a 1\n")
    makemap(str(source))
    table = open_table("t", "db", f"{source}.db")
    assert table.lookup(Service.STRING, "a") == "1"
    source.write_text("a 2\n")
    makemap(str(source))
    stamp = os.stat(f"{source}.db").st_mtime_ns + 1_000_000_000
    os.utime(f"{source}.db", ns=(stamp, stamp))
    assert table.lookup(Service.STRING, "a") == "2"


def test_failure_keeps_destination(tmp_path: Path) -> None:
    source = tmp_path / "t"
    source.write_text("a 1\n")
    makemap(str(source))
    source.write_text("a\n")
    with pytest.raises(TableError):
        makemap(str(source), type="plain")
    assert read_hash(f"{source}.db") == [("a", "1")]
    with pytest.raises(TableError):
        makemap(str(tmp_path / "missing"))


def test_missing_db_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"missing\.db"):
        open_table("t", "db", str(tmp_path / "missing.db"))


@pytest.mark.skipif(
    shutil.which(REAL_MAKEMAP) is None and not os.path.exists(REAL_MAKEMAP),
    reason="OpenSMTPD makemap not installed",
)
def test_reads_real_makemap_output(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.write_text("Joe 1000:100:/home/joe\nlabel user:secret\n")
    out = tmp_path / "out.db"
    result = subprocess.run(
        [REAL_MAKEMAP, "-o", str(out), str(source)], capture_output=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"makemap failed: {result.stderr!r}")
    table = open_table("t", "db", str(out))
    assert table.lookup(Service.USERINFO, "joe") == "1000:100:/home/joe"
    assert table.lookup(Service.CREDENTIALS, "label") == "user:secret"
    ours = tmp_path / "ours.db"
    makemap(str(source), str(ours))
    assert sorted(read_hash(str(ours))) == sorted(read_hash(str(out)))

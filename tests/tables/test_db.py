"""Tests for mta.tables.db: a makemap database reread when it changes, and a
new version whose patterns do not compile refused (logged once, old contents kept)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mta.errors import TableError
from mta.tables.services import Service

pytest.importorskip("berkeleydb")

from mta.tables.bdb import write_hash
from mta.tables.db import SET_VALUE, DbTable


def write(path: Path, keys: list[str], mtime: int) -> None:
    write_hash(str(path), [(key, SET_VALUE) for key in keys])
    os.utime(path, (mtime, mtime))  # a new modification time, whatever the clock's grain


def test_changed_file_is_reread(tmp_path: Path) -> None:
    path = tmp_path / "domains.db"
    write(path, ["example.org"], 1_000_000)
    table = DbTable("domains", str(path))
    assert table.match(Service.DOMAIN, "example.org")
    write(path, ["example.net"], 1_000_100)
    assert table.match(Service.DOMAIN, "example.net")
    assert not table.match(Service.DOMAIN, "example.org")
    path.unlink()
    with pytest.raises(TableError, match=r"domains\.db"):
        table.match(Service.DOMAIN, "example.net")


def test_bad_pattern_in_a_new_version_keeps_the_old_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "patterns.db"
    write(path, ["^alice@"], 1_000_000)
    table = DbTable("patterns", str(path))
    table.validate(Service.REGEX)
    write(path, ["^bob@", "^carol(@"], 1_000_100)
    with caplog.at_level(logging.WARNING, logger="mta.table"):
        for _ in range(3):  # lookups go on with the old contents, logged once
            assert table.match(Service.REGEX, "alice@example.org")
            assert not table.match(Service.REGEX, "bob@example.org")
    [record] = caplog.records
    assert "table patterns: update refused, previous contents kept" in record.getMessage()
    assert "invalid regex '^carol(@': unmatched (" in record.getMessage()
    with pytest.raises(TableError, match="invalid regex"):
        table.reload()  # an explicit reload (mtactl update table) says why
    write(path, ["^bob@"], 1_000_200)
    assert table.match(Service.REGEX, "bob@example.org")

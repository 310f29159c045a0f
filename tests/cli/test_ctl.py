"""``mtactl``: makemap builds db tables that the db backend reads; daemon verbs say why not."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.cli import ctl
from mta.tables import Service, open_table

berkeleydb = pytest.importorskip("berkeleydb")


def test_makemap_builds_a_readable_db(tmp_path: Path) -> None:
    src = tmp_path / "secrets"
    src.write_text("bob username:password\n# comment\nalice other:pw\n")
    assert ctl.main(["makemap", str(src)]) == 0
    table = open_table("secrets", "db", str(src) + ".db")
    assert table.lookup(Service.CREDENTIALS, "bob") == "username:password"
    assert table.lookup(Service.CREDENTIALS, "carol") is None


def test_newaliases(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    src.write_text("root: bob, alice\npostmaster: root\n")
    assert ctl.main(["newaliases", str(src)]) == 0
    table = open_table("aliases", "db", str(src) + ".db")
    assert table.lookup(Service.ALIAS, "postmaster") == "root"


def test_makemap_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bad"
    src.write_text("key value\nlonely\n")
    assert ctl.main(["makemap", str(src)]) == 1
    assert "bad:2" in capsys.readouterr().err


def test_daemon_verbs_without_a_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["--spool", str(tmp_path), "show", "status"]) == 1
    err = capsys.readouterr().err
    assert "mta is not running on this spool" in err and f"{tmp_path}/mta.sock" in err
    # show queue reads the spool itself, which must be one
    assert ctl.main(["--spool", str(tmp_path), "show", "queue"]) == 1
    assert "not an mta spool" in capsys.readouterr().err
    assert ctl.main(["frobnicate"]) == 2
    assert ctl.main(["pause", "everything"]) == 2
    assert "pause needs one of: envelope, mda, mta, smtp" in capsys.readouterr().err

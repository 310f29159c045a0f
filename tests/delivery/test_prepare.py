"""What root prepares before a delivery runs as the user: the fixed part of a
maildir path and the user's first directory below it, nothing else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mta.delivery.prepare import create_mailbox, prepare_maildir_base, user_base

OWNER = (65534, 65534) if os.geteuid() == 0 else (os.geteuid(), os.getegid())


def test_user_base_only_for_an_administrator_s_fixed_directory() -> None:
    assert user_base("/srv/mail/%{user.username}", "/srv/mail") == "/srv/mail"
    assert user_base("/work/spool/maildir/%{user.username}", "/work/spool/maildir") is not None
    assert user_base("%{user.directory}/Maildir", "/") is None  # a home: not root's to make
    assert user_base("~/Maildir", None) is None
    assert user_base("/var/mail/shared", None) is None  # nothing varies


def test_makes_the_base_and_the_user_s_directory(tmp_path: Path) -> None:
    base = tmp_path / "spool" / "maildir"
    prepare_maildir_base(str(base), str(base / "alice"), *OWNER)
    assert stat.S_IMODE(base.stat().st_mode) == 0o755
    assert (base.stat().st_uid, stat.S_IMODE((tmp_path / "spool").stat().st_mode)) == (
        os.geteuid(),
        0o755,
    )
    user_dir = base / "alice"
    assert stat.S_IMODE(user_dir.stat().st_mode) == 0o700
    assert (user_dir.stat().st_uid, user_dir.stat().st_gid) == OWNER
    # deeper paths: only the first directory below the base
    prepare_maildir_base(str(base), str(base / "bob" / "Maildir"), *OWNER)
    assert (base / "bob").is_dir() and not (base / "bob" / "Maildir").exists()


def test_changes_nothing_that_exists(tmp_path: Path) -> None:
    base = tmp_path / "maildir"
    base.mkdir(mode=0o750)
    os.chmod(base, 0o750)
    (base / "alice").mkdir(mode=0o755)
    os.chmod(base / "alice", 0o755)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (base / "carol").symlink_to(target)
    prepare_maildir_base(str(base), str(base / "alice"), *OWNER)
    prepare_maildir_base(str(base), str(base / "carol"), *OWNER)
    assert stat.S_IMODE(base.stat().st_mode) == 0o750
    assert stat.S_IMODE((base / "alice").stat().st_mode) == 0o755
    assert (base / "carol").is_symlink() and not list(target.iterdir())


def test_paths_outside_the_base_are_left_alone(tmp_path: Path) -> None:
    prepare_maildir_base(str(tmp_path / "base"), str(tmp_path / "other" / "alice"), *OWNER)
    prepare_maildir_base(str(tmp_path / "base"), str(tmp_path / "base"), *OWNER)
    assert not (tmp_path / "other").exists() and not (tmp_path / "base").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_system_mailbox_is_the_user_s(tmp_path: Path) -> None:
    path = tmp_path / "alice"
    create_mailbox(str(path), 65534, 65534)
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)
    path.write_text("kept")
    create_mailbox(str(path), 65534, 65534)
    assert path.read_text() == "kept"

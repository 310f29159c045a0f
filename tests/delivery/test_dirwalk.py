"""Tests for mta.delivery.dirwalk: the errno classification, absolute paths,
and directories opened one at a time (created 0700, links refused or followed)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from mta.delivery.dirwalk import failure_from_oserror, open_directory, open_root, split_absolute
from mta.errors import PermanentFailure, TemporaryFailure


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        (errno.ENAMETOOLONG, True),
        (errno.EINVAL, True),
        (errno.ENOSPC, False),
        (errno.EDQUOT, False),
        (errno.EIO, False),
        (errno.EROFS, False),
        (errno.EACCES, False),
        (errno.EPERM, False),
        (errno.ELOOP, False),
        (errno.ENOENT, False),
        (errno.EFBIG, False),
    ],
)
def test_failure_from_oserror(code: int, permanent: bool) -> None:
    failure = failure_from_oserror(OSError(code, os.strerror(code)), "/x")
    assert isinstance(failure, PermanentFailure if permanent else TemporaryFailure)
    assert str(failure) == f"/x: {os.strerror(code)}"


def test_split_absolute() -> None:
    assert split_absolute("/home//bob/./Maildir/") == ["home", "bob", "Maildir"]
    for bad, reason in (
        ("home/bob", "not an absolute path"),
        ("/home/../etc", "'..' in path"),
        ("/", "the root directory"),
        ("/a\0b", "NUL in path"),
    ):
        with pytest.raises(PermanentFailure, match=reason):
            split_absolute(bad)


def test_open_directory_creates_0700_and_refuses_links(tmp_path: Path) -> None:
    parent = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = open_directory(parent, "new", f"{tmp_path}/new", create=True, nofollow=True)
        os.close(fd)
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
        (tmp_path / "link").symlink_to(tmp_path / "new")
        with pytest.raises(TemporaryFailure, match="is a symbolic link, not followed"):
            open_directory(parent, "link", f"{tmp_path}/link", create=True, nofollow=True)
        fd = open_directory(parent, "link", f"{tmp_path}/link", create=False, nofollow=False)
        os.close(fd)
        with pytest.raises(TemporaryFailure, match="No such file or directory"):
            open_directory(parent, "missing", f"{tmp_path}/missing", create=False, nofollow=True)
    finally:
        os.close(parent)


def test_open_root_confined(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "bob").symlink_to(tmp_path / "elsewhere")
    fd = open_root(f"{tmp_path}/base/alice/Maildir", f"{tmp_path}/base", None)
    os.close(fd)
    assert (tmp_path / "base" / "alice" / "Maildir").is_dir()
    with pytest.raises(TemporaryFailure, match="symbolic link"):
        open_root(f"{tmp_path}/base/bob/Maildir", f"{tmp_path}/base", None)
    with pytest.raises(PermanentFailure, match="not under"):
        open_root(f"{tmp_path}/other", f"{tmp_path}/base", None)
    fd = open_root(f"{tmp_path}/base/bob/Maildir", None, None)  # unconfined: followed
    os.close(fd)
    assert (tmp_path / "elsewhere" / "Maildir").is_dir()

"""The blocking file steps: error mapping, creation rules, partial writes."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest

from mta.errors import SpoolError, SpoolFull
from mta.spool import fsio


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOSPC, SpoolFull),
        (errno.EDQUOT, SpoolFull),
        (errno.EIO, SpoolError),
        (errno.EACCES, SpoolError),
    ],
)
def test_spool_error_mapping(code: int, expected: type[SpoolError]) -> None:
    error = fsio.spool_error(OSError(code, os.strerror(code), "/x/y"), "writing")
    assert type(error) is expected
    assert str(error) == f"spool: writing /x/y: {os.strerror(code)}"


def test_write_file_creates_only_new_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f"
    fsio.write_file(str(path), b"data")
    assert path.read_bytes() == b"data"
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        fsio.write_file(str(path), b"other")
    assert path.read_bytes() == b"data"
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(FileExistsError):
        fsio.write_file(str(tmp_path / "link"), b"x")
    assert not (tmp_path / "target").exists()


def test_write_file_leaves_nothing_on_failure(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        fsio.write_file(str(tmp_path / "f"), b"data")
    assert not (tmp_path / "f").exists()


def test_write_all_handles_short_writes(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data)[:3])

    monkeypatch.setattr(os, "write", short_write)
    buffer = bytearray(b"0123456789" * 10)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fsio.write_all(fd, buffer)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"0123456789" * 10
    buffer.clear()  # no view of it is left behind


def test_fsync_dir_and_remove_tree(tmp_path: pathlib.Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_bytes(b"x")
    fsio.fsync_dir(str(tmp_path / "d"))
    fsio.remove_tree(str(tmp_path / "d"))
    fsio.remove_tree(str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()
    with pytest.raises(NotADirectoryError):
        (tmp_path / "plain").write_bytes(b"")
        fsio.fsync_dir(str(tmp_path / "plain"))

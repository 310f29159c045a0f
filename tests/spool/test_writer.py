"""The message writer: buffering, encoding as data arrives, sticky errors."""

from __future__ import annotations

import errno
import gzip
import os
import pathlib

import pytest

from mta.spool.seal import StreamEncoder
from mta.spool.writer import FLUSH_AT, MessageWriter

from .conftest import KEY
from .test_crypto import reference_decrypt


def open_writer(
    path: pathlib.Path, compress: bool = False, key: bytes | None = None
) -> MessageWriter:
    def opener() -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    return MessageWriter(opener, StreamEncoder(compress=compress, key=key))


def test_small_writes_stay_in_memory_until_finish(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m"
    writer = open_writer(path)
    writer.write(b"a" * 1000)
    assert not path.exists() and not writer.created
    writer.finish()
    assert path.read_bytes() == b"a" * 1000
    assert writer.closed and writer.size == 1000


def test_large_messages_reach_the_file_as_they_arrive(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m"
    writer = open_writer(path, compress=True, key=KEY)
    for _ in range(4 * FLUSH_AT // 16384):
        writer.write(os.urandom(16384))  # incompressible
    assert path.stat().st_size >= 3 * FLUSH_AT  # memory does not grow with the message
    writer.finish()
    assert len(gzip.decompress(reference_decrypt(KEY, path.read_bytes()))) == 4 * FLUSH_AT


def test_errors_are_kept_and_raised_at_finish(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_writer(tmp_path / "m")
    writer.write(b"x")

    def failing_write(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", failing_write)
    writer.write(b"x" * FLUSH_AT)
    error = writer.error
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    writer.write(b"y")
    assert writer.error is error and writer.size == FLUSH_AT + 1
    with pytest.raises(OSError) as caught:
        writer.finish()
    assert caught.value is error
    assert writer.closed


def test_opener_failure_is_kept(tmp_path: pathlib.Path) -> None:
    writer = open_writer(tmp_path / "missing" / "m")
    writer.write(b"x" * FLUSH_AT)
    assert isinstance(writer.error, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        writer.finish()


def test_finish_creates_the_file_of_a_small_message(tmp_path: pathlib.Path) -> None:
    writer = open_writer(tmp_path / "missing" / "m")
    writer.write(b"x")
    with pytest.raises(FileNotFoundError):
        writer.finish()
    assert writer.closed


def test_closed_writer_refuses_data(tmp_path: pathlib.Path) -> None:
    writer = open_writer(tmp_path / "m")
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError):
        writer.write(b"x")
    with pytest.raises(RuntimeError):
        writer.finish()

"""The message writer: buffering, encoding as data arrives, seal then finish, sticky errors."""

from __future__ import annotations

import errno
import gzip
import io
import os
import pathlib
import zlib

import pytest

from mta.spool import seal
from mta.spool.seal import StreamEncoder
from mta.spool.writer import FLUSH_AT, MessageWriter

from .conftest import KEY, every_setting
from .test_crypto import reference_decrypt

TAIL = b"<the envelope section and the trailer>"


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
    assert writer.seal() == 1000
    assert not path.exists() and not writer.created  # seal does no I/O
    writer.finish(TAIL)
    assert path.read_bytes() == b"a" * 1000 + TAIL
    assert (writer.closed, writer.created, writer.size) == (True, True, 1000)


def test_large_messages_reach_the_file_as_they_arrive(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m"
    writer = open_writer(path, compress=True, key=KEY)
    for _ in range(4 * FLUSH_AT // 16384):
        writer.write(os.urandom(16384))  # incompressible
    assert path.stat().st_size >= 3 * FLUSH_AT  # memory does not grow with the message
    length = writer.seal()
    writer.finish(TAIL)
    data = path.read_bytes()
    assert len(data) == length + len(TAIL) and data[length:] == TAIL
    assert len(gzip.decompress(reference_decrypt(KEY, data[:length]))) == 4 * FLUSH_AT


@every_setting
@pytest.mark.parametrize("size", [0, 1, 1000, FLUSH_AT - 1, FLUSH_AT, 3 * FLUSH_AT + 5])
def test_seal_returns_the_encoded_length(
    tmp_path: pathlib.Path, compression: bool, key: bytes | None, size: int
) -> None:
    path = tmp_path / "m"
    writer = open_writer(path, compression, key)
    content = (b"Subject: s\r\n\r\n" + os.urandom(size))[:size]
    for start in range(0, size, 10_000):
        writer.write(content[start : start + 10_000])
    length = writer.seal()
    writer.finish(TAIL)
    data = path.read_bytes()
    assert data[length:] == TAIL
    encoded = data[:length]
    assert b"".join(seal.decode_stream(io.BytesIO(encoded), length, key)) == content
    assert writer.crc == zlib.crc32(encoded)  # of the bytes as stored, computed as written


def test_errors_are_kept_and_raised_at_seal(
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
        writer.seal()
    assert caught.value is error
    writer.close()  # what an aborting transaction does
    assert writer.closed
    with pytest.raises(RuntimeError):
        writer.finish(TAIL)


def test_opener_failure_is_kept(tmp_path: pathlib.Path) -> None:
    writer = open_writer(tmp_path / "missing" / "m")
    writer.write(b"x" * FLUSH_AT)
    assert isinstance(writer.error, FileNotFoundError)
    assert writer.created  # it may have been: the transaction must clean up
    with pytest.raises(FileNotFoundError):
        writer.seal()


def test_finish_creates_the_file_of_a_small_message(tmp_path: pathlib.Path) -> None:
    writer = open_writer(tmp_path / "missing" / "m")
    writer.write(b"x")
    writer.seal()
    with pytest.raises(FileNotFoundError):
        writer.finish(TAIL)
    assert writer.closed


def test_finish_closes_the_fd_when_fsync_fails(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m"
    writer = open_writer(path)
    writer.write(b"x" * (FLUSH_AT + 1))  # the file is open now
    synced: list[int] = []

    def failing_fsync(fd: int) -> None:
        synced.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    writer.seal()
    with pytest.raises(OSError, match="Input/output"):
        writer.finish(TAIL)
    assert len(synced) == 1 and writer.closed
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(synced[0])
    with pytest.raises(RuntimeError):
        writer.finish(TAIL)  # never fsynced twice


def test_the_order_of_calls_is_enforced(tmp_path: pathlib.Path) -> None:
    writer = open_writer(tmp_path / "m")
    with pytest.raises(RuntimeError, match="not sealed"):
        writer.finish(TAIL)
    writer.write(b"x")
    writer.seal()
    with pytest.raises(RuntimeError):
        writer.write(b"after seal")
    with pytest.raises(RuntimeError):
        writer.seal()
    writer.finish(TAIL)
    with pytest.raises(RuntimeError):
        writer.finish(TAIL)


def test_closed_writer_refuses_data(tmp_path: pathlib.Path) -> None:
    writer = open_writer(tmp_path / "m")
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError):
        writer.write(b"x")
    with pytest.raises(RuntimeError):
        writer.seal()
    with pytest.raises(RuntimeError):
        writer.finish()
    assert not (tmp_path / "m").exists()

"""Transactions under failure: every fault leaves nothing behind and maps to the right
temporary failure; an fd whose fsync failed is never fsynced again (fsyncgate)."""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from mta.errors import SpoolError, SpoolFull
from mta.spool import Spool, Transaction, msgfile, transaction
from mta.spool.paths import bucket_of
from mta.spool.writer import FLUSH_AT
from tests.envelopes import make_envelope

from .conftest import (
    Draws,
    bucket_path,
    files_under,
    message_path,
    read_message,
)
from .recorder import Recorder

MESSAGE = b"Received: by test\r\n\r\nhello\r\n"


async def start(spool: Spool, content: bytes = MESSAGE) -> Transaction:
    txn = await spool.begin()
    (await txn.open_message()).write(content)
    return txn


def assert_nothing_left(root: pathlib.Path) -> None:
    assert os.listdir(root / "incoming") == []
    assert files_under(root / "queue") == []


def test_assign_ids_are_distinct_and_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transaction, "_random", Draws([0, 5, 5, 0, 7]))
    envelopes = transaction.assign_ids(0xAB, [make_envelope(msgid=3, id=9), make_envelope()])
    assert [e.id for e in envelopes] == [0xAB << 32 | 5, 0xAB << 32 | 7]
    assert {e.msgid for e in envelopes} == {0xAB}


class FsyncFault:
    """os.fsync that fails once with ``error`` for the path chosen by ``target``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: str, error: int) -> None:
        self.target = target
        self.error = error
        self.failed_inode: int | None = None
        self.synced_inodes: list[int] = []
        self.real = os.fsync
        monkeypatch.setattr(os, "fsync", self.fsync)

    def fsync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        inode = os.fstat(fd).st_ino
        self.synced_inodes.append(inode)
        if self.failed_inode is None and self.matches(path):
            self.failed_inode = inode
            raise OSError(self.error, os.strerror(self.error))
        self.real(fd)

    def matches(self, path: str) -> bool:
        name = os.path.basename(path)
        parent = os.path.basename(os.path.dirname(path))
        if self.target == "message":  # the message file, before its rename
            return parent == "incoming"
        if self.target == "bucket":  # after the rename
            return parent == "queue"
        if self.target == "queue":  # after the rename into a new bucket
            return name == "queue"
        raise AssertionError(self.target)


@pytest.mark.parametrize("target", ["message", "bucket", "queue"])
@pytest.mark.parametrize(
    ("error", "expected"), [(errno.EIO, SpoolError), (errno.ENOSPC, SpoolFull)]
)
async def test_fsync_failure_anywhere(
    root: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    error: int,
    expected: type[SpoolError],
) -> None:
    spool = await Spool.open(root)
    txn = await start(spool)
    if target == "queue":  # queue/ is only fsynced for a bucket removed by hand
        bucket_path(root, txn.msgid).rmdir()
    fault = FsyncFault(monkeypatch, target, error)
    with pytest.raises(expected) as caught:
        await txn.commit([make_envelope(), make_envelope()])
    assert type(caught.value) is expected
    assert fault.failed_inode is not None
    assert fault.synced_inodes.count(fault.failed_inode) == 1  # never retried
    assert_nothing_left(root)
    assert spool.stats.failures == 1 and spool.stats.commits == 0
    # The spool keeps working afterwards, durably: a bucket made again that is not
    # known to be in queue/ for good is fsynced in it by the next commit that uses it.
    monkeypatch.setattr(os, "fsync", fault.real)
    again = await start(spool)
    assert bucket_of(again.msgid) == bucket_of(txn.msgid)
    recorder = Recorder(monkeypatch)
    await again.commit([make_envelope()])
    assert await spool.message_ids() == [again.msgid]
    assert recorder.fsynced(root / "queue") == (1 if target == "queue" else 0)
    third = await start(spool)
    recorder = Recorder(monkeypatch)
    await third.commit([make_envelope()])
    assert recorder.fsynced(root / "queue") == 0  # settled once an fsync worked


@pytest.mark.parametrize(
    ("error", "expected"),
    [(errno.ENOSPC, SpoolFull), (errno.EDQUOT, SpoolFull), (errno.EIO, SpoolError)],
)
async def test_message_write_error_is_kept_until_commit(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch, error: int, expected: type[SpoolError]
) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    writer = await txn.open_message()
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") == txn.path:
            raise OSError(error, os.strerror(error))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    writer.write(b"x" * FLUSH_AT)  # reaches the disk now: fails, but does not raise
    writer.write(b"more")  # dropped
    assert isinstance(writer.error, OSError)
    with pytest.raises(expected) as caught:
        await txn.commit([make_envelope()])
    assert type(caught.value) is expected
    assert_nothing_left(root)


@pytest.mark.parametrize(
    ("error", "expected"), [(errno.ENOSPC, SpoolFull), (errno.EIO, SpoolError)]
)
async def test_write_error_at_commit(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch, error: int, expected: type[SpoolError]
) -> None:
    """A small message and its envelopes reach the disk in the commit's one write."""
    spool = await Spool.open(root)
    txn = await start(spool)
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") == txn.path:
            raise OSError(error, os.strerror(error))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(expected) as caught:
        await txn.commit([make_envelope(), make_envelope()])
    assert type(caught.value) is expected
    assert "writing message" in str(caught.value)
    assert_nothing_left(root)
    assert spool.stats.failures == 1


async def test_short_writes_are_completed(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    content = MESSAGE * 10_000  # flushed while written, then the rest and the tail
    txn = await spool.begin()
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data[:1000]))

    monkeypatch.setattr(os, "write", short_write)
    (await txn.open_message()).write(content)
    envelopes = await txn.commit([make_envelope(), make_envelope()])
    assert read_message(message_path(root, txn.msgid))[0] == content
    assert [e.id for e in await spool.envelopes()] == sorted(e.id for e in envelopes)


async def test_an_envelope_too_large_for_the_message_file(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(msgfile, "MAX_ENVELOPE_BYTES", 100)
    spool = await Spool.open(root)
    for content in (MESSAGE, MESSAGE * 10_000):  # still in memory, already on disk
        txn = await start(spool, content)
        with pytest.raises(SpoolError, match="sealed envelope"):
            await txn.commit([make_envelope()])
        assert_nothing_left(root)
    assert spool.stats.failures == 2


async def test_file_and_bucket_creation_failures(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    real_open = os.open

    def no_space(path: str, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if os.path.dirname(path) == str(root / "incoming"):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_space)
    small = await start(spool)
    with pytest.raises(SpoolFull):  # created at commit
        await small.commit([make_envelope()])
    large = await spool.begin()
    writer = await large.open_message()
    writer.write(b"x" * FLUSH_AT)  # the file is made now, and fails
    assert isinstance(writer.error, OSError)
    with pytest.raises(SpoolFull):
        await large.commit([make_envelope()])
    monkeypatch.undo()
    assert_nothing_left(root)

    def no_file(path: str, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if os.path.dirname(path) == str(root / "incoming"):
            raise OSError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_file)
    txn = await start(spool)
    with pytest.raises(SpoolError, match="Permission denied"):
        await txn.commit([make_envelope()])
    monkeypatch.undo()
    assert_nothing_left(root)

    real_mkdir = os.mkdir

    def no_bucket(path: str, mode: int = 0o777) -> None:
        if os.path.dirname(path) == str(root / "queue"):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_mkdir(path, mode)

    monkeypatch.setattr(os, "mkdir", no_bucket)
    txn = await start(spool)
    bucket_path(root, txn.msgid).rmdir()  # removed by hand, and cannot be made again
    with pytest.raises(SpoolFull, match="publishing message"):
        await txn.commit([make_envelope()])
    monkeypatch.undo()
    assert_nothing_left(root)
    assert not bucket_path(root, txn.msgid).exists()
    assert spool.stats.failures == 4
    again = await start(spool)
    await again.commit([make_envelope()])
    assert await spool.message_ids() == [again.msgid]


@pytest.fixture
def small_fs(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A 1 MiB tmpfs (needs root and CAP_SYS_ADMIN; skipped otherwise)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


@pytest.mark.parametrize("compression", [False, True])
async def test_real_disk_full(small_fs: pathlib.Path, compression: bool) -> None:
    root = small_fs / "spool"
    spool = await Spool.open(root, compression=compression)
    txn = await spool.begin()
    writer = await txn.open_message()
    chunk = os.urandom(64 * 1024)  # random: gzip cannot shrink it
    for _ in range(32):  # 2 MiB into a 1 MiB filesystem
        writer.write(chunk)
    assert writer.error is not None
    with pytest.raises(SpoolFull):
        await txn.commit([make_envelope()])
    assert_nothing_left(root)
    # The space is back: the next message fits.
    fits = await start(spool)
    (envelope,) = await fits.commit([make_envelope()])
    assert await spool.load_envelope(envelope.id) == envelope
    assert message_path(root, fits.msgid).is_file()


async def test_real_disk_full_at_commit(small_fs: pathlib.Path) -> None:
    root = small_fs / "spool"
    spool = await Spool.open(root)
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    txn = await start(spool, b"")  # an empty message: only the envelopes need space
    with pytest.raises(SpoolFull):
        await txn.commit([make_envelope() for _ in range(3)])
    assert_nothing_left(root)
    filler.unlink()
    again = await start(spool, b"")
    envelopes = await again.commit([make_envelope() for _ in range(3)])
    assert sorted(e.id for e in await spool.envelopes()) == sorted(e.id for e in envelopes)
    with await spool.open_message(again.msgid) as stream:
        assert stream.read() == b""

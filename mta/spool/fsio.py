"""Blocking file-system steps of the spool, each done the durable way.

Everything here blocks and runs in a worker thread.  Rules (reliability-rules
1.6): a file is fsynced before the rename that publishes it, the directories a
rename changes are fsynced after it, and an fd whose fsync failed is closed and
never fsynced again (after EIO Linux drops the dirty pages, so a second fsync
would "succeed" on lost data).  :func:`spool_error` turns an OSError into the
spool's temporary failures: ENOSPC / EDQUOT are :class:`~mta.errors.SpoolFull`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil

from mta.errors import SpoolError, SpoolFull

__all__ = [
    "FILE_MODE",
    "create_file",
    "fsync_dir",
    "remove_tree",
    "spool_error",
    "write_all",
    "write_file",
]

FILE_MODE = 0o600
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def spool_error(exc: OSError, doing: str) -> SpoolError:
    """The spool failure for ``exc`` raised while ``doing`` something."""
    what = exc.strerror or str(exc)
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in _FULL:
        return SpoolFull(f"spool: {doing}{where}: {what}")
    return SpoolError(f"spool: {doing}{where}: {what}")


def create_file(path: str) -> int:
    """A new file (never an existing one, never through a symlink), open for writing."""
    return os.open(path, _CREATE, FILE_MODE)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``write(2)`` until all of ``data`` is written."""
    with memoryview(data) as whole:  # released even on error, so a bytearray can resize
        offset = 0
        while offset < len(whole):
            with whole[offset:] as rest:
                offset += os.write(fd, rest)


def write_file(path: str, data: bytes) -> None:
    """Create ``path`` with ``data`` and fsync it; on failure nothing is left at ``path``."""
    fd = create_file(path)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` durable (a fresh fd every time)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything under it, if it exists (best effort)."""
    shutil.rmtree(path, ignore_errors=True)

"""One daemon per spool: an exclusive lock on ``SPOOL/mta.pid``, held while it runs.

A second ``mta`` started on a spool in use must stop before it touches
anything: its start-up recovery would otherwise purge the first daemon's
transactions in progress, and its exit would remove the first one's sockets.
The lock is a POSIX record lock (``lockf``): the kernel releases it when the
process dies, so a crash never leaves a stale lock, and unlike ``flock`` it
is not shared with forked children (a delivery running as its user must not
keep a killed daemon's spool locked).  The file holds the owner's pid, for
the error message and for administrators.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from mta.errors import SpoolError

__all__ = ["LOCK_FILE", "SpoolInUse", "check_unlocked", "spool_lock"]

LOCK_FILE = "mta.pid"


class SpoolInUse(SpoolError):
    """Another mta daemon runs on this spool."""


def _lock(fd: int, path: str, spool_dir: str) -> None:
    """Take the lock on ``fd`` (the file at ``path``); SpoolInUse naming the
    owner's pid when another process holds it."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise SpoolError(f"cannot lock {path}: {exc.strerror}") from None
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        running = f" (pid {owner})" if owner.isdigit() else ""
        raise SpoolInUse(f"{spool_dir}: another mta is running on this spool{running}") from None


def check_unlocked(spool_dir: str) -> None:
    """SpoolInUse if a daemon holds the spool's lock now (nothing is created:
    the command line asks before it detaches, and locks in the daemon).  Never
    call it in a process that holds the lock: closing the descriptor would
    release it (POSIX record locks belong to the process, not the descriptor)."""
    path = os.path.join(spool_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SpoolError(f"cannot open {path}: {exc.strerror}") from None
    try:
        _lock(fd, path, spool_dir)
    finally:
        os.close(fd)  # releases the lock taken to test it


@contextlib.contextmanager
def spool_lock(spool_dir: str) -> Iterator[None]:
    """Hold the spool's lock for the ``with`` block; SpoolInUse if another
    process holds it, SpoolError if the lock file cannot be opened."""
    path = os.path.join(spool_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise SpoolError(f"cannot open {path}: {exc.strerror}") from None
    try:
        _lock(fd, path, spool_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock

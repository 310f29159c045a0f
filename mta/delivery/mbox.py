"""Local delivery into an mbox file (``action ... mbox``), locked, durable, all or nothing.

OpenSMTPD delivers ``mbox`` with ``mail.local -f SENDER USER`` run as root
(``usr.sbin/smtpd/mda_mbox.c``; ``contrib/libexec/mail.local/mail.local.c``
and ``locking.c``), into ``/var/mail/USER`` (:func:`mailbox_path`); its
unprivileged ``mail.mboxfile`` appends to a given file.  :func:`deliver_mbox`
does what they do, as a blocking function for a worker thread, with the holes
closed: it never waits forever, and it never leaves a partial message behind.

What is appended
    ``From SENDER DATE`` (``MAILER-DAEMON`` for the null sender, as
    ``mda_mbox.c``; DATE as ``ctime(3)``, local time), then ``prepend`` (the
    ``Return-Path:``/``Delivered-To:`` lines of ``mda.c``, see
    :func:`mta.delivery.maildir.delivery_headers`), then the message with LF
    line endings (``mail.local`` writes each line ``"%s\\n"``; the queue
    holds LF lines: one CR before each LF is removed, a last line without a
    newline gets one), then one empty line (``putc('\\n')``).  Every line that
    starts with ``From `` gets a ``>`` (mboxo: ``>From `` lines are left
    alone).  ``mail.local`` only escapes such a line at the start of the
    message or after an empty line, but readers such as Python's ``mailbox``
    split at any ``From `` line, so this escapes them all, as OpenSMTPD's own
    ``mail.mboxfile.c`` does.  If the file does not end with a newline (a
    foreign writer cut short), one is added first so that the ``From`` line
    starts a line.

Locking, in ``mail.local``'s order
    1. ``PATH.lock`` (``mail.local``'s ``username.lock`` in the spool;
       ``dotlock=False`` is its ``-L``), created ``O_CREAT|O_EXCL``, holding
       our pid, refreshed every minute while a long message is written, and
       removed at the end only if it is still ours.  ``mail.local`` retries
       ten times with doubling sleeps and never breaks a lock; older versions
       broke one left unchanged through all the retries.  Here a lock not
       modified for ``stale_lock_age`` (five minutes: liblockfile's rule in
       ``lockfile_create(3)``, whose holders refresh their lock every minute,
       as this does) is stale: it is renamed aside, checked to be the very
       file judged stale (else put back) and removed.
    2. The mailbox itself is locked with an ``fcntl`` write lock (an open file
       description lock, ``F_OFD_SETLK``, which conflicts with the classic
       ``fcntl``/``lockf`` locks of Linux mail readers and, unlike them, also
       with another thread of this process; classic ``lockf`` where there is
       none) and with ``flock`` (what ``mail.local``'s ``O_EXLOCK`` takes on
       the BSDs).
    All three are polled until ``lock_timeout`` seconds in total have passed:
    then :class:`TemporaryFailure`.  Once locked, the name is checked to
    still be the file opened (a reader may have replaced it), else the open
    is redone.

Safety (``mail.local``'s checks)
    The mailbox must be a regular file with one link, is opened
    ``O_NOFOLLOW`` relative to its directory, and is compared (device, inode)
    with what ``lstat`` saw: a symbolic link, a hard link, a directory, a FIFO
    or a device is refused (temporary, as ``mail.local``'s EX_OSERR).  The
    size to append at is read after the locks are taken (an ``fcntl`` lock
    also refreshes NFS's cached attributes).  :func:`mailbox_path` refuses
    user names that could name another file (``/``, ``..``, ``*.lock``).  A new
    mailbox is created ``O_EXCL``, mode 0600, and given to ``owner`` (the
    ``fchown`` of ``mail.local`` and ``mda_mbox_init``).  A world-writable
    directory without the sticky bit is refused (``mail.local`` refuses any
    world-writable spool; a sticky one such as mode 1777 is accepted here,
    since nobody can replace another's files there).  The directory of the
    mailbox is trusted: links in it and above are followed.

Errors: the same table as :mod:`mta.delivery.maildir`
(:func:`~mta.delivery.maildir.failure_from_oserror`): ENAMETOOLONG and EINVAL
permanent, everything else (ENOSPC, EDQUOT, EFBIG, EIO, EROFS, EACCES, EPERM,
ELOOP, ENOENT...) temporary; a relative path or one with ``..``, and an
impossible user name, are permanent; a lock not taken in time is temporary.
``mail.local`` exits EX_CANTCREAT (permanent) whenever it cannot create the
mailbox, whatever the errno; here the errno decides, so a full or read-only
spool is retried.  On any failure after the locks are taken the file is
truncated back to its size before the delivery (``ftruncate``, as
``mail.local`` does on a write error) and fsynced; then the locks are released
and the error raised.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import secrets
import stat
import struct
import time
from collections.abc import Callable, Iterable

from mta.delivery.dirwalk import failure_from_oserror, split_absolute
from mta.delivery.maildir import BlockWriter, LineNormalizer, read_chunks
from mta.errors import PermanentFailure, TemporaryFailure

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "MAIL_SPOOL",
    "STALE_LOCK_AGE",
    "deliver_mbox",
    "from_line",
    "mailbox_path",
    "spool_groups",
]

MAIL_SPOOL = "/var/mail"  # _PATH_MAILDIR
DEFAULT_LOCK_TIMEOUT = 60.0
STALE_LOCK_AGE = 300.0  # liblockfile: a lock file older than five minutes is stale
_TOUCH_INTERVAL = 60.0  # refresh our dotlock's mtime while writing
_FILE_MODE = 0o600
_POLL_FIRST = 0.01
_POLL_MAX = 0.5

_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
_FLOCK_STRUCT = struct.pack("@hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0).ljust(64, b"\0")


def mailbox_path(username: str, directory: str = MAIL_SPOOL) -> str:
    """The system mailbox of ``username``: ``directory/username``, as ``mail.local``.

    A user name that is empty, ``.``/``..``, or holds ``/``, a NUL or a line
    break could name another file: :class:`PermanentFailure`.
    """
    if (
        username in ("", ".", "..")
        or any(c in username for c in "/\0\r\n")
        or username.endswith(".lock")
    ):
        raise PermanentFailure(f"{username!r}: not a valid mailbox name")
    return directory.rstrip("/") + "/" + username


def spool_groups(path: str) -> tuple[int, ...]:
    """The group a delivery run as the user needs to lock the system mailbox ``path``.

    ``mail.local`` runs as root; we deliver as the user, who must still create
    ``path.lock`` in the mail spool.  Where the spool is group-writable (Debian's
    ``/var/mail`` is ``root:mail`` mode 2775, for the dot-locking programs that are
    setgid ``mail``), its group is given to the delivery as a supplementary group.
    Empty when the directory is not group-writable, belongs to group 0, or cannot
    be read."""
    try:
        st = os.stat(os.path.dirname(path) or ".")
    except OSError:
        return ()
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        return (st.st_gid,)
    return ()


def from_line(sender: str, now: float) -> bytes:
    """The ``From `` separator line: ``From SENDER ctime(now)``, LF-terminated."""
    sender = sender or "MAILER-DAEMON"
    sender = "".join("_" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in sender)
    return f"From {sender} {time.ctime(now)}\n".encode("utf-8", "surrogateescape")


def deliver_mbox(
    path: str,
    chunks: Iterable[bytes],
    *,
    sender: str,
    prepend: bytes = b"",
    now: float | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    dotlock: bool = True,
    stale_lock_age: float = STALE_LOCK_AGE,
    owner: tuple[int, int] | None = None,
) -> None:
    """Append one message to the mbox file ``path``, locked and durably, or not at all.

    ``chunks``: the message, CRLF lines, streamed.  ``sender``: the envelope
    sender (``""`` for ``<>``).  ``prepend``: written after the ``From`` line
    (:func:`~mta.delivery.maildir.delivery_headers`).  ``now``: the time of
    the ``From`` line (default: now).  ``lock_timeout``: seconds to wait for
    all the locks.  ``dotlock``: also take ``path.lock``.  ``stale_lock_age``:
    a ``path.lock`` older than this is broken.  ``owner``: (uid, gid) of a
    mailbox created here.

    Raises :class:`TemporaryFailure` or :class:`PermanentFailure`; errors of
    ``chunks`` itself propagate (an ``OSError`` classified), the file cut
    back first.
    """
    parts = split_absolute(path)
    name = parts[-1]
    dir_path = "/" + "/".join(parts[:-1])
    full = dir_path.rstrip("/") + "/" + name
    deadline = time.monotonic() + lock_timeout
    separator = from_line(sender, time.time() if now is None else now)
    try:
        dir_fd = os.open(dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise failure_from_oserror(exc, dir_path) from exc
    try:
        _check_directory(dir_fd, dir_path)
        lock = _DotLock(dir_fd, name + ".lock", full + ".lock") if dotlock else None
        if lock is not None:
            lock.acquire(deadline, lock_timeout, stale_lock_age)
        try:
            fd, created = _open_locked(dir_fd, name, full, owner, deadline, lock_timeout)
            try:
                _append(fd, full, separator, prepend, chunks, lock)
                if created:
                    _fsync_dir(dir_fd, dir_path)
            finally:
                os.close(fd)  # releases the fcntl and flock locks
        finally:
            if lock is not None:
                lock.release()
    finally:
        os.close(dir_fd)


def _check_directory(dir_fd: int, dir_path: str) -> None:
    try:
        mode = os.fstat(dir_fd).st_mode
    except OSError as exc:
        raise failure_from_oserror(exc, dir_path) from exc
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise TemporaryFailure(f"{dir_path}: will not deliver into a world-writable directory")


def _fsync_dir(dir_fd: int, dir_path: str) -> None:
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise failure_from_oserror(exc, dir_path) from exc


def _wait(attempt: Callable[[], bool], deadline: float, timeout: float, what: str) -> None:
    """Call ``attempt`` until it returns True, sleeping between tries, until ``deadline``."""
    delay = _POLL_FIRST
    while not attempt():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TemporaryFailure(f"{what}: could not lock the mailbox within {timeout:g}s")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)


class _DotLock:
    """``mailbox.lock``, created ``O_EXCL`` in the mailbox's directory."""

    def __init__(self, dir_fd: int, name: str, path: str) -> None:
        self._dir_fd = dir_fd
        self._name = name
        self._path = path
        self._fd = -1
        self._ident: tuple[int, int] = (-1, -1)
        self._touched = 0.0

    def acquire(self, deadline: float, timeout: float, stale_age: float) -> None:
        _wait(lambda: self._try(stale_age), deadline, timeout, self._path)

    def _try(self, stale_age: float) -> bool:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _attempt in range(2):
            try:
                fd = os.open(self._name, flags, _FILE_MODE, dir_fd=self._dir_fd)
            except FileExistsError:
                if not self._break_if_stale(stale_age):
                    return False
                continue  # broken (or gone): try again at once
            except OSError as exc:
                raise failure_from_oserror(exc, self._path) from exc
            self._hold(fd)
            return True
        return False

    def _hold(self, fd: int) -> None:
        self._fd = fd
        try:
            st = os.fstat(fd)
        except OSError as exc:
            self.release()
            raise failure_from_oserror(exc, self._path) from exc
        self._ident = (st.st_dev, st.st_ino)
        self._touched = time.monotonic()
        with contextlib.suppress(OSError):  # informative only (mail.local writes nothing)
            os.write(fd, f"{os.getpid()}\n".encode())

    def _break_if_stale(self, stale_age: float) -> bool:
        """Remove the lock file if it is stale; True if the name may be free now."""
        try:
            st = os.stat(self._name, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return False
        if time.time() - st.st_mtime <= stale_age:
            return False
        aside = f"{self._name}.stale.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            os.rename(self._name, aside, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except FileNotFoundError:
            return True
        except OSError:
            return False  # not ours to remove (a sticky directory): wait for the timeout
        try:
            moved = os.stat(aside, dir_fd=self._dir_fd, follow_symlinks=False)
            if (moved.st_dev, moved.st_ino, moved.st_mtime_ns) != (
                st.st_dev,
                st.st_ino,
                st.st_mtime_ns,
            ):
                # Someone took a fresh lock meanwhile: give it back if its place is free.
                with contextlib.suppress(OSError):
                    os.link(
                        aside,
                        self._name,
                        src_dir_fd=self._dir_fd,
                        dst_dir_fd=self._dir_fd,
                        follow_symlinks=False,
                    )
                return False
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside, dir_fd=self._dir_fd)
        return True

    def touch(self) -> None:
        """Refresh the lock's mtime now and then, so that nobody judges it stale."""
        now = time.monotonic()
        if self._fd >= 0 and now - self._touched >= _TOUCH_INTERVAL:
            self._touched = now
            with contextlib.suppress(OSError):
                os.utime(self._fd)

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            st = os.stat(self._name, dir_fd=self._dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == self._ident:
                os.unlink(self._name, dir_fd=self._dir_fd)
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = -1


def _check_mailbox(st: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        raise TemporaryFailure(f"{path}: linked or special file")


def _try_fcntl(fd: int) -> bool:
    global _OFD_SETLK
    try:
        if _OFD_SETLK is not None:
            try:
                fcntl.fcntl(fd, _OFD_SETLK, _FLOCK_STRUCT)
                return True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _OFD_SETLK = None  # a kernel without open file description locks
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open_locked(
    dir_fd: int,
    name: str,
    path: str,
    owner: tuple[int, int] | None,
    deadline: float,
    timeout: float,
) -> tuple[int, bool]:
    """Open (or create) the mailbox and lock it: (descriptor, whether created here)."""
    while True:
        try:
            fd, created = _open_mailbox(dir_fd, name, path, owner)
        except OSError as exc:
            raise failure_from_oserror(exc, path) from exc
        if fd < 0:  # it changed under us: look again
            if time.monotonic() >= deadline:
                raise TemporaryFailure(f"{path}: changed while being opened")
            continue
        try:
            _wait(functools.partial(_try_fcntl, fd), deadline, timeout, path)
            _wait(functools.partial(_try_flock, fd), deadline, timeout, path)
            # Still the mailbox?  A reader may have renamed a new file over it meanwhile.
            fst = os.fstat(fd)
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                same = False
            else:
                same = (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)
        except OSError as exc:
            os.close(fd)
            raise failure_from_oserror(exc, path) from exc
        except BaseException:
            os.close(fd)
            raise
        if same and fst.st_nlink == 1:
            return fd, created
        os.close(fd)
        if time.monotonic() >= deadline:
            raise TemporaryFailure(f"{path}: changed while being locked")


def _open_mailbox(
    dir_fd: int, name: str, path: str, owner: tuple[int, int] | None
) -> tuple[int, bool]:
    """One try at ``mail.local``'s open: (descriptor or -1 to try again, created)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, _FILE_MODE, dir_fd=dir_fd)
        except FileExistsError:
            return -1, False  # appeared since the stat
        try:
            os.fchmod(fd, _FILE_MODE)
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
        except BaseException:
            os.close(fd)
            raise
        return fd, True
    _check_mailbox(st, path)
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            return -1, False  # changed after the stat
        _check_mailbox(fst, path)
    except BaseException:
        os.close(fd)
        raise
    return fd, False


def _append(
    fd: int,
    path: str,
    separator: bytes,
    prepend: bytes,
    chunks: Iterable[bytes],
    lock: _DotLock | None,
) -> None:
    """Write the whole message at the end of the locked mailbox, or cut it back."""
    try:
        start = os.fstat(fd).st_size
    except OSError as exc:
        raise failure_from_oserror(exc, path) from exc
    try:
        writer = BlockWriter(fd)
        if start > 0 and os.pread(fd, 1, start - 1) != b"\n":
            writer.write(b"\n")
        writer.write(separator)
        normalizer = LineNormalizer(escape_from=True)
        writer.write(normalizer.feed(prepend))
        for chunk in read_chunks(chunks):
            writer.write(normalizer.feed(chunk))
            if lock is not None:
                lock.touch()
        writer.write(normalizer.finish())
        writer.write(b"\n")
        writer.flush()
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # mail.mboxfile ignores EINVAL
                raise
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
            os.fsync(fd)
        if isinstance(exc, OSError):
            raise failure_from_oserror(exc, path) from exc
        raise

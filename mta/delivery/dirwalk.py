"""Opening a delivery's directories one at a time, through descriptors, with
or without following symbolic links; and what an ``OSError`` there means.

Shared by the maildir and mbox deliveries (:mod:`mta.delivery.maildir` says
which links are followed and why, and tabulates the errno classification of
:func:`failure_from_oserror`).  Every directory is opened once and used
through its descriptor (``openat``/``mkdirat``), so nothing can be swapped
between a check and its use; one that is missing is created 0700, chowned to
the delivering user when asked, and fsynced into its parent.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from mta.errors import MTAError, PermanentFailure, TemporaryFailure

__all__ = ["failure_from_oserror", "fsync_quietly", "open_directory", "open_root", "split_absolute"]

_DIR_MODE = 0o700
_PERMANENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL})


def failure_from_oserror(exc: OSError, what: str) -> TemporaryFailure | PermanentFailure:
    """The delivery failure that an ``OSError`` about ``what`` (a path) means.

    ENAMETOOLONG and EINVAL are permanent (``mail.maildir`` exits 1 for them);
    everything else, among them ENOSPC, EDQUOT, EIO, EROFS, EACCES and EPERM,
    is temporary (EX_TEMPFAIL / EX_OSERR in ``mail.maildir`` and ``mail.local``).
    """
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    message = f"{what}: {reason}"
    if exc.errno in _PERMANENT_ERRNOS:
        return PermanentFailure(message)
    return TemporaryFailure(message)


def fsync_quietly(fd: int) -> None:
    """fsync, ignoring EINVAL (a filesystem that cannot sync: ``mail.mboxfile``)."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise


def split_absolute(path: str) -> list[str]:
    """The components of an absolute path without ``..``; :class:`PermanentFailure` otherwise."""
    if not path.startswith("/"):
        raise PermanentFailure(f"{path}: not an absolute path")
    if "\0" in path:
        raise PermanentFailure(f"{path!r}: NUL in path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PermanentFailure(f"{path}: '..' in path")
    if not parts:
        raise PermanentFailure(f"{path}: the root directory")
    return parts


def _refused_link(parent_fd: int, name: str, path: str, exc: OSError) -> MTAError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
                return TemporaryFailure(f"{path}: is a symbolic link, not followed")
    return failure_from_oserror(exc, path)


def open_directory(
    parent_fd: int,
    name: str,
    path: str,
    *,
    create: bool,
    nofollow: bool,
    owner: tuple[int, int] | None = None,
    readable: bool = False,
) -> int:
    """Open (creating it 0700 if asked and missing) the directory ``name`` under ``parent_fd``.

    ``path`` names it in error messages.  A directory created is chowned to
    ``owner`` and fsynced into its parent.  The descriptor is an ``O_PATH``
    one unless ``readable`` (for ``fsync``): walking a path then needs only
    search permission, as the kernel's own lookup does (``/home`` mode 0711).
    """
    flags = os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    flags |= os.O_RDONLY if readable else os.O_PATH
    try:
        try:
            return os.open(name, flags, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
        created = True
        try:
            os.mkdir(name, _DIR_MODE, dir_fd=parent_fd)
        except FileExistsError:
            created = False  # appeared meanwhile: opened as any existing one
        fd = os.open(name, flags, dir_fd=parent_fd)
    except OSError as exc:
        raise _refused_link(parent_fd, name, path, exc) from exc
    if created:
        try:
            if owner is not None:
                os.chown(name, owner[0], owner[1], dir_fd=parent_fd, follow_symlinks=False)
            _sync_directory(parent_fd)
        except OSError as exc:
            os.close(fd)
            raise failure_from_oserror(exc, path) from exc
    return fd


def _sync_directory(fd: int) -> None:
    """fsync the directory ``fd`` (an ``O_PATH`` descriptor is opened again for
    it; a directory this user may write in but not read cannot be synced)."""
    try:
        readable = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    except PermissionError:
        return
    try:
        fsync_quietly(readable)
    finally:
        os.close(readable)


def _descend(
    fd: int,
    parts: list[str],
    path: str,
    *,
    create: bool,
    nofollow: bool,
    owner: tuple[int, int] | None,
) -> int:
    """Open ``parts`` one directory at a time from ``fd`` (which is consumed)."""
    try:
        for part in parts:
            path = path.rstrip("/") + "/" + part
            child = open_directory(fd, part, path, create=create, nofollow=nofollow, owner=owner)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_path(
    parts: list[str], *, create: bool, nofollow: bool, owner: tuple[int, int] | None
) -> int:
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return _descend(fd, parts, "", create=create, nofollow=nofollow, owner=owner)


def open_root(root: str, confine: str | None, owner: tuple[int, int] | None) -> int:
    parts = split_absolute(root)
    if confine is None:
        return _open_path(parts, create=True, nofollow=False, owner=owner)
    base = split_absolute(confine)
    if parts[: len(base)] != base:
        raise PermanentFailure(f"{root}: not under {confine}")
    # the configured part is trusted (links followed) and, like the rest of the
    # path, made when missing (mail.maildir's mkdirs)
    fd = _open_path(base, create=True, nofollow=False, owner=owner)
    path = "/" + "/".join(base)
    return _descend(fd, parts[len(base) :], path, create=True, nofollow=True, owner=owner)

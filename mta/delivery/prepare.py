"""What the daemon, run as root, prepares before a delivery runs as the user.

A delivery runs with the user's identity, so it can only create what the user
may create.  Two places are the administrator's, and root makes them first:

- the user's system mailbox (OpenSMTPD's ``mda_mbox_init``): created empty,
  mode 0600, owned by the user (:func:`create_mailbox`);
- for a maildir path written with a fixed directory and format specifiers
  below it (``maildir "/var/vmail/%{user.username}"``, or the default
  configuration's ``spool/maildir/%{user.username:lowercase}``): the fixed
  directory when it is missing (root's, mode 0755), and the first directory
  below it that the path names for this delivery (the user's, mode 0700), so
  the user's delivery can make the rest (:func:`prepare_maildir_base`).

Nothing that exists is changed, and no symbolic link is followed below the
fixed directory: a user cannot make root create or chown anything elsewhere.
"""

from __future__ import annotations

import contextlib
import os

from mta.delivery.dirwalk import fsync_quietly, split_absolute

__all__ = ["create_mailbox", "prepare_maildir_base", "user_base"]

_BASE_MODE = 0o755
_USER_MODE = 0o700


def user_base(template: str, confine: str | None) -> str | None:
    """The fixed directory root prepares for a maildir ``template`` (absolute,
    after a relative one was made absolute), given its ``confine`` directory
    (the part before the first format specifier): None when the path starts
    with a specifier or ``~`` (a home directory is not root's to make) or
    has no specifier at all."""
    if confine is None or confine == "/" or not template.startswith("/"):
        return None
    return confine


def create_mailbox(path: str, uid: int, gid: int) -> None:
    """Make the user's system mailbox before the agent runs as the user (OpenSMTPD
    ``mda_mbox_init``): created empty, mode 0600, owned by the user."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    try:
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def prepare_maildir_base(base: str, path: str, uid: int, gid: int) -> None:
    """Create ``base`` (root's) when missing and, when ``path`` lies below it,
    the first directory below ``base`` on the way to ``path`` (``uid:gid``'s),
    when missing.  OSError as the system reports it."""
    fixed = split_absolute(base)
    parts = split_absolute(path)
    if len(parts) <= len(fixed) or parts[: len(fixed)] != fixed:
        return
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in fixed:  # the administrator's path: links followed
            fd = _enter(fd, name, _BASE_MODE, nofollow=False)
        made = _make(fd, parts[len(fixed)])
        if made:
            child = os.open(
                parts[len(fixed)],
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=fd,
            )
            try:
                os.fchown(child, uid, gid)
            finally:
                os.close(child)
            fsync_quietly(fd)
    finally:
        os.close(fd)


def _make(parent: int, name: str) -> bool:
    try:
        os.mkdir(name, _USER_MODE, dir_fd=parent)
    except FileExistsError:
        return False
    return True


def _enter(parent: int, name: str, mode: int, *, nofollow: bool) -> int:
    """Open the directory ``name`` under ``parent`` (consumed), made when missing."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    try:
        if _make(parent, name):
            with contextlib.suppress(OSError):
                os.chmod(name, mode, dir_fd=parent)  # whatever the umask
            fsync_quietly(parent)
        return os.open(name, flags, dir_fd=parent)
    finally:
        os.close(parent)

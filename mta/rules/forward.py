"""``~/.forward`` files: reading one safely and parsing its destinations.

Reading follows OpenSMTPD's ``parent_forward_open`` and ``secure_file``: the
file is opened without following symbolic links, must be a regular file owned
by the user and not writable by group or others, and every directory from it
up to the home directory must be owned by root or the user and not writable by
group or others.  A home directory with the sticky bit set is refused.  Run
unprivileged, files owned by the daemon's own user are accepted too (that user
is the one every delivery runs as).

A missing file (or home directory) means "no forward" (None).  Anything else
that stops the file being used is a :class:`~mta.errors.TemporaryFailure`, so
the sender retries once the user has fixed it.  These functions block: call
them in a worker thread.
"""

from __future__ import annotations

import errno
import os
import stat

from mta.errors import TableError, TemporaryFailure
from mta.tables.aliases import strip_comment
from mta.tables.aliasnodes import AliasNode, parse_alias_value
from mta.tables.values import UserInfo

__all__ = ["MAX_FORWARD_NODES", "MAX_FORWARD_SIZE", "parse_forward", "read_forward"]

MAX_FORWARD_SIZE = 4 * 1024
"""A ``.forward`` of this size or more is refused (OpenSMTPD ``MAX_FORWARD_SIZE``)."""

MAX_FORWARD_NODES = 100
"""At most this many destinations in one ``.forward``."""


def _owner_ok(owner: int, uid: int, *, root_ok: bool) -> bool:
    if owner == uid or (root_ok and owner == 0):
        return True
    euid = os.geteuid()
    return euid != 0 and owner == euid


def _check_path(path: str, home: str, uid: int, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise TemporaryFailure(f"{path}: not a regular file")
    if not _owner_ok(st.st_uid, uid, root_ok=False):
        raise TemporaryFailure(f"{path}: not owned by the user")
    if st.st_mode & 0o022:
        raise TemporaryFailure(f"{path}: writable by group or others")
    real = os.path.realpath(path)
    real_home = os.path.realpath(home)
    directory = real
    while True:
        directory = os.path.dirname(directory)
        try:
            dst = os.stat(directory)
        except OSError as exc:
            raise TemporaryFailure(f"{directory}: {exc.strerror}") from None
        if not _owner_ok(dst.st_uid, uid, root_ok=True) or dst.st_mode & 0o022:
            raise TemporaryFailure(f"{path}: insecure directory {directory}")
        if directory in (real_home, "/", "."):
            return


def read_forward(info: UserInfo) -> str | None:
    """The text of ``info.directory/.forward``, or None when there is none.

    Raises TemporaryFailure when it exists but cannot be used (unreadable,
    insecure, a symbolic link, too large)."""
    home = info.directory
    path = os.path.join(home, ".forward")
    try:
        hst = os.stat(home)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TemporaryFailure(f"{home}: {exc.strerror}") from None
    if hst.st_mode & stat.S_ISVTX:
        raise TemporaryFailure(f"{home}: home directory is sticky")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        if exc.errno == errno.ELOOP:
            raise TemporaryFailure(f"{path}: is a symbolic link") from None
        raise TemporaryFailure(f"{path}: {exc.strerror}") from None
    try:
        _check_path(path, home, info.uid, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if st.st_size >= MAX_FORWARD_SIZE:
            raise TemporaryFailure(f"{path}: larger than {MAX_FORWARD_SIZE - 1} bytes")
        try:
            data = handle.read(MAX_FORWARD_SIZE)
        except OSError as exc:
            raise TemporaryFailure(f"{path}: {exc.strerror}") from None
    if len(data) >= MAX_FORWARD_SIZE:
        raise TemporaryFailure(f"{path}: larger than {MAX_FORWARD_SIZE - 1} bytes")
    return data.decode("utf-8", "surrogateescape")


def _logical_lines(text: str) -> list[str]:
    """Lines with ``#`` comments removed and backslash-newline continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.split("\n"):
        line = pending + raw.rstrip("\r")
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending = line[:-1]
            continue
        pending = ""
        lines.append(strip_comment(line))
    if pending:
        lines.append(strip_comment(pending))
    return lines


def parse_forward(text: str, path: str = ".forward") -> tuple[AliasNode, ...]:
    """The destinations of a ``.forward`` (include entries are ignored), in order,
    without duplicates.  A malformed entry or too many destinations is a
    TemporaryFailure, as in OpenSMTPD."""
    nodes: dict[AliasNode, None] = {}
    for line in _logical_lines(text):
        try:
            for node in parse_alias_value(line, includes=False):
                nodes.setdefault(node, None)
        except TableError as exc:
            raise TemporaryFailure(f"{path}: {exc}") from None
        if len(nodes) > MAX_FORWARD_NODES:
            raise TemporaryFailure(f"{path}: more than {MAX_FORWARD_NODES} destinations")
    return tuple(nodes)

"""Unix socket paths of any length.

A Unix socket's address holds at most 107 bytes of path (``sun_path`` is 108
bytes with its NUL), so a spool deep in a file system could not hold its
sockets.  :func:`socket_address` gives a name that fits for any path: the path
itself when it is short enough, else ``/proc/self/fd/N/NAME`` where ``N`` is a
descriptor of the socket's directory (Linux resolves it like the directory
itself, for ``bind`` and ``connect`` alike).  The socket is created in the real
directory, so a client using the long path reaches it the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from mta.errors import MTAError

__all__ = ["MAX_SOCKET_PATH", "SocketPathError", "socket_address"]

MAX_SOCKET_PATH = 107  # bytes of sun_path before its terminating NUL


class SocketPathError(MTAError):
    """A Unix socket path cannot be used (too long where /proc is missing)."""


@contextlib.contextmanager
def socket_address(path: str) -> Iterator[str]:
    """A path naming the same socket as ``path`` that fits in ``sun_path``,
    valid for the ``with`` block (a descriptor of the directory is held)."""
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        yield path
        return
    directory, name = os.path.split(path)
    try:
        fd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SocketPathError(f"{directory}: {exc.strerror}") from None
    try:
        short = f"/proc/self/fd/{fd}/{name}"
        if len(os.fsencode(short)) > MAX_SOCKET_PATH or not os.path.isdir(f"/proc/self/fd/{fd}"):
            raise SocketPathError(
                f"{path}: too long for a Unix socket ({len(os.fsencode(path))} bytes, "
                f"at most {MAX_SOCKET_PATH}) and /proc is not mounted to shorten it"
            )
        yield short
    finally:
        os.close(fd)

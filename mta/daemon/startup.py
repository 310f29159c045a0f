"""What ``mta`` checks and binds before it touches anything.

The command line calls these before it detaches (so that a mistake is one
line on the terminal and exit status 1) and before the spool is created: a
spool path that cannot work, a spool another daemon holds, or a port in use
stops the start with nothing changed on disk.
"""

from __future__ import annotations

import os
import stat

from mta.config.model import Config
from mta.errors import SpoolError
from mta.server.listeners import Bound, bind_listener
from mta.spool.lock import check_unlocked

__all__ = ["bind_network", "check_spool"]


def _nearest_existing(path: str) -> str:
    while True:
        parent = os.path.dirname(path) or "."
        if os.path.lexists(parent) or parent == path:
            return parent
        path = parent


def check_spool(path: str) -> None:
    """SpoolError (one line) unless ``path`` can be the spool: an existing
    directory that no other daemon uses, or a path whose nearest existing
    ancestor is a directory this process may create it in."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        _check_creatable(path)
        return
    except OSError as exc:
        raise SpoolError(f"spool {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SpoolError(f"spool {path}: not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise SpoolError(f"spool {path}: Permission denied")
    check_unlocked(path)


def _check_creatable(path: str) -> None:
    ancestor = _nearest_existing(path)
    try:
        info = os.stat(ancestor)
    except OSError as exc:
        raise SpoolError(f"cannot create the spool {path}: {ancestor}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SpoolError(f"cannot create the spool {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SpoolError(f"cannot create the spool {path}: {ancestor}: Permission denied")


def bind_network(config: Config) -> list[Bound]:
    """Bind every ``listen on`` address of ``config``; ListenError naming the
    first that fails (those bound are closed then)."""
    bound: list[Bound] = []
    try:
        for listener in config.listeners:
            bound += bind_listener(listener)
    except BaseException:
        for b in bound:
            b.socket.close()
        raise
    return bound

"""Logging as OpenSMTPD does it: one line per event, ``key=value`` pairs.

Everything logs through the standard :mod:`logging` module under the ``mta``
logger.  ``mta -d`` writes to stderr; the daemon writes to syslog (``mail``
facility) when a syslog daemon answers on ``/dev/log``, and otherwise to the
stderr it was started with, each line time-stamped.  :func:`quote` escapes values copied from
the network so that no client can forge a log line.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

__all__ = [
    "NO_SYSLOG",
    "SYSLOG_SOCKET",
    "get_logger",
    "quote",
    "setup_logging",
    "syslog_available",
    "visible",
]

_ROOT = "mta"
SYSLOG_SOCKET = "/dev/log"
NO_SYSLOG = f"no syslog daemon listens on {SYSLOG_SOCKET}"


def get_logger(name: str) -> logging.Logger:
    """The logger of a part of mta (``smtp``, ``queue``, ...)."""
    return logging.getLogger(f"{_ROOT}.{name}")


def visible(text: str, limit: int = 256) -> str:
    """Text safe for a log line: control characters escaped C-style (as
    OpenSMTPD's ``strnvis(VIS_SAFE|VIS_CSTYLE)``), cut to ``limit``."""
    if len(text) <= limit and "\\" not in text and text.isprintable():
        return text  # nothing to escape (isprintable is False for every control character)
    return _escaped(text, limit)


def _escaped(text: str, limit: int) -> str:
    out = []
    for char in text[:limit]:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append({"\r": "\\r", "\n": "\\n", "\t": "\\t"}.get(char, f"\\{code:03o}"))
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was no UTF-8 (surrogateescape)
            out.append(f"\\{code - 0xDC00:03o}")
        else:
            out.append(char)
    if len(text) > limit:
        out.append("...")
    return "".join(out)


def quote(text: str, limit: int = 256) -> str:
    """A log value in double quotes, escaped with :func:`visible`."""
    return '"' + visible(text, limit).replace('"', '\\"') + '"'


class _Formatter(logging.Formatter):
    def __init__(self, stamp: bool) -> None:
        super().__init__("%(asctime)s %(message)s" if stamp else "%(message)s")


def syslog_available(path: str = SYSLOG_SOCKET) -> bool:
    """True when a syslog daemon answers on ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def setup_logging(*, foreground: bool, verbose: int = 0, syslog: bool | None = None) -> None:
    """Route the ``mta`` loggers: stderr in the foreground; else syslog when
    ``syslog`` (default: when a syslog daemon answers), else stderr with a time
    stamp on each line: no log line is ever dropped for want of syslog."""
    # No record needs its caller, thread or process name: skip gathering them
    # (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.logProcesses = False  # the syslog tag has the pid, written once below
    root = logging.getLogger(_ROOT)
    for old in list(root.handlers):
        root.removeHandler(old)
    if syslog is None:
        syslog = not foreground and syslog_available()
    handler: logging.Handler
    if foreground or not syslog:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(stamp=not foreground))
    else:
        # (logging.handlers brings pickle and more: only a daemon logging to syslog needs it)
        from logging.handlers import SysLogHandler

        handler = SysLogHandler(SYSLOG_SOCKET, facility=SysLogHandler.LOG_MAIL)
        handler.setFormatter(logging.Formatter(f"mta[{os.getpid()}]: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    root.propagate = False

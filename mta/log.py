"""Logging as OpenSMTPD does it: one line per event, ``key=value`` pairs.

Everything logs through the standard :mod:`logging` module under the ``mta``
logger.  ``mta -d`` writes to stderr; the daemon writes to syslog (``mail``
facility) when ``/dev/log`` exists.  :func:`quote` escapes values copied from
the network so that no client can forge a log line.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

__all__ = ["get_logger", "quote", "setup_logging", "visible"]

_ROOT = "mta"


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


def setup_logging(*, foreground: bool, verbose: int = 0) -> None:
    """Route the ``mta`` loggers: stderr in the foreground, else syslog."""
    # No record needs its caller, thread or process name: skip gathering them
    # (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.logProcesses = False  # the syslog tag has the pid, written once below
    root = logging.getLogger(_ROOT)
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if foreground or not os.path.exists("/dev/log"):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(stamp=not foreground))
    else:
        handler = logging.handlers.SysLogHandler(
            "/dev/log", facility=logging.handlers.SysLogHandler.LOG_MAIL
        )
        handler.setFormatter(logging.Formatter(f"mta[{os.getpid()}]: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    root.propagate = False

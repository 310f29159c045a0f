"""The log lines of in-process test servers, kept apart and kept to themselves.

mta logs under the ``mta`` logger (:mod:`mta.log`).  While at least one test
server runs, one handler (:class:`_Tap`) sits on that logger and hands each
record to the server whose trio tasks logged it: every server runs its tasks
under its own :class:`LogSink` in a context variable (trio tasks inherit it),
so the lines of several servers running at once never mix.  Blocking work
carries it too: mta's worker threads (:mod:`mta.threads`) and
``trio.to_thread`` run each job in a copy of its task's context, so a line
logged there (a table update refused, a message moved to ``corrupt/``)
belongs to the server whose task asked for the job.

Nothing global changes: when the host program lets ``mta``'s INFO lines
through already, the logger is left as it is; otherwise the tap lowers the
``mta`` logger to INFO for the servers' lifetime and stops its propagation,
passing on to the host's handlers only the records the host would have seen
(those at its former level or above).  The last server to stop restores the
logger as it was.
"""

from __future__ import annotations

import contextvars
import logging
import threading

__all__ = ["LogSink", "attach", "current", "detach"]

_ROOT = "mta"


class LogSink:
    """The lines one server logged, in order; safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)


current: contextvars.ContextVar[LogSink | None] = contextvars.ContextVar(
    "mta_testing_log_sink", default=None
)


class _Tap(logging.Handler):
    """Hands records to the sink in their context; passes on what the host saw."""

    def __init__(self, forward_from: int | None) -> None:
        super().__init__(logging.INFO)
        self.forward_from = forward_from  # None: the logger propagates as before
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        sink = current.get()
        if sink is not None:
            try:
                sink.add(self.format(record))
            except Exception:  # a bad format string from a caller: as logging does
                self.handleError(record)
        if self.forward_from is not None and record.levelno >= self.forward_from:
            parent = logging.getLogger(_ROOT).parent
            if parent is not None:
                parent.handle(record)


_lock = threading.Lock()
_users = 0
_tap: _Tap | None = None
_saved: tuple[int, bool] = (logging.NOTSET, True)


def attach() -> None:
    """One more server runs: the tap is in place while any does."""
    global _users, _tap, _saved
    with _lock:
        _users += 1
        if _tap is not None:
            return
        logger = logging.getLogger(_ROOT)
        _saved = (logger.level, logger.propagate)
        effective = logger.getEffectiveLevel()
        if effective <= logging.INFO:
            _tap = _Tap(None)  # the host lets INFO through already: change nothing
        else:
            _tap = _Tap(effective if logger.propagate else None)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        logger.addHandler(_tap)


def detach() -> None:
    """A server stopped; the last one restores the ``mta`` logger."""
    global _users, _tap
    with _lock:
        _users -= 1
        if _users or _tap is None:
            return
        logger = logging.getLogger(_ROOT)
        logger.removeHandler(_tap)
        logger.setLevel(_saved[0])
        logger.propagate = _saved[1]
        _tap = None

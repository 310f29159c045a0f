"""Stale files in a maildir's ``tmp/`` removed, as the maildir convention asks.

A delivery writes its file in ``tmp/`` and links it into ``new/``; a process
killed in between (SIGKILL, a power cut) leaves the ``tmp/`` file behind, and
nothing else ever removes it.  The convention (cr.yp.to/proto/maildir.html):
a program delivering into a maildir cleans ``tmp/`` of files not accessed for
36 hours.

:class:`SweepSchedule` (in the daemon's memory, bounded) says when a maildir is
due: at most once per :data:`SWEEP_INTERVAL` each.  A delivery that is due
carries a :class:`TmpSweep`, which :func:`~mta.delivery.maildir.deliver_maildir`
runs on the ``tmp/`` directories it opened, through their descriptors, in its
worker thread and with its identity (the user's, when run as root): only
regular files directly in ``tmp/`` whose access and modification times are
both older than :data:`STALE_AGE` are unlinked; a symbolic link, a directory or
anything else is left alone, and nothing is followed.  What it removed and
what went wrong are collected for the caller to log; a sweep never fails the
delivery it rides on.  A file being written is fresh, and removing a ``tmp/``
name already linked into ``new/`` loses nothing.
"""

from __future__ import annotations

import collections
import os
import stat
import time

import attrs

from mta.log import get_logger, visible

__all__ = [
    "MAX_SCANNED",
    "MAX_TRACKED",
    "STALE_AGE",
    "SWEEP_INTERVAL",
    "StaleFile",
    "SweepSchedule",
    "TmpSweep",
    "describe_age",
    "log_sweep",
]

log = get_logger("mda")

STALE_AGE = 36 * 3600.0
"""A ``tmp/`` file not accessed nor modified for this long (seconds) is removed."""

SWEEP_INTERVAL = 3600.0
"""A maildir's ``tmp/`` is looked at most once per this many seconds."""

MAX_TRACKED = 4096
"""Maildirs whose last sweep is remembered (the oldest are forgotten first)."""

MAX_SCANNED = 10_000
"""Entries of one ``tmp/`` looked at in one sweep (the rest wait for the next)."""


@attrs.frozen
class StaleFile:
    """A file a sweep removed: its path and how long it had not been touched (seconds)."""

    path: str
    age: float


class SweepSchedule:
    """Which maildirs are due for a sweep; :meth:`due` takes the turn when they are."""

    def __init__(self, interval: float = SWEEP_INTERVAL, limit: int = MAX_TRACKED) -> None:
        self.interval = interval
        self.limit = limit
        self._last: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def due(self, key: str, now: float) -> bool:
        """True (and the sweep counted as done at ``now``, a monotonic time) when
        ``key`` was never swept or not for :attr:`interval` seconds."""
        last = self._last.get(key)
        if last is not None and 0 <= now - last < self.interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.limit:
            self._last.popitem(last=False)
        return True

    def start(self, key: str) -> TmpSweep | None:
        """A sweep for the delivery into maildir ``key`` when it is due, else None."""
        if not self.due(key, time.monotonic()):
            return None
        return TmpSweep(time.time())


class TmpSweep:
    """One sweep, run by a delivery on each ``tmp/`` it opened (:meth:`run`)."""

    def __init__(self, now: float, max_age: float = STALE_AGE, max_scanned: int = MAX_SCANNED):
        self.now = now  # wall-clock time (file times are wall-clock)
        self.max_age = max_age
        self.max_scanned = max_scanned
        self.removed: list[StaleFile] = []
        self.errors: list[str] = []

    def run(self, tmp_fd: int, tmp_path: str) -> None:
        """Remove the stale regular files of the directory ``tmp_fd`` (named
        ``tmp_path`` in the results).  Never raises: problems go to :attr:`errors`."""
        try:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=tmp_fd)
        except OSError as exc:
            self.errors.append(f"{tmp_path}: {exc.strerror or exc}")
            return
        try:
            self._sweep(fd, tmp_path)
        except OSError as exc:
            self.errors.append(f"{tmp_path}: {exc.strerror or exc}")
        finally:
            os.close(fd)

    def _sweep(self, fd: int, tmp_path: str) -> None:
        with os.scandir(fd) as entries:
            for count, entry in enumerate(entries):
                if count >= self.max_scanned:
                    break
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue  # links, directories, sockets: not ours to judge
                age = self.now - max(info.st_atime, info.st_mtime)
                if age <= self.max_age:
                    continue
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    continue  # gone meanwhile
                except OSError as exc:
                    self.errors.append(f"{tmp_path}/{entry.name}: {exc.strerror or exc}")
                    continue
                self.removed.append(StaleFile(f"{tmp_path}/{entry.name}", age))


def describe_age(seconds: float) -> str:
    """An age for the log: ``37h05m``, or ``3d04h`` past four days."""
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 96:
        days, hours = divmod(hours, 24)
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m"


def log_sweep(sweep: TmpSweep) -> None:
    """Say what a sweep removed, and what it could not do, one line each."""
    for stale in sweep.removed:
        log.info(
            "maildir: removed stale tmp file %s (age %s)",
            visible(stale.path, 1024),
            describe_age(stale.age),
        )
    for error in sweep.errors:
        log.warning("maildir: cannot clean tmp: %s", visible(error, 1024))

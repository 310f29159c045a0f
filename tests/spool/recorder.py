"""Records the spool's fsync / rename calls (with the path behind each fd), for order tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

FSYNC = os.fsync
RENAME = os.rename


class Recorder:
    """``events`` is a list of ("fsync", path, inode) and ("rename", source, target)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str, object]] = []
        self.lock = threading.Lock()
        self.before_fsync: Callable[[str], None] | None = None
        monkeypatch.setattr(os, "fsync", self.fsync)
        monkeypatch.setattr(os, "rename", self.rename)

    def fsync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        inode = os.fstat(fd).st_ino
        if self.before_fsync is not None:
            self.before_fsync(path)
        with self.lock:
            self.events.append(("fsync", path, inode))
        FSYNC(fd)

    def rename(self, source: str, target: str) -> None:
        RENAME(source, target)
        with self.lock:
            self.events.append(("rename", os.fspath(source), os.fspath(target)))

    def fsynced(self, path: object) -> int:
        """How many times ``path`` was fsynced."""
        return sum(1 for event in self.events if event[0] == "fsync" and event[1] == str(path))

    def index(self, kind: str, path: object) -> int:
        for position, event in enumerate(self.events):
            if event[0] == kind and event[1] == str(path):
                return position
        raise AssertionError(f"no {kind} of {path} in {self.events}")

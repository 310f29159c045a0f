"""The ``db`` backend: a Berkeley DB hash file written by makemap, reread
whenever its modification time changes (like OpenSMTPD ``table_db``)."""

from __future__ import annotations

import os

from mta.errors import TableError
from mta.tables.bdb import read_hash
from mta.tables.memory import Entry, MemoryTable
from mta.tables.services import Service, TableType
from mta.tables.static import STATIC_SERVICES

__all__ = ["SET_VALUE", "DbTable"]

SET_VALUE = "<set>"
"""The value makemap stores for every key of a ``-t set`` map."""


class DbTable(MemoryTable):
    """A table backed by a makemap database."""

    backend = "db"

    def __init__(self, name: str, path: str, *, delimiter: str = "+") -> None:
        super().__init__(name, STATIC_SERVICES, TableType.DYNAMIC, delimiter)
        self.config = path
        self._mtime: int | None = None
        self.reload()

    def _stat(self, path: str) -> int:
        try:
            return os.stat(path).st_mtime_ns
        except OSError as exc:
            raise TableError(f"{path}: {exc.strerror or exc}") from None

    def reload(self) -> None:
        """Reread the database; on error the old contents stay, the refusal is
        logged and TableError raised."""
        try:
            self._load()
        except TableError as exc:
            self._refused(exc)
            raise

    def _load(self) -> None:
        path = self.config
        assert path is not None
        mtime = self._stat(path)
        entries = []
        for key, value in read_hash(path):
            entries.append(Entry(key.lower(), key, None if value == SET_VALUE else value, path))
        # this version is read: if its contents are refused, it is not read again
        self._mtime = mtime
        self._install(entries)

    def _refresh(self) -> None:
        """Reread the database when it changed.  A new version whose contents
        are refused is logged once and the old contents stay; a file that
        cannot be read fails the lookup, as before."""
        path = self.config
        assert path is not None
        before = self._mtime
        if self._stat(path) == before:
            return
        try:
            self._load()
        except TableError as exc:
            if self._mtime == before:
                raise
            self._refused(exc)

    def _lookup(self, service: Service, key: str) -> str | None:
        self._refresh()
        return super()._lookup(service, key)

    def _fetch(self, service: Service) -> str | None:
        self._refresh()
        return super()._fetch(service)

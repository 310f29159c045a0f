"""Every table a configuration uses, opened once at daemon start.

A :class:`TableSet` holds the declared tables (``table NAME ...``), the built-in
ones (``<localhost>``, ``<anyhost>``, ``<localnames>``, ``<anydestination>``,
``<getpwnam>``) and, opened on first use and cached, the inline tables written
in place (``{ a, b }``, ``"value"``).  Rules, actions and listeners all look
tables up through it.

In-memory tables (static, file, db) answer synchronously.  Anything else may
block (a helper process, the system password database): :meth:`TableSet.call`
runs such lookups in a worker thread, and helper-process tables are wrapped so
that one request at a time goes down their pipe, whichever thread asks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from mta import threads
from mta.config.model import Config, InlineTable, NamedTable, TableRef
from mta.errors import TableError
from mta.tables import Service, Table, builtin_tables, open_table
from mta.tables.memory import MemoryTable
from mta.tables.proctable import ProcTable

__all__ = ["TableSet", "is_blocking"]

T = TypeVar("T")


def is_blocking(table: Table) -> bool:
    """True when a lookup in ``table`` may block (anything not held in memory)."""
    return not isinstance(table, MemoryTable)


class _Serialized(Table):
    """A table whose backend serves one request at a time (a helper process):
    every call takes a lock, so threads never interleave on its pipe."""

    def __init__(self, inner: Table) -> None:
        super().__init__(inner.name, inner.services, inner.type)
        self.inner = inner
        self.backend = inner.backend
        self.config = inner.config
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return repr(self.inner)

    def _sync(self) -> None:
        # a helper announces its services in its handshake, on first use
        self.services = self.inner.services
        self.type = self.inner.type

    def lookup(self, service: Service, key: str) -> str | None:
        with self._lock:
            try:
                return self.inner.lookup(service, key)
            finally:
                self._sync()

    def match(self, service: Service, key: str) -> bool:
        with self._lock:
            try:
                return self.inner.match(service, key)
            finally:
                self._sync()

    def fetch(self, service: Service) -> str | None:
        with self._lock:
            try:
                return self.inner.fetch(service)
            finally:
                self._sync()

    def reload(self) -> None:
        with self._lock:
            self.inner.reload()

    def validate(self, service: Service) -> None:
        with self._lock:
            self.inner.validate(service)

    def close(self) -> None:
        with self._lock:
            self.inner.close()

    def _lookup(self, service: Service, key: str) -> str | None:  # pragma: no cover
        return self.inner.lookup(service, key)


def _guard(table: Table) -> Table:
    return _Serialized(table) if isinstance(table, ProcTable) else table


class TableSet:
    """The tables of one configuration, by name, plus cached inline tables."""

    def __init__(self, tables: dict[str, Table], delimiter: str = "+") -> None:
        self._named = {name: _guard(table) for name, table in tables.items()}
        self._inline: dict[InlineTable, Table] = {}
        self.delimiter = delimiter

    @classmethod
    def open(cls, config: Config, hostname: str, local_addresses: list[str]) -> TableSet:
        """Open every declared table and the built-in ones; TableError (naming
        the table) if one cannot be opened, with those already opened closed."""
        delimiter = config.smtp.sub_addr_delim
        tables: dict[str, Table] = dict(builtin_tables(hostname, local_addresses))
        try:
            for name, decl in config.tables.items():
                try:
                    tables[name] = open_table(
                        name,
                        decl.backend,
                        decl.config,
                        decl.entries,
                        delimiter=delimiter,
                        regex=decl.regex,
                    )
                except TableError as exc:
                    raise TableError(f"table {name}: {exc}") from None
        except BaseException:
            for table in tables.values():
                table.close()
            raise
        return cls(tables, delimiter)

    def names(self) -> list[str]:
        """The names of the declared and built-in tables."""
        return list(self._named)

    def get(self, ref: TableRef) -> Table:
        """The table behind a reference; an inline table is opened on first use."""
        if isinstance(ref, NamedTable):
            table = self._named.get(ref.name)
            if table is None:
                raise TableError(f"no such table: {ref.name}")
            return table
        table = self._inline.get(ref)
        if table is None:
            table = open_table("<dynamic>", "static", None, ref.entries, delimiter=self.delimiter)
            self._inline[ref] = table
        return table

    def builtin(self, name: str) -> Table:
        """A built-in table by its name (``<localhost>``...)."""
        return self.get(NamedTable(name))

    async def call(self, table: Table, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a lookup in ``table``): directly for in-memory tables,
        in a worker thread otherwise."""
        if not is_blocking(table):
            return fn()
        return await threads.run_sync(fn)

    async def reload(self, name: str) -> None:
        """Re-read a declared table (``mtactl update table``), in a worker
        thread; TableError if it cannot be re-read (the old contents stay)."""
        table = self.get(NamedTable(name))
        await threads.run_sync(table.reload)

    def close(self) -> None:
        """Close every table (stops helper processes)."""
        for table in [*self._named.values(), *self._inline.values()]:
            table.close()
        self._inline.clear()

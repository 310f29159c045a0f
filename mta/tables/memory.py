"""An in-memory, enumerable table: the lookup engine shared by the ``static``
(inline and file) and ``db`` backends.

Entries are kept sorted by key (OpenSMTPD's dict order); pattern services take
the first entry that matches, other services compare keys exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from mta.errors import TableError
from mta.tables.base import Table
from mta.tables.matching import KeyMatcher
from mta.tables.services import Service, TableType
from mta.tables.values import parse_value

__all__ = ["Entry", "MemoryTable"]


@attrs.frozen
class Entry:
    """One table entry: lowercased key, key as written, value (None in a list) and
    where it came from (``file:line`` or the table name), for error messages."""

    key: str
    original: str
    value: str | None
    where: str


class MemoryTable(Table):
    """A table whose entries are all in memory."""

    def __init__(
        self, name: str, services: Service, table_type: TableType, delimiter: str = "+"
    ) -> None:
        super().__init__(name, services, table_type)
        self.delimiter = delimiter
        self._matcher = KeyMatcher(delimiter)
        self._entries: dict[str, Entry] = {}
        self._order: tuple[Entry, ...] = ()
        self._cursor = 0

    def _install(self, entries: Iterable[Entry]) -> None:
        table: dict[str, Entry] = {}
        for entry in entries:
            table[entry.key] = entry
        self._entries = table
        self._order = tuple(sorted(table.values(), key=lambda e: e.key))
        self._matcher.clear()
        self._cursor = 0

    def items(self) -> tuple[tuple[str, str | None], ...]:
        """Every ``(key, value)`` in lookup order (value None in a list)."""
        return tuple((e.key, e.value) for e in self._order)

    def __len__(self) -> int:
        return len(self._order)

    def _find(self, service: Service, key: str) -> Entry | None:
        predicate = self._matcher.for_service(service)
        if predicate is None:
            return self._entries.get(key)
        for entry in self._order:
            if predicate(key, entry.original):
                return entry
        return None

    def _lookup(self, service: Service, key: str) -> str | None:
        entry = self._find(service, key)
        if entry is None:
            return None
        return entry.value if entry.value is not None else entry.key

    def _fetch(self, service: Service) -> str | None:
        if not self._order:
            return None
        entry = self._order[self._cursor % len(self._order)]
        self._cursor = (self._cursor + 1) % len(self._order)
        return entry.key

    def validate(self, service: Service) -> None:
        """Compile every pattern (``regex``) or parse every value for ``service``."""
        super().validate(service)
        for entry in self._order:
            try:
                if service == Service.REGEX:
                    self._matcher.regex(entry.original)
                elif service == Service.SOURCE:
                    parse_value(service, entry.key, entry.key)
                elif entry.value is not None:
                    parse_value(service, entry.key, entry.value)
            except TableError as exc:
                raise TableError(f"{entry.where}: {exc}") from None

"""An in-memory, enumerable table: the lookup engine shared by the ``static``
(inline and file) and ``db`` backends.

Entries are kept sorted by key (OpenSMTPD's dict order); pattern services take
the first entry that matches, other services compare keys exactly.

Once a table has been checked for ``regex`` use (:meth:`MemoryTable.validate`,
which the configuration does for every table a ``regex`` criterion names), new
contents replace the old only if every pattern compiles: a reload with a bad
pattern keeps the previous contents, and the refusal is logged.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from mta.errors import TableError
from mta.log import get_logger
from mta.tables.base import Table
from mta.tables.mailaddr import MailAddrIndex
from mta.tables.matching import KeyMatcher
from mta.tables.services import Service, TableType
from mta.tables.values import parse_value

__all__ = ["Entry", "MemoryTable"]

log = get_logger("table")


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
        # the index of the first mailaddr lookup, with the contents it was built for
        self._mailaddrs: tuple[tuple[Entry, ...], MailAddrIndex] | None = None
        self._loaded = False
        self._regex = False  # checked for regex use: every reload compiles its patterns

    def _install(self, entries: Iterable[Entry]) -> None:
        """Replace the contents; TableError (the old contents stay) when the
        table serves ``regex`` lookups and a new pattern does not compile."""
        table: dict[str, Entry] = {}
        for entry in entries:
            table[entry.key] = entry
        order = tuple(sorted(table.values(), key=lambda e: e.key))
        matcher = KeyMatcher(self.delimiter)
        if self._regex:
            _compile_all(matcher, order)
        self._entries = table
        self._order = order
        self._matcher = matcher
        self._cursor = 0
        self._mailaddrs = None
        self._loaded = True

    def _refused(self, exc: TableError) -> None:
        """Log that new contents were refused (after the first load only: a
        table that cannot load at all is the configuration's error)."""
        if self._loaded:
            log.warning("table %s: update refused, previous contents kept: %s", self.name, exc)

    def items(self) -> tuple[tuple[str, str | None], ...]:
        """Every ``(key, value)`` in lookup order (value None in a list)."""
        return tuple((e.key, e.value) for e in self._order)

    def __len__(self) -> int:
        return len(self._order)

    def _find(self, service: Service, key: str) -> Entry | None:
        if service == Service.MAILADDR:
            return self._find_mailaddr(key)
        predicate = self._matcher.for_service(service)
        if predicate is None:
            return self._entries.get(key)
        for entry in self._order:
            if predicate(key, entry.original):
                return entry
        return None

    def _find_mailaddr(self, key: str) -> Entry | None:
        order = self._order
        cached = self._mailaddrs
        if cached is not None and cached[0] is order:
            index = cached[1]
        else:  # new contents (a reload may race a lookup: each keeps its own pair)
            index = MailAddrIndex([e.original for e in order])
            self._mailaddrs = (order, index)
        position = index.first(key, self.delimiter)
        return None if position is None else order[position]

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
        if service == Service.REGEX:
            _compile_all(self._matcher, self._order)
            self._regex = True
            return
        for entry in self._order:
            try:
                if service == Service.SOURCE:
                    parse_value(service, entry.key, entry.key)
                elif entry.value is not None:
                    parse_value(service, entry.key, entry.value)
            except TableError as exc:
                raise TableError(f"{entry.where}: {exc}") from None


def _compile_all(matcher: KeyMatcher, entries: Iterable[Entry]) -> None:
    """Compile every entry's pattern into ``matcher``; TableError names the entry."""
    for entry in entries:
        try:
            matcher.regex(entry.original)
        except TableError as exc:
            raise TableError(f"{entry.where}: {exc}") from None

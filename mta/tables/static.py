"""The ``static`` backend: inline tables (``table name { ... }``) and table(5)
files (``file:/path`` or a bare absolute path), reloadable."""

from __future__ import annotations

from collections.abc import Iterable

from mta.errors import TableError
from mta.tables.memory import Entry, MemoryTable
from mta.tables.services import ALL_SERVICES, Service, TableType
from mta.tables.tablefile import read_table_file

__all__ = ["STATIC_SERVICES", "StaticTable"]

STATIC_SERVICES = ALL_SERVICES & ~Service.AUTH
"""What the static and db backends provide (everything but ``auth``)."""

MAX_INLINE_KEY = 1023


class StaticTable(MemoryTable):
    """A list or mapping from inline entries or from a table(5) file."""

    backend = "static"

    def __init__(
        self,
        name: str,
        *,
        path: str | None = None,
        entries: Iterable[tuple[str, str | None]] = (),
        delimiter: str = "+",
    ) -> None:
        super().__init__(name, STATIC_SERVICES, TableType.HASH, delimiter)
        self.config = path
        self._inline = tuple(entries)
        if path is not None and self._inline:
            raise TableError(f"table {name}: both a file and inline entries")
        self.reload()

    def _inline_entries(self) -> tuple[TableType, list[Entry]]:
        table_type: TableType | None = None
        entries: list[Entry] = []
        for key, value in self._inline:
            kind = TableType.LIST if value is None else TableType.HASH
            if table_type is None:
                table_type = kind
            elif kind != table_type:
                raise TableError(f"table {self.name}: cannot mix list and key=value entries")
            if not key or len(key) > MAX_INLINE_KEY:
                raise TableError(f"table {self.name}: invalid key {key!r}")
            entries.append(Entry(key.lower(), key, value, f"table {self.name}"))
        return table_type or TableType.HASH, entries

    def _file_entries(self, path: str) -> tuple[TableType, list[Entry]]:
        table_type, lines = read_table_file(path)
        entries = []
        for line in lines:
            if len(line.key) > MAX_INLINE_KEY:
                raise TableError(f"{path}:{line.lineno}: key too long")
            where = f"{path}:{line.lineno}"
            entries.append(Entry(line.key.lower(), line.key, line.value, where))
        return table_type, entries

    def reload(self) -> None:
        """Re-read the file (inline tables never change); on error the old
        contents stay, the refusal is logged and TableError raised."""
        try:
            if self.config is None:
                table_type, entries = self._inline_entries()
            else:
                table_type, entries = self._file_entries(self.config)
            self._install(entries)
        except TableError as exc:
            self._refused(exc)
            raise
        self.type = table_type

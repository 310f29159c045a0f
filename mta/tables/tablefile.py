"""The table(5) file format, parsed like OpenSMTPD ``parse_table_line`` and
``table_static_priv_load``.

Blank lines and lines starting with ``#`` are ignored; ``# @list`` before the
first entry forces a list; otherwise the first entry decides: a key alone makes
a list, a key and a value a mapping.  A key ends at the first space, tab or
``:`` (a key starting with ``[`` ends at ``]``); one separator and any following
spaces and tabs are skipped.  In a mapping a key without value rejects the file
with ``file:line: invalid map entry``.  An empty file is a mapping.
"""

from __future__ import annotations

import os

import attrs

from mta.errors import TableError
from mta.tables.services import TableType

__all__ = ["TableLine", "parse_table_line", "parse_table_text", "read_table_file", "read_text"]

_SPACE = " \t\n\v\f\r"
MAX_FILE_SIZE = 256 << 20


@attrs.frozen
class TableLine:
    """One entry of a table file: its line number, key and value (None in a list)."""

    lineno: int
    key: str
    value: str | None


def parse_table_line(
    line: str, table_type: TableType | None
) -> tuple[TableType | None, str | None, str | None]:
    """Parse one line given the type decided so far.

    Returns ``(type, key, value)``; ``key`` is None for blank and comment lines.
    Raises TableError (without location) on a malformed line.
    """
    text = line.strip(_SPACE)
    if not text:
        return table_type, None, None
    if text.startswith("#"):
        if table_type is None and text[1:].strip(_SPACE) == "@list":
            table_type = TableType.LIST
        return table_type, None, None
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise TableError("invalid map entry")
        split = end + 1
    else:
        split = len(text)
        for index, char in enumerate(text):
            if char in " \t:":
                split = index
                break
    if table_type is None:
        table_type = TableType.LIST if split == len(text) else TableType.HASH
    if table_type == TableType.LIST:
        return table_type, text, None
    key, rest = text[:split], text[split:]
    if rest and rest[0] in " \t:":
        rest = rest[1:]
    value = rest.lstrip(" \t")
    if not value:
        raise TableError("invalid map entry")
    return table_type, key, value


def parse_table_text(
    text: str, filename: str, table_type: TableType | None = None
) -> tuple[TableType, list[TableLine]]:
    """Parse a whole table file; errors read ``filename:line: invalid map entry``."""
    entries: list[TableLine] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        try:
            table_type, key, value = parse_table_line(line, table_type)
        except TableError as exc:
            raise TableError(f"{filename}:{lineno}: {exc}") from None
        if key is not None:
            entries.append(TableLine(lineno, key, value))
    return (table_type or TableType.HASH), entries


def read_text(path: str) -> str:
    """Read a configuration-side text file; any failure is a TableError naming it."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_SIZE:
                raise TableError(f"{path}: file too large")
            data = handle.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise TableError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_SIZE:
        raise TableError(f"{path}: file too large")
    return data.decode("utf-8", "surrogateescape")


def read_table_file(
    path: str, table_type: TableType | None = None
) -> tuple[TableType, list[TableLine]]:
    """Read and parse a table(5) file."""
    return parse_table_text(read_text(path), path, table_type)

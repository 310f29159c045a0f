"""Build a Berkeley DB hash map from a table(5) source, like OpenSMTPD
makemap(8): keys lowercased, keys and values NUL-terminated, written to a
temporary file, synced and renamed over the destination.

Types: ``plain`` (the default, a mapping), ``aliases`` (aliases(5) syntax with
continuation lines, every destination validated) and ``set`` (a list; each key
maps to ``<set>``).  A duplicate key or a malformed line is an error naming the
file and line.  Unlike OpenSMTPD 6.8's makemap, ``[ipv6]`` keys are kept whole.
"""

from __future__ import annotations

import contextlib
import enum
import os
import tempfile

from mta.errors import TableError
from mta.tables.aliases import parse_aliases_text
from mta.tables.bdb import write_hash
from mta.tables.db import SET_VALUE
from mta.tables.services import TableType
from mta.tables.tablefile import TableLine, parse_table_text, read_text

__all__ = ["MapType", "makemap", "map_records"]


class MapType(enum.Enum):
    """``makemap -t`` output type."""

    PLAIN = "plain"
    ALIASES = "aliases"
    SET = "set"


def map_records(text: str, source: str, map_type: MapType) -> list[tuple[str, str]]:
    """The ``(key, value)`` records makemap stores for ``text``."""
    lines: list[TableLine]
    if map_type is MapType.ALIASES:
        lines = parse_aliases_text(text, source)
    elif map_type is MapType.SET:
        _, lines = parse_table_text(text, source, TableType.LIST)
    else:
        _, lines = parse_table_text(text, source, TableType.HASH)
    records: dict[str, str] = {}
    for line in lines:
        key = line.key.lower()
        if key in records:
            raise TableError(f"{source}:{line.lineno}: duplicate entry for {line.key}")
        records[key] = SET_VALUE if map_type is MapType.SET else (line.value or "")
    return list(records.items())


def makemap(source: str, dest: str | None = None, type: MapType | str = MapType.PLAIN) -> int:
    """Write ``dest`` (default ``source.db``) from ``source``; return the number of
    entries.  Any failure raises TableError and leaves ``dest`` untouched."""
    map_type = MapType(type) if isinstance(type, str) else type
    target = dest if dest is not None else f"{source}.db"
    records = map_records(read_text(source), source, map_type)
    try:
        mode = os.stat(source).st_mode & 0o7777
    except OSError:
        mode = 0o644
    directory = os.path.dirname(os.path.abspath(target))
    try:
        fd, temp = tempfile.mkstemp(prefix=os.path.basename(target) + ".", dir=directory)
    except OSError as exc:
        raise TableError(f"{target}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        write_hash(temp, records, mode)
        os.chmod(temp, mode)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except OSError as exc:
        _unlink(temp)
        raise TableError(f"{target}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink(temp)
        raise
    return len(records)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

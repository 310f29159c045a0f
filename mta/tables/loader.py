"""Opening a table from its configuration: ``table NAME [backend:]config`` or
``table NAME { ... }``.  The backend is chosen as OpenSMTPD ``table_create``
does; the table is loaded and checked immediately (with ``regex=True``, its
patterns too, now and at every reload)."""

from __future__ import annotations

import os

from mta.errors import TableError
from mta.tables.base import Table
from mta.tables.db import DbTable
from mta.tables.getpwnam import GetpwnamTable
from mta.tables.memory import MemoryTable
from mta.tables.proctable import HELPER_DIRS, ProcTable, find_helper
from mta.tables.services import Service
from mta.tables.static import StaticTable

__all__ = ["open_table", "split_table_spec"]


def split_table_spec(spec: str) -> tuple[str, str | None]:
    """Split ``backend:config`` (a bare absolute path is ``file``)."""
    if spec.startswith("/"):
        return "file", spec
    backend, colon, config = spec.partition(":")
    return backend, (config if colon else None)


def _require_path(backend: str, config: str | None) -> str:
    if not config:
        raise TableError(f"{backend} table needs a file path")
    if not os.path.isabs(config):
        raise TableError(f"{backend} table path must be absolute: {config}")
    return config


def open_table(
    name: str,
    backend: str,
    config: str | None = None,
    entries: tuple[tuple[str, str | None], ...] = (),
    *,
    delimiter: str = "+",
    helper_dirs: tuple[str, ...] = HELPER_DIRS,
    regex: bool = False,
) -> Table:
    """Create and load a table.

    ``backend`` is ``static`` (inline ``entries``, or a file in ``config``),
    ``file``, ``db``, ``getpwnam``, ``proc`` (``config`` = ``helper[:arg]``) or the
    name of a ``table-<backend>`` helper.  ``delimiter`` is the sub-address
    delimiter used by ``mailaddr`` matching.  ``regex`` says the table serves
    ``regex`` lookups: every pattern must compile, now and at every reload.
    Raises TableError, naming the file and line when a file is malformed.
    """
    table = _open(name, backend, config, entries, delimiter, helper_dirs)
    if regex and isinstance(table, MemoryTable):
        try:
            table.validate(Service.REGEX)
        except TableError:
            table.close()
            raise
    return table


def _open(
    name: str,
    backend: str,
    config: str | None,
    entries: tuple[tuple[str, str | None], ...],
    delimiter: str,
    helper_dirs: tuple[str, ...],
) -> Table:
    if backend in ("static", "file"):
        if backend == "file" or config is not None:
            path = _require_path("file", config)
            if entries:
                raise TableError(f"table {name}: both a file and inline entries")
            return StaticTable(name, path=path, delimiter=delimiter)
        return StaticTable(name, entries=entries, delimiter=delimiter)
    if entries:
        raise TableError(f"table {name}: backend {backend} takes no inline entries")
    if backend == "db":
        return DbTable(name, _require_path("db", config), delimiter=delimiter)
    if backend == "getpwnam":
        return GetpwnamTable(name, config)
    if backend == "proc":
        helper, _, argument = (config or "").partition(":")
        return _proc_table(name, helper, argument or None, helper_dirs)
    return _proc_table(name, backend, config, helper_dirs)


def _proc_table(
    name: str, backend: str, argument: str | None, helper_dirs: tuple[str, ...]
) -> ProcTable:
    path = find_helper(backend, helper_dirs) if backend else None
    if path is None:
        raise TableError(f"table {name}: backend {backend} does not exist")
    table = ProcTable(name, path, argument)
    table.backend = backend
    return table

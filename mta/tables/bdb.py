"""Access to Berkeley DB hash files through the optional ``berkeleydb`` package
(the ``db`` extra).  Keys and values are NUL-terminated strings, as OpenSMTPD's
makemap writes them."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

from mta.errors import TableError

__all__ = ["INSTALL_HINT", "decode_record", "encode_record", "read_hash", "write_hash"]

INSTALL_HINT = "install the db extra: pip install -e '.[db]'"


def _module() -> ModuleType:
    try:
        return importlib.import_module("berkeleydb.db")
    except ImportError:
        raise TableError(f"db: tables need the berkeleydb package; {INSTALL_HINT}") from None


def encode_record(text: str) -> bytes:
    """A string as stored by makemap: UTF-8 with a trailing NUL."""
    return text.encode("utf-8", "surrogateescape") + b"\0"


def decode_record(data: bytes) -> str:
    """Undo :func:`encode_record` (one trailing NUL is optional, as in makemap -U)."""
    if data.endswith(b"\0"):
        data = data[:-1]
    return data.decode("utf-8", "surrogateescape")


def read_hash(path: str) -> list[tuple[str, str]]:
    """Every ``(key, value)`` of a Berkeley DB hash file; TableError on failure."""
    bdb = _module()
    handle = bdb.DB()
    try:
        handle.open(path, dbtype=bdb.DB_HASH, flags=bdb.DB_RDONLY)
        try:
            return [(decode_record(k), decode_record(v)) for k, v in handle.items()]
        finally:
            handle.close()
    except bdb.DBError as exc:
        raise TableError(f"{path}: cannot read Berkeley DB: {_describe(exc)}") from None


def write_hash(path: str, records: Iterable[tuple[str, str]], mode: int = 0o644) -> None:
    """Create (truncating) a Berkeley DB hash file holding ``records``."""
    bdb = _module()
    handle = bdb.DB()
    try:
        handle.open(path, dbtype=bdb.DB_HASH, flags=bdb.DB_CREATE | bdb.DB_TRUNCATE, mode=mode)
        try:
            for key, value in records:
                handle.put(encode_record(key), encode_record(value))
        finally:
            handle.close()
    except bdb.DBError as exc:
        raise TableError(f"{path}: cannot write Berkeley DB: {_describe(exc)}") from None


def _describe(exc: Exception) -> str:
    if len(exc.args) >= 2:
        return str(exc.args[1])
    return str(exc)

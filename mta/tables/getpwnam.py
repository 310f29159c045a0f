"""The ``getpwnam`` backend: system users as ``userinfo`` (``uid:gid:/home``)."""

from __future__ import annotations

import pwd

from mta.errors import TableError
from mta.tables.base import Table
from mta.tables.services import Service, TableType

__all__ = ["GetpwnamTable"]


class GetpwnamTable(Table):
    """Looks users up in the system password database."""

    backend = "getpwnam"

    def __init__(self, name: str = "<getpwnam>", config: str | None = None) -> None:
        if config:
            raise TableError("getpwnam backend takes no configuration")
        super().__init__(name, Service.USERINFO, TableType.DYNAMIC)

    def _lookup(self, service: Service, key: str) -> str | None:
        if "\0" in key or not key:
            return None
        try:
            entry = pwd.getpwnam(key)
        except KeyError:
            return None
        except OSError as exc:
            raise TableError(f"getpwnam({key!r}) failed: {exc}") from None
        return f"{entry.pw_uid}:{entry.pw_gid}:{entry.pw_dir}"

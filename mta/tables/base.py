"""The interface every table backend implements, and key normalisation.

Lookups return raw strings, as OpenSMTPD backends do; :mod:`mta.tables.values`
turns them into typed values for each service.
"""

from __future__ import annotations

import abc

from mta.errors import TableError
from mta.tables.services import Service, TableType

__all__ = ["MAX_KEY_LENGTH", "Table", "normalize_key"]

MAX_KEY_LENGTH = 1023
"""Longest lookup key (OpenSMTPD copies keys into a 1024-byte buffer)."""


def normalize_key(key: str) -> str:
    """Lowercase a lookup key; a key too long to look up is a TableError."""
    if len(key) > MAX_KEY_LENGTH:
        raise TableError(f"lookup key too long ({len(key)} characters)")
    return key.lower()


class Table(abc.ABC):
    """A named table: a list, a mapping, or a dynamic backend.

    Subclasses implement :meth:`_lookup` (and optionally :meth:`_match`,
    :meth:`_fetch`, :meth:`reload`, :meth:`validate`, :meth:`close`).
    """

    #: backend name, as written before ``:`` in the configuration
    backend: str = ""

    def __init__(self, name: str, services: Service, table_type: TableType) -> None:
        self.name = name
        self.services = services
        self.type = table_type
        self.config: str | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.backend}:{self.config or ''}>"

    def _check(self, service: Service) -> None:
        if not service & self.services:
            raise TableError(
                f"table {self.name}: backend {self.backend} does not provide {service.name}"
            )

    def lookup(self, service: Service, key: str) -> str | None:
        """The raw value for ``key`` (the matched key in a list), or None."""
        self._check(service)
        return self._lookup(service, normalize_key(key))

    def match(self, service: Service, key: str) -> bool:
        """True when ``key`` is in the table for ``service``."""
        self._check(service)
        return self._match(service, normalize_key(key))

    def fetch(self, service: Service) -> str | None:
        """The next entry, round-robin (for ``source`` and ``relayhost``); None if empty."""
        self._check(service)
        return self._fetch(service)

    def reload(self) -> None:  # noqa: B027 - optional hook, nothing to reload by default
        """Reload from the backing store; on failure keep the old data and raise."""

    def validate(self, service: Service) -> None:
        """Check every entry is usable for ``service`` (used when the configuration
        is built); raises TableError naming the bad entry.  Dynamic backends
        cannot be enumerated and accept anything here."""
        self._check(service)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (files, helper processes)."""

    @abc.abstractmethod
    def _lookup(self, service: Service, key: str) -> str | None:
        """Backend lookup; ``key`` is already lowercased."""

    def _match(self, service: Service, key: str) -> bool:
        return self._lookup(service, key) is not None

    def _fetch(self, service: Service) -> str | None:
        raise TableError(f"table {self.name}: backend {self.backend} cannot fetch")

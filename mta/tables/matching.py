"""How keys are compared for each service in enumerable tables (static and db):
exact comparison, except ``domain`` (glob), ``netaddr`` (CIDR), ``mailaddr``
(address rules with sub-address stripping) and ``regex`` (RE2 patterns)."""

from __future__ import annotations

from collections.abc import Callable

from mta.tables.mailaddr import hostname_match, mailaddr_text_match
from mta.tables.netaddr import netaddr_match
from mta.tables.regex import Regex, compile_regex
from mta.tables.services import Service

__all__ = ["MATCHER_SERVICES", "KeyMatcher"]

MATCHER_SERVICES = Service.DOMAIN | Service.NETADDR | Service.MAILADDR | Service.REGEX
"""Services whose keys are patterns rather than literal keys."""


class KeyMatcher:
    """Compares lookup keys with table keys; caches compiled regexes (compile once)."""

    def __init__(self, delimiter: str = "+") -> None:
        self.delimiter = delimiter
        self._regexes: dict[str, Regex] = {}

    def regex(self, pattern: str) -> Regex:
        """The compiled form of a table pattern (TableError if it does not compile)."""
        compiled = self._regexes.get(pattern)
        if compiled is None:
            compiled = compile_regex(pattern)
            self._regexes[pattern] = compiled
        return compiled

    def for_service(self, service: Service) -> Callable[[str, str], bool] | None:
        """A ``(candidate, table key) -> bool`` predicate, or None for exact lookup."""
        if service == Service.DOMAIN:
            return hostname_match
        if service == Service.NETADDR:
            return netaddr_match
        if service == Service.MAILADDR:
            delimiter = self.delimiter
            return lambda candidate, entry: mailaddr_text_match(candidate, entry, delimiter)
        if service == Service.REGEX:
            return lambda candidate, entry: self.regex(entry).search(candidate)
        return None

"""Alias resolution: the key orders OpenSMTPD tries for primary-domain aliases
and virtual mappings (``aliases_get`` / ``aliases_virtual_get``), include files,
and the aliases(5) file syntax ``key: v1, v2`` with continuation lines."""

from __future__ import annotations

from mta.errors import TableError
from mta.tables.aliasnodes import AliasInclude, AliasNode, parse_alias_value
from mta.tables.base import Table
from mta.tables.services import Service, TableType
from mta.tables.tablefile import TableLine, parse_table_line, read_text

__all__ = [
    "alias_keys",
    "expand_includes",
    "lookup_alias",
    "lookup_virtual",
    "parse_aliases_text",
    "read_include",
    "strip_comment",
    "virtual_keys",
]


def alias_keys(user: str, delimiter: str = "+") -> list[str]:
    """Primary alias lookup order: ``user+tag`` then ``user`` (lowercased)."""
    user = user.lower()
    base, found, _ = user.partition(delimiter) if delimiter else (user, "", "")
    return [user, base] if found else [user]


def virtual_keys(user: str, domain: str, delimiter: str = "+") -> list[str]:
    """Virtual lookup order: ``user+tag@domain``, ``user@domain``, ``user+tag``,
    ``user``, ``@domain``, ``@`` (the catch-alls only when there is a domain)."""
    user, domain = user.lower(), domain.lower()
    base, found, tag = user.partition(delimiter) if delimiter else (user, "", "")
    keys: list[str] = []
    if found:
        keys.append(f"{base}{delimiter}{tag}@{domain}")
    keys.append(f"{base}@{domain}")
    if found:
        keys.append(f"{base}{delimiter}{tag}")
    keys.append(base)
    if domain:
        keys += [f"@{domain}", "@"]
    return keys


def _first(table: Table, keys: list[str]) -> tuple[AliasNode, ...] | None:
    for key in keys:
        value = table.lookup(Service.ALIAS, key)
        if value is not None:
            return parse_alias_value(value)
    return None


def lookup_alias(
    table: Table, user: str, delimiter: str = "+", *, includes: bool = True
) -> tuple[AliasNode, ...] | None:
    """Destinations for local ``user`` in an alias table, or None when absent.
    Include entries are replaced by the file's destinations unless ``includes``
    is False."""
    nodes = _first(table, alias_keys(user, delimiter))
    return expand_includes(nodes) if nodes is not None and includes else nodes


def lookup_virtual(
    table: Table, user: str, domain: str, delimiter: str = "+", *, includes: bool = True
) -> tuple[AliasNode, ...] | None:
    """Destinations for ``user@domain`` in a virtual table, or None when absent."""
    nodes = _first(table, virtual_keys(user, domain, delimiter))
    return expand_includes(nodes) if nodes is not None and includes else nodes


def read_include(path: str) -> tuple[AliasNode, ...]:
    """Destinations listed in an include file: one comma list per line, ``#``
    comments, backslash-newline continuation; nested includes are ignored."""
    text = read_text(path)
    nodes: dict[AliasNode, None] = {}
    pending = ""
    start = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not pending:
            start = lineno
        line = pending + raw.rstrip("\r")
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        pending = ""
        line = strip_comment(line)
        try:
            for node in parse_alias_value(line, includes=False):
                nodes.setdefault(node, None)
        except TableError as exc:
            raise TableError(f"{path}:{start}: {exc}") from None
    return tuple(nodes)


def strip_comment(line: str) -> str:
    """``line`` without its ``#`` comment (a backslash escapes ``#``)."""
    escaped = False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "#":
            return line[:index]
    return line


def expand_includes(nodes: tuple[AliasNode, ...]) -> tuple[AliasNode, ...]:
    """Replace each include entry with the destinations of its file."""
    result: dict[AliasNode, None] = {}
    for node in nodes:
        if isinstance(node, AliasInclude):
            for included in read_include(node.path):
                result.setdefault(included, None)
        else:
            result.setdefault(node, None)
    return tuple(result)


def parse_aliases_text(text: str, filename: str) -> list[TableLine]:
    """Parse an aliases(5) file: ``key: value, value``, ``#`` comment lines,
    continuation lines (starting with a space or tab, which separates a new
    destination even without a comma, or after a trailing backslash).
    Every value is validated; errors read ``file:line: ...``."""
    logical: list[tuple[int, str]] = []
    continuing = False
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip(" \t\r\n\v\f")
        stripped = line.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        if logical and (continuing or line[:1] in (" ", "\t")):
            first, previous = logical[-1]
            joiner = " " if continuing or previous.endswith(",") else ", "
            logical[-1] = (first, f"{previous}{joiner}{stripped}")
        else:
            logical.append((lineno, line))
        continuing = logical[-1][1].endswith("\\")
        if continuing:
            first, previous = logical[-1]
            logical[-1] = (first, previous[:-1])
    entries: list[TableLine] = []
    for lineno, line in logical:
        try:
            _, key, value = parse_table_line(line, TableType.HASH)
            if key is None or value is None:
                continue
            parse_alias_value(value)
        except TableError as exc:
            raise TableError(f"{filename}:{lineno}: {exc}") from None
        entries.append(TableLine(lineno, key, value))
    return entries

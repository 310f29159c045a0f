"""Splitting of comma-separated table values (``expand_line_split`` and
``mailaddr_line_split``): commas inside double or single quotes do not split,
a backslash escapes the next character and is removed, quotes are kept."""

from __future__ import annotations

from mta.errors import TableError

__all__ = ["split_list"]


def split_list(text: str) -> list[str]:
    """Split ``text`` at unquoted, unescaped commas; strip each part and drop
    empty ones.  An unterminated quote or a trailing backslash is a TableError."""
    parts: list[str] = []
    current: list[str] = []
    escaped = dquote = squote = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
            continue
        if char == "\\":
            escaped = True
            continue
        if char == "," and not dquote and not squote:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
        if char == '"' and not squote:
            dquote = not dquote
        elif char == "'" and not dquote:
            squote = not squote
    if escaped:
        raise TableError(f"trailing backslash in {text!r}")
    if dquote or squote:
        raise TableError(f"unterminated quote in {text!r}")
    parts.append("".join(current))
    stripped = (part.strip(" \t\n\v\f\r") for part in parts)
    return [part for part in stripped if part]

"""Alias values (``K_ALIAS``): the destinations an alias or virtual entry expands
to, parsed like OpenSMTPD ``expand_line`` / ``text_to_expandnode``.

A value is a comma list (quotes and backslashes honoured) of: ``user``,
``user@domain``, ``/file``, ``|command`` (optionally quoted), ``:include:/path``
or ``include:/path``, and ``error:NXX text`` or ``:error:NXX text``.
"""

from __future__ import annotations

import attrs

from mta.errors import TableError
from mta.tables.split import split_list

__all__ = [
    "AliasAddress",
    "AliasCommand",
    "AliasError",
    "AliasFile",
    "AliasInclude",
    "AliasNode",
    "AliasUser",
    "parse_alias_node",
    "parse_alias_value",
]

MAX_VALUE_LENGTH = 65536
_USER_CHARS = frozenset("_.-+")
_ADDRESS_USER_CHARS = frozenset("!#$%*/?|^{}`~&'+-=_.")
_ADDRESS_DOMAIN_CHARS = frozenset("-.")


@attrs.frozen
class AliasUser:
    """A local user name (``EXPAND_USERNAME``)."""

    user: str

    def __str__(self) -> str:
        return self.user


@attrs.frozen
class AliasAddress:
    """A mail address (``EXPAND_ADDRESS``)."""

    user: str
    domain: str

    def __str__(self) -> str:
        return f"{self.user}@{self.domain}"


@attrs.frozen
class AliasFile:
    """Append the message to an absolute file path (``EXPAND_FILENAME``)."""

    path: str

    def __str__(self) -> str:
        return self.path


@attrs.frozen
class AliasCommand:
    """Pipe the message to a command (``EXPAND_FILTER``)."""

    command: str

    def __str__(self) -> str:
        return f"|{self.command}"


@attrs.frozen
class AliasInclude:
    """Read more destinations from a file (``EXPAND_INCLUDE``)."""

    path: str

    def __str__(self) -> str:
        return f":include:{self.path}"


@attrs.frozen
class AliasError:
    """Fail the recipient with an SMTP status (``EXPAND_ERROR``)."""

    code: int
    message: str

    @property
    def temporary(self) -> bool:
        """True for a 4xx status."""
        return self.code < 500

    @property
    def status(self) -> str:
        """``NXX message`` as given after ``error:``."""
        return f"{self.code} {self.message}"

    def __str__(self) -> str:
        return f"error:{self.status}"


AliasNode = AliasUser | AliasAddress | AliasFile | AliasCommand | AliasInclude | AliasError


def _is_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _strip_prefix(text: str, *prefixes: str) -> str | None:
    for prefix in prefixes:
        if text[: len(prefix)].lower() == prefix:
            return text[len(prefix) :]
    return None


def _as_error(text: str) -> AliasError | None:
    rest = _strip_prefix(text, ":error:", "error:")
    if rest is None:
        return None
    if (
        len(rest) < 5
        or rest[3] != " "
        or not _is_alnum(rest[4])
        or rest[0] not in "45"
        or not rest[1:3].isascii()
        or not rest[1:3].isdigit()
    ):
        raise TableError(f"invalid error alias {text!r}: expected error:NXX message")
    return AliasError(int(rest[:3]), rest[4:])


def _as_include(text: str) -> AliasInclude | None:
    rest = _strip_prefix(text, ":include:", "include:")
    if rest is None:
        return None
    if not rest.startswith("/"):
        raise TableError(f"invalid include alias {text!r}: path must be absolute")
    return AliasInclude(rest)


def _as_command(text: str) -> AliasCommand | None:
    quoted = text.startswith('"')
    body = text[1:] if quoted else text
    if not body.startswith("|"):
        return None
    command = body[1:]
    if quoted:
        if not command.endswith('"'):
            raise TableError(f"invalid command alias {text!r}: unterminated quote")
        command = command[:-1]
    return AliasCommand(command)


def _as_address(text: str) -> AliasAddress | None:
    if len(text) < 3:
        return None
    user, at, domain = text.partition("@")
    if not at or not user or not domain:
        return None
    if not all(_is_alnum(c) or c in _ADDRESS_USER_CHARS for c in user):
        return None
    if not all(_is_alnum(c) or c in _ADDRESS_DOMAIN_CHARS for c in domain):
        return None
    return AliasAddress(user, domain)


def _as_user(text: str) -> AliasUser | None:
    if all(_is_alnum(c) or c in _USER_CHARS for c in text):
        return AliasUser(text)
    return None


def parse_alias_node(text: str) -> AliasNode:
    """Parse one destination (already split and stripped); TableError if invalid."""
    node: AliasNode | None = _as_error(text) or _as_include(text) or _as_command(text)
    if node is None and text.startswith("/"):
        node = AliasFile(text)
    node = node or _as_address(text) or _as_user(text)
    if node is None or not text:
        raise TableError(f"invalid alias destination {text!r}")
    return node


def parse_alias_value(text: str, *, includes: bool = True) -> tuple[AliasNode, ...]:
    """Parse an alias value into its destinations, in order, without duplicates.

    With ``includes=False`` (inside an include file) include entries are dropped,
    as OpenSMTPD does not nest includes.  An empty list is a TableError.
    """
    if len(text) > MAX_VALUE_LENGTH:
        raise TableError("alias value too long")
    nodes: dict[AliasNode, None] = {}
    for part in split_list(text):
        node = parse_alias_node(part)
        if isinstance(node, AliasInclude) and not includes:
            continue
        nodes.setdefault(node, None)
    if not nodes and includes:
        raise TableError(f"empty alias value {text!r}")
    return tuple(nodes)

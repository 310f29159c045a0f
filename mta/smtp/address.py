"""Paths of ``MAIL FROM`` / ``RCPT TO``: OpenSMTPD's ``smtp_mailaddr`` rules checked
against RFC 5321 4.1.2 (and RFC 6531 for SMTPUTF8), and HELO / EHLO domains.

``<...>`` is required; a source route is dropped; ``<>`` only where allowed; an
address without ``@domain`` gets the server's name as domain (OpenSMTPD); the
local part is a dot-atom or a quoted string (kept as sent, quotes included); the
domain is a host name or an address literal.  Limits: local part 64 octets,
domain 255, path 256.  Control characters never pass; non-ASCII only with
SMTPUTF8 and only as valid UTF-8 (the command line is decoded with
``surrogateescape``, so invalid bytes show up as surrogates).
"""

from __future__ import annotations

import enum
import ipaddress
import re

from mta.envelope import NULL_ADDRESS, Address

__all__ = [
    "DOMAIN_MAX",
    "LOCAL_MAX",
    "PATH_MAX",
    "PathError",
    "parse_mailbox",
    "split_path",
    "valid_domain",
    "valid_helo",
]

LOCAL_MAX = 64
DOMAIN_MAX = 255
PATH_MAX = 256

_ATEXT = "-A-Za-z0-9!#$%&'*+/=?^_`{|}~"
# The UTF-8 forms (RFC 6531) add every non-ASCII character to a class.  Each
# is written as the complement of the ASCII characters it leaves out: the same
# set as "[...\x80-\U0010ffff]", which the re module takes milliseconds to
# compile at import, where the complement takes microseconds.
_ATEXT_UTF8 = r'[^\x00-\x20"(),.:;<>@\[\\\]\x7f]'  # atext and non-ASCII
_QTEXT_UTF8 = r'[^\x00-\x1f"\\\x7f]'  # qtext, space and non-ASCII
_LETDIG_UTF8 = r"[^\x00-/:-@\[-`{-\x7f]"  # letters, digits and non-ASCII
_LDH_UTF8 = r"[^\x00-,./:-@\[-^`{-\x7f]"  # letters, digits, "-", "_" and non-ASCII
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
_DOT_ATOM_UTF8 = re.compile(rf"{_ATEXT_UTF8}+(?:\.{_ATEXT_UTF8}+)*\Z")
_QUOTED = re.compile(r'"(?:[ !#-\[\]-~]|\\[ -~])*"\Z')
_QUOTED_UTF8 = re.compile(rf'"(?:{_QTEXT_UTF8}|\\[ -~])*"\Z')
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\Z")
_LABEL_UTF8 = re.compile(rf"{_LETDIG_UTF8}(?:{_LDH_UTF8}*{_LETDIG_UTF8})?\Z")
_ROUTE = re.compile(r"@[^,:@]+(?:,@[^,:@]+)*:")


class PathError(enum.Enum):
    """Why a path was refused."""

    SYNTAX = "syntax"
    NON_ASCII = "non-ascii"  # non-ASCII without SMTPUTF8
    BAD_UTF8 = "bad-utf8"  # bytes that are not UTF-8


def split_path(argument: str) -> tuple[str, str] | None:
    """``<path> params`` -> (path without brackets, params); None when there is no
    ``<...>``.  A ``>`` inside a quoted local part does not end the path."""
    if not argument.startswith("<"):
        return None
    quoted = False
    escaped = False
    for index in range(1, len(argument)):
        c = argument[index]
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return argument[1:index], argument[index + 1 :].lstrip(" ")
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _utf8_problem(text: str, smtputf8: bool) -> PathError | None:
    if text.isascii():
        return None
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
        return PathError.BAD_UTF8
    if not smtputf8:
        return PathError.NON_ASCII
    return None


def valid_domain(domain: str, *, utf8: bool = False, literal: bool = True) -> bool:
    """A host name (LDH labels, ``_`` allowed inside, no trailing dot) or an
    address literal ``[1.2.3.4]`` / ``[IPv6:...]``."""
    if domain.startswith("["):
        return literal and _valid_literal(domain, bare_ipv6=False)
    if not domain or len(domain.encode("utf-8", "surrogateescape")) > DOMAIN_MAX:
        return False
    label_re = _LABEL_UTF8 if utf8 else _LABEL
    for label in domain.split("."):
        if not label_re.match(label) or len(label.encode("utf-8", "surrogateescape")) > 63:
            return False
    return True


def _valid_literal(literal: str, *, bare_ipv6: bool) -> bool:
    if not literal.endswith("]") or len(literal) > DOMAIN_MAX:
        return False
    inner = literal[1:-1]
    try:
        if inner[:5].upper() == "IPV6:":
            ipaddress.IPv6Address(inner[5:])
        elif bare_ipv6 and ":" in inner:
            ipaddress.IPv6Address(inner)
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def valid_helo(domain: str) -> bool:
    """The argument of HELO / EHLO: a host name or an address literal (OpenSMTPD's
    ``valid_domainpart``, which also takes ``[::1]`` without the ``IPv6:`` tag)."""
    if domain.startswith("["):
        return _valid_literal(domain, bare_ipv6=True)
    return domain.isascii() and valid_domain(domain)


def _valid_local(local: str, smtputf8: bool) -> bool:
    if not local or len(local.encode("utf-8", "surrogateescape")) > LOCAL_MAX:
        return False
    if local.startswith('"'):
        return bool((_QUOTED_UTF8 if smtputf8 else _QUOTED).match(local))
    return bool((_DOT_ATOM_UTF8 if smtputf8 else _DOT_ATOM).match(local))


def _split_mailbox(mailbox: str) -> tuple[str, str]:
    """local part and domain ("" when there is no ``@``), honouring a quoted local part."""
    if mailbox.startswith('"'):
        escaped = False
        for index in range(1, len(mailbox)):
            c = mailbox[index]
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                rest = mailbox[index + 1 :]
                if not rest:
                    return mailbox, ""
                if rest.startswith("@"):
                    return mailbox[: index + 1], rest[1:]
                return mailbox, "\0"  # text after the quoted string: invalid
        return mailbox, "\0"
    local, at, domain = mailbox.rpartition("@")
    if not at:
        return mailbox, ""
    return local, domain if domain else "\0"


def parse_mailbox(
    path: str, *, null_ok: bool, hostname: str, smtputf8: bool
) -> Address | PathError:
    """The text between ``<`` and ``>`` as an Address (domain lowercased)."""
    if _has_control(path) or len(path.encode("utf-8", "surrogateescape")) + 2 > PATH_MAX:
        return PathError.SYNTAX
    problem = _utf8_problem(path, smtputf8)
    if problem is not None:
        return problem
    if path.startswith("@"):
        route = _ROUTE.match(path)
        if route is None:
            return PathError.SYNTAX
        for hop in route.group()[:-1].split(","):
            if not valid_domain(hop[1:], utf8=smtputf8):
                return PathError.SYNTAX
        path = path[route.end() :]
        if not path:
            return PathError.SYNTAX
    if not path:
        return NULL_ADDRESS if null_ok else PathError.SYNTAX
    local, domain = _split_mailbox(path)
    if not _valid_local(local, smtputf8):
        return PathError.SYNTAX
    if not domain:
        domain = hostname
    elif not valid_domain(domain, utf8=smtputf8):
        return PathError.SYNTAX
    return Address(local, domain.lower())

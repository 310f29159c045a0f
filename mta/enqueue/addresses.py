"""Addresses as ``mta-sendmail`` takes them: from its arguments and from the
``To:`` / ``Cc:`` / ``Bcc:`` / ``From:`` headers of the message.

An address without a domain is qualified with the server name (OpenSMTPD's
``qualify_addr``).  Every address is checked with the SMTP server's own
mailbox rules before it goes into a command line, so nothing read from a
message can inject a line into the dialogue or the offline file.
"""

from __future__ import annotations

from mta.smtp.address import PathError, parse_mailbox
from mta.smtp.headers import parse_address_list

__all__ = [
    "AddressError",
    "arguments_addresses",
    "check_address",
    "header_addresses",
    "sender_option",
    "unique",
]


class AddressError(ValueError):
    """An address that cannot be used (the text says which and why)."""


def check_address(text: str, hostname: str, *, null_ok: bool = False) -> str:
    """``text`` as ``local@domain`` (qualified with ``hostname`` when it has no
    domain, the domain lowercased), or AddressError."""
    result = parse_mailbox(text, null_ok=null_ok, hostname=hostname, smtputf8=True)
    if isinstance(result, PathError):
        raise AddressError(f"invalid address: {text!r}")
    return str(result)


def sender_option(text: str, hostname: str) -> str:
    """The ``-f`` / ``-r`` argument: ``addr``, ``<addr>``, or ``<>`` / empty for the
    null sender (enqueue.c ``build_from``)."""
    value = text.strip()
    if value.startswith("<"):
        if not value.endswith(">"):
            raise AddressError(f"leading < but no trailing >: {text!r}")
        value = value[1:-1].strip()
    if not value:
        return ""
    return check_address(value, hostname)


def _strip_cfws(raw: bytes) -> bytes:
    """An address as it sits in a header, without comments and folding whitespace
    (which RFC 5322's obsolete syntax allows between its tokens) and without an
    obsolete source route."""
    out = bytearray()
    depth = 0
    quoted = False
    literal = False
    escaped = False
    for byte in raw:
        char = chr(byte)
        if escaped:
            escaped = False
            if depth == 0:
                out.append(byte)
            continue
        if char == "\\" and (quoted or depth or literal):
            escaped = True
            if depth == 0:
                out.append(byte)
            continue
        if depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
            continue
        if quoted:
            quoted = char != '"'
        elif literal:
            literal = char != "]"
        elif char == "(":
            depth = 1
            continue
        elif char in " \t\r\n":
            continue
        elif char == '"':
            quoted = True
        elif char == "[":
            literal = True
        out.append(byte)
    text = bytes(out)
    if text.startswith(b"@") and b":" in text:
        text = text[text.index(b":") + 1 :]
    return text


def header_addresses(value: bytes, hostname: str) -> list[str]:
    """The addresses of an address-list header value (``<>`` left out), qualified
    and checked; AddressError if the value does not parse."""
    spans = parse_address_list(value)
    if spans is None:
        shown = value.decode("utf-8", "replace").strip()
        raise AddressError(f"cannot parse address list: {shown[:200]!r}")
    found: list[str] = []
    for span in spans:
        if span.empty:
            continue
        raw = _strip_cfws(value[span.start : span.end])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AddressError(f"address is not UTF-8: {raw!r}") from None
        found.append(check_address(text, hostname))
    return found


def arguments_addresses(arguments: list[str], hostname: str) -> list[str]:
    """Recipients given as arguments: each may be an address list (``a, b``,
    ``Name <addr>``), as sendmail accepts them."""
    found: list[str] = []
    for argument in arguments:
        data = argument.encode("utf-8", "surrogateescape")
        found += header_addresses(data, hostname)
    return found


def unique(addresses: list[str]) -> list[str]:
    """``addresses`` without repeats, in their first order."""
    return list(dict.fromkeys(addresses))

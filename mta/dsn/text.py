"""Text for delivery status notifications: values from envelopes made safe to write.

Everything a notification says about an envelope (addresses, ORCPT, ENVID,
error lines that may come from a remote server) ends up in header fields or in
lines of a MIME part, so it goes through here first: the results are one line
of printable ASCII (no CR, LF or other control character can start a new field
or a MIME boundary), and :func:`fold` keeps every line within RFC 5322's 998
octets.  Encodings:

- ENVID: RFC 3461 xtext (:func:`mta.smtp.params.encode_xtext`).
- Addresses that are not plain printable ASCII (SMTPUTF8): RFC 6533's
  ``utf-8-addr-xtext`` (``\\x{E9}``), the form ``message/delivery-status``
  carries them in, under the ``utf-8`` address type (:func:`typed_address`).
- Free text: CR, LF and TAB become spaces, runs of spaces one space, and any
  other control or non-ASCII character the same ``\\x{HH}`` escape.

Also :func:`bounce_duration`, OpenSMTPD's wording of a delay ("4 hours").
"""

from __future__ import annotations

import re

__all__ = [
    "LINE_MAX",
    "bounce_duration",
    "fold",
    "free_text",
    "original_recipient",
    "plain_address",
    "typed_address",
    "utf8_addr_xtext",
]

LINE_MAX = 998
"""RFC 5322 2.1.1: longest line, CRLF excluded."""

_SPACES = re.compile(r"[ \t\r\n]+")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")  # an atom (RFC 3464 address-type)


def bounce_duration(seconds: int) -> str:
    """OpenSMTPD's ``bounce_duration``: the largest whole unit, ``1 hour``, ``4 days``."""
    d = max(0, int(seconds))
    if d < 60:
        value, unit = d, "second"
    elif d < 3600:
        value, unit = d // 60, "minute"
    elif d < 86400:
        value, unit = d // 3600, "hour"
    else:
        value, unit = d // 86400, "day"
    return f"{value} {unit}{'' if value == 1 else 's'}"


def _escape(c: str) -> str:
    """RFC 6533's EmbeddedUnicodeChar: ``\\x{`` hex code point ``}``, at least 2 digits."""
    return f"\\x{{{ord(c):02X}}}"


def utf8_addr_xtext(address: str) -> str:
    """RFC 6533 ``utf-8-addr-xtext``: QCHARs (printable ASCII but ``\\``, ``+``,
    ``=``) as they are, every other character as ``\\x{HHHH}``."""
    return "".join(c if "!" <= c <= "~" and c not in "\\+=" else _escape(c) for c in address)


def _printable(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def plain_address(address: str) -> str:
    """``address`` for text meant to be read: as it is when printable ASCII, else
    in the ``utf-8-addr-xtext`` form."""
    return address if _printable(address) else utf8_addr_xtext(address)


def typed_address(address: str) -> str:
    """``rfc822; address`` (``Final-Recipient``), or ``utf-8; <utf-8-addr-xtext>``
    for an address that is not printable ASCII (RFC 6533 3)."""
    if _printable(address):
        return f"rfc822; {address}"
    return f"utf-8; {utf8_addr_xtext(address)}"


def original_recipient(orcpt: str) -> str:
    """The value of ``Original-Recipient`` for an envelope's ``dsn_orcpt``
    (``type;address``, xtext already decoded): the address as the client gave
    it when it is printable ASCII, else its ``utf-8-addr-xtext`` form with the
    ``rfc822`` type changed to ``utf-8``; a value without a usable type is
    reported under the ``unknown`` type (RFC 3464 2.3.1)."""
    kind, semi, address = orcpt.partition(";")
    if not semi or not _ADDR_TYPE.match(kind):
        kind, address = "unknown", orcpt
    if _printable(address):
        return f"{kind};{address}"
    if kind.lower() == "rfc822":
        kind = "utf-8"
    return f"{kind};{utf8_addr_xtext(address)}"


def free_text(text: str) -> str:
    """One line of printable ASCII: whitespace runs (CR and LF included) become one
    space, other control or non-ASCII characters ``\\x{HH}``; ends stripped."""
    text = _SPACES.sub(" ", text).strip(" ")
    if _printable(text):
        return text
    return "".join(c if " " <= c <= "~" else _escape(c) for c in text)


def fold(line: str, width: int = 78) -> list[str]:
    """``line`` (one header field, or one line of text) as lines to join with CRLF.

    Folded before a space (the space starts the next line, as RFC 5322 folding
    wants) wherever that keeps lines within ``width``; a word that alone would
    pass :data:`LINE_MAX` is cut, and the cut reads as an added space once the
    field is unfolded.  ``line`` should be printable ASCII (see :func:`free_text`).
    """
    words = line.split(" ")
    lines: list[str] = []
    current = words[0]
    may_fold = False  # not before the first word after the field name
    for word in words[1:]:
        if word and may_fold and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = " " + word
        else:
            current += " " + word
        may_fold = may_fold or bool(word)
    lines.append(current)
    out: list[str] = []
    for item in lines:
        while len(item) > LINE_MAX:
            out.append(item[:LINE_MAX])
            item = " " + item[LINE_MAX:]
        out.append(item)
    return out

"""ESMTP parameters of ``MAIL FROM`` and ``RCPT TO`` (RFC 1870 SIZE, RFC 6152 BODY,
RFC 6531 SMTPUTF8, RFC 4954 AUTH, RFC 3461 DSN) and RFC 3461 xtext.

The parsers return the parsed parameters, or the :class:`~mta.reply.Reply` that
refuses the command.
"""

from __future__ import annotations

import re

import attrs

from mta.envelope import Body, DsnNotify, DsnRet
from mta.reply import Reply
from mta.smtp import replies

__all__ = [
    "ENVID_MAX",
    "ORCPT_MAX",
    "MailParams",
    "RcptParams",
    "decode_xtext",
    "encode_notify",
    "encode_xtext",
    "has_smtputf8",
    "parse_mail_params",
    "parse_rcpt_params",
]

ENVID_MAX = 100
"""RFC 3461 4.4: the ENVID value (as sent, xtext) is at most 100 characters."""
ORCPT_MAX = 500
"""RFC 3461 4.2: the ORCPT value (as sent) is at most 500 characters."""

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*\Z")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
_DIGITS = re.compile(r"[0-9]{1,20}\Z")


@attrs.frozen
class MailParams:
    """What ``MAIL FROM`` declared; ``envid`` is decoded (xtext removed)."""

    size: int | None = None
    body: Body = Body.UNSET
    smtputf8: bool = False
    auth: str | None = None  # RFC 4954 AUTH=, as sent; accepted and not used
    ret: DsnRet = DsnRet.NONE
    envid: str | None = None


@attrs.frozen
class RcptParams:
    """What ``RCPT TO`` declared; ``orcpt`` is ``type;address`` with the address decoded."""

    notify: DsnNotify = DsnNotify.NONE
    orcpt: str | None = None


def encode_xtext(text: str) -> str:
    """RFC 3461 xtext: ``!`` to ``~`` except ``+`` and ``=`` as they are, any other
    octet (of the UTF-8 form) as ``+HH``."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def encode_notify(flags: DsnNotify) -> str | None:
    """The RFC 3461 ``NOTIFY=`` value for ``flags`` (None when not given):
    ``NEVER`` alone, else the requested conditions in a fixed order."""
    if flags == DsnNotify.NONE:
        return None
    if flags & DsnNotify.NEVER:
        return "NEVER"
    return ",".join(
        name
        for name, flag in (
            ("SUCCESS", DsnNotify.SUCCESS),
            ("FAILURE", DsnNotify.FAILURE),
            ("DELAY", DsnNotify.DELAY),
        )
        if flags & flag
    )


def decode_xtext(text: str) -> str | None:
    """RFC 3461 xtext, strictly: ``+HH`` with uppercase hex, printable ASCII
    otherwise, and nothing that decodes to a control or non-ASCII character."""
    if not _XTEXT.match(text):
        return None
    decoded = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), text)
    if any(not " " <= c <= "~" for c in decoded):
        return None
    return decoded


def _split(tokens: str) -> list[tuple[str, str | None, str]]:
    """``KEY[=VALUE]`` words as (uppercased key, value, the word as sent)."""
    out = []
    for word in tokens.split(" "):
        if not word:
            continue
        key, eq, value = word.partition("=")
        out.append((key.upper(), value if eq else None, word))
    return out


def has_smtputf8(tokens: str) -> bool:
    """Whether the parameters include ``SMTPUTF8`` (needed before the address is checked)."""
    return any(key == "SMTPUTF8" and value is None for key, value, _ in _split(tokens))


def _duplicate(key: str) -> Reply:
    return replies.invalid_arguments(f"Duplicate option {key}")


def parse_mail_params(tokens: str, *, dsn: bool, max_size: int) -> MailParams | Reply:
    """The parameters after ``MAIL FROM:<path>``."""
    seen: set[str] = set()
    size: int | None = None
    body = Body.UNSET
    smtputf8 = False
    auth: str | None = None
    ret = DsnRet.NONE
    envid: str | None = None
    for key, value, word in _split(tokens):
        if not _KEYWORD.match(key) or not key.isascii():
            return replies.unsupported_option(word)
        if key in seen:
            return _duplicate(key)
        seen.add(key)
        if key == "SIZE" and value is not None:
            if not _DIGITS.match(value):
                return replies.invalid_arguments(f"Invalid SIZE value {value}")
            size = int(value)
            if max_size and size > max_size:
                return replies.SIZE_TOO_BIG
        elif key == "BODY" and value is not None:
            upper = value.upper()
            if upper == "7BIT":
                body = Body.SEVENBIT
            elif upper == "8BITMIME":
                body = Body.EIGHTBITMIME
            else:
                return replies.unsupported_option(word)
        elif key == "SMTPUTF8" and value is None:
            smtputf8 = True
        elif key == "AUTH" and value is not None:
            auth = value
        elif dsn and key == "RET" and value is not None:
            upper = value.upper()
            if upper == "FULL":
                ret = DsnRet.FULL
            elif upper == "HDRS":
                ret = DsnRet.HDRS
            else:
                return replies.invalid_arguments(f"Invalid RET value {value}")
        elif dsn and key == "ENVID" and value is not None:
            if len(value) > ENVID_MAX:
                return replies.invalid_arguments("option too large: ENVID")
            envid = decode_xtext(value)
            if not envid:
                return replies.invalid_arguments("Invalid ENVID value")
        else:
            return replies.unsupported_option(word)
    return MailParams(size=size, body=body, smtputf8=smtputf8, auth=auth, ret=ret, envid=envid)


_NOTIFY = {
    "SUCCESS": DsnNotify.SUCCESS,
    "FAILURE": DsnNotify.FAILURE,
    "DELAY": DsnNotify.DELAY,
    "NEVER": DsnNotify.NEVER,
}
NOTIFY_NEVER = Reply.of(553, "5.5.4", "NOTIFY option NEVER cannot be combined with other options")
NOTIFY_INVALID = Reply.of(553, "5.5.4", "Invalid NOTIFY option")
ORCPT_SYNTAX = Reply.of(553, "5.5.4", "ORCPT address syntax error")


def _notify(value: str) -> DsnNotify | Reply:
    notify = DsnNotify.NONE
    for item in value.split(","):
        flag = _NOTIFY.get(item.upper())
        if flag is None or flag & notify:
            return NOTIFY_INVALID
        notify |= flag
    if DsnNotify.NEVER in notify and notify != DsnNotify.NEVER:
        return NOTIFY_NEVER
    return notify


def _orcpt(value: str) -> str | None:
    if len(value) > ORCPT_MAX:
        return None
    kind, semi, xtext = value.partition(";")
    if not semi or not _ATOM.match(kind) or not kind.isascii():
        return None
    address = decode_xtext(xtext)
    if not address:
        return None
    return f"{kind};{address}"


def parse_rcpt_params(tokens: str, *, dsn: bool) -> RcptParams | Reply:
    """The parameters after ``RCPT TO:<path>``."""
    seen: set[str] = set()
    notify = DsnNotify.NONE
    orcpt: str | None = None
    for key, value, word in _split(tokens):
        if not _KEYWORD.match(key) or not key.isascii():
            return replies.unsupported_option(word)
        if key in seen:
            return _duplicate(key)
        seen.add(key)
        if dsn and key == "NOTIFY" and value is not None:
            parsed = _notify(value)
            if isinstance(parsed, Reply):
                return parsed
            notify = parsed
        elif dsn and key == "ORCPT" and value is not None:
            orcpt = _orcpt(value)
            if orcpt is None:
                return ORCPT_SYNTAX
        else:
            return replies.unsupported_option(word)
    return RcptParams(notify=notify, orcpt=orcpt)

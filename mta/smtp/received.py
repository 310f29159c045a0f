"""Our ``Received:`` trace header, written first in every message we accept.

The text is OpenSMTPD's (smtp_session.c, ``smtp_message_begin``) with ``(mta)``
in place of ``(OpenSMTPD)``, CRLF line ends and TAB continuation lines::

    Received: from <helo> (<rdns> [<ip>])
    \tby <smtpname> (mta) with ESMTPSA id <msgid> (<tls>:<cipher>:<bits>:YES) auth=yes user=<u>
    \tfor <rcpt@domain>;
    \tSun, 5 Jan 2025 12:34:56 +0100 (CET)

The ``from`` part is left out with ``mask-src`` (the first line is then
``Received: `` alone), the TLS part appears only on TLS sessions, ``auth=`` /
``user=`` only on TLS sessions of a ``received-auth`` listener, and ``for`` only
when the transaction has exactly one recipient.  Values copied from the
client cannot add lines: every control character is written as ``\\xNN``.
"""

from __future__ import annotations

import datetime as _dt
import re
import socket

import attrs

from mta.envelope import Address
from mta.smtp.dates import format_date

__all__ = ["LOCAL_PEER", "ReceivedInfo", "TlsDetails", "received_header", "trace_text"]

LOCAL_PEER = "local"
"""``ReceivedInfo.peer`` for a local (socket) session, shown ``[local]``."""

PRODUCT = "mta"

_CTL = re.compile(r"[\x00-\x1f\x7f]")


def trace_text(value: str) -> str:
    """``value`` made safe for a header: each control character (CR, LF, NUL,
    TAB, DEL, ...) becomes ``\\xNN``, so nothing copied from a client can start a
    new line or hide text."""
    if _CTL.search(value) is None:
        return value
    return _CTL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def _check_peer(instance: ReceivedInfo, attribute: attrs.Attribute[str], value: str) -> None:
    _peer_text(value)


def _check_msgid(instance: ReceivedInfo, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"msgid is a 32-bit value: {value!r}")


def _check_date(
    instance: ReceivedInfo, attribute: attrs.Attribute[_dt.datetime], value: _dt.datetime
) -> None:
    if value.utcoffset() is None:
        raise ValueError("the Received date must be an aware datetime")


@attrs.frozen
class TlsDetails:
    """What the TLS layer negotiated: ``TLSv1.3``, ``TLS_AES_256_GCM_SHA384``, 256."""

    version: str
    cipher: str
    bits: int


@attrs.frozen
class ReceivedInfo:
    """Everything the ``Received:`` header shows about one transaction.

    ``peer`` is the client's IP address as text (``192.0.2.1``, ``2001:db8::1``)
    or :data:`LOCAL_PEER`; ``rdns`` the client's name (hosts file, then reverse
    DNS), None when unknown; ``msgid`` the 32-bit message id; ``rcpt`` the
    recipient when the transaction has exactly one, else None; ``date`` an
    aware datetime (its zone is the one written).  ``username`` is the
    authenticated user ("" if none).
    """

    helo: str
    rdns: str | None
    peer: str = attrs.field(validator=_check_peer)
    smtpname: str
    msgid: int = attrs.field(validator=_check_msgid)
    date: _dt.datetime = attrs.field(validator=_check_date)
    esmtp: bool = True
    tls: TlsDetails | None = None
    verified: bool = False
    authenticated: bool = False
    username: str = ""
    mask_src: bool = False
    received_auth: bool = False
    rcpt: Address | None = None


def _peer_text(peer: str) -> str:
    """``[local]``, ``[192.0.2.1]`` or ``[2001:db8::1]`` (IPv6 written as
    getnameinfo(3) writes it, which is what OpenSMTPD shows)."""
    if peer == LOCAL_PEER:
        return f"[{LOCAL_PEER}]"
    address, percent, scope = peer.partition("%")
    try:
        if ":" in address:
            text = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))
        else:
            text = socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, address))
    except (OSError, ValueError):
        raise ValueError(f"peer must be an IP address or {LOCAL_PEER!r}: {peer!r}") from None
    if percent and not scope.isprintable():
        raise ValueError(f"bad scope in peer address: {peer!r}")
    return f"[{text}{percent}{scope}]"


def received_header(info: ReceivedInfo) -> bytes:
    """The complete ``Received:`` header, CRLF-terminated, UTF-8 encoded (a
    character UTF-8 cannot carry, such as a lone surrogate, is written escaped)."""
    parts = ["Received: "]
    if not info.mask_src:
        rdns = "<unknown>" if info.rdns is None else trace_text(info.rdns)
        parts.append(f"from {trace_text(info.helo)} ({rdns} {_peer_text(info.peer)})")
    parts.append(
        f"\r\n\tby {trace_text(info.smtpname)} ({PRODUCT}) with "
        f"{'E' if info.esmtp else ''}SMTP{'S' if info.tls else ''}"
        f"{'A' if info.authenticated else ''} id {info.msgid:08x}"
    )
    if info.tls is not None:
        parts.append(
            f" ({trace_text(info.tls.version)}:{trace_text(info.tls.cipher)}:"
            f"{int(info.tls.bits)}:{'YES' if info.verified else 'NO'})"
        )
        if info.received_auth:
            if info.username:
                parts.append(f" auth=yes user={trace_text(info.username)}")
            else:
                parts.append(" auth=no")
    if info.rcpt is not None:
        parts.append(f"\r\n\tfor <{trace_text(info.rcpt.local)}@{trace_text(info.rcpt.domain)}>")
    parts.append(f";\r\n\t{format_date(info.date)}\r\n")
    return "".join(parts).encode("utf-8", "backslashreplace")

"""Delivery status notifications (bounces) as bytes: what to say, and whether to.

When a delivery fails for good or expires, is delayed past a warn interval, or
succeeds for a recipient that asked ``NOTIFY=SUCCESS``, the envelope sender gets
a notification, sent from ``<>``.  :func:`compose` writes it from a
:class:`Report` and the original message content; it does no I/O and reads
the content as it writes (see :mod:`mta.dsn.content`).  :func:`wanted` says
whether an envelope gets a notification of a given type at all, and
:func:`report_for` / :func:`recipient_report` build the report from envelopes.

The layout and the wording are OpenSMTPD's (``bounce.c``): the ``Delivery
status notification: failed`` subject, the ``Mailer Daemon`` sender, the "Hi!
This is the MAILER-DAEMON" text with one ``address: error`` line per
recipient, the delay wording ("4 hours"), a ``message/delivery-status`` part and
the original headers (the whole message only for a failure with ``RET=FULL``).
Where OpenSMTPD falls short of the RFCs the RFCs win:

- RFC 3462/6522 ``multipart/report; report-type=delivery-status`` (not
  ``multipart/mixed``), a boundary of at most 70 characters, ``Message-ID``,
  RFC 3834 ``Auto-Submitted: auto-replied``;
- RFC 3464 fields: ``Original-Envelope-Id`` (xtext, RFC 3461) and
  ``Arrival-Date`` per message; ``Original-Recipient``, ``Diagnostic-Code``,
  ``Last-Attempt-Date`` and, for delays, ``Will-Retry-Until`` per recipient;
- the returned message is ``message/rfc822`` when whole, ``text/rfc822-headers``
  otherwise, with ``Content-Transfer-Encoding: 8bit`` where it may hold 8-bit
  octets;
- RFC 3461 ``NOTIFY``: no failure notice when the client asked only for other
  notices, no delay notice unless asked (or ``NOTIFY`` was not given).

Everything taken from an envelope goes through :mod:`mta.dsn.text`, so no
value can add a header field or a MIME boundary; generated lines stay within
998 octets.  The generated parts are ASCII; the only 8-bit a notification can
carry is a non-ASCII sender address in ``To:`` (RFC 6532: such a notification
can only be sent with SMTPUTF8 anyway) and the returned original.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Iterable, Iterator, Sequence

import attrs

from mta.dsn.content import returned
from mta.dsn.text import (
    bounce_duration,
    fold,
    free_text,
    original_recipient,
    plain_address,
    typed_address,
)
from mta.envelope import Address, Body, DsnNotify, DsnRet, Envelope, EnvelopeFlag, EnvelopeKind
from mta.smtp.dates import format_date
from mta.smtp.params import encode_xtext
from mta.status import StatusCode

__all__ = [
    "RecipientReport",
    "Report",
    "ReportType",
    "boundary_of",
    "compose",
    "recipient_report",
    "report_for",
    "status_text",
    "wanted",
]


class ReportType(enum.Enum):
    """What happened to the recipients of a notification; the value is RFC 3464's ``Action``."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"  # passed on to a server that does not do DSN (RFC 3461 6.2.2)
    EXPANDED = "expanded"  # delivered to an alias or list that sent it on

    @property
    def success(self) -> bool:
        return self in (ReportType.DELIVERED, ReportType.RELAYED, ReportType.EXPANDED)


_SMTP_REPLY = re.compile(r"[2-5][0-9][0-9](?:[ -]|\Z)")
_PSEUDO_CODE = re.compile(r"[16][0-9][0-9][ -].")
_BCHARS = re.compile(r"[^0-9A-Za-z'()+_,./:=?-]")  # RFC 2046 bcharsnospace, inverted
_NAME_CHARS = re.compile(r"[^0-9A-Za-z.:_\[\]-]")
_BOUNDARY_MAX = 70  # RFC 2046 5.1.1
_U64 = 1 << 64


def _check_status(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if StatusCode.parse(value) is None:
        raise ValueError(f"{attribute.name} is not an enhanced status code: {value!r}")


def _check_u64(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value < _U64:
        raise ValueError(f"{attribute.name} must be a 64-bit unsigned value")


def _check_sender(instance: object, attribute: attrs.Attribute[Address], value: Address) -> None:
    if value.is_null:
        raise ValueError("a notification is never sent to <>")


def _check_recipients(
    instance: object,
    attribute: attrs.Attribute[tuple[RecipientReport, ...]],
    value: tuple[RecipientReport, ...],
) -> None:
    if not value:
        raise ValueError("a notification reports on at least one recipient")


@attrs.frozen
class RecipientReport:
    """One recipient's block of the ``message/delivery-status`` part.

    ``final`` is the address delivery was attempted to (the envelope's
    ``dest``); ``original`` the ORCPT as ``type;address`` ("" when none was
    given); ``status`` the RFC 3463 code (``5.1.1``); ``diagnostic`` the error
    line ("" for none), a reply of a remote server or a local error; times are
    Unix seconds.
    """

    final: Address
    status: str = attrs.field(validator=_check_status)
    original: str = ""
    diagnostic: str = ""
    last_attempt: int | None = None
    will_retry_until: int | None = None


@attrs.frozen
class Report:
    """A notification about some recipients of one message, all with the same outcome.

    ``sender`` is the original envelope sender, who receives it; ``arrival``
    when the message was received; ``now`` the notification's date;
    ``delay`` (how long the message has waited) and ``ttl`` (how long it is
    kept queued) matter for :attr:`ReportType.DELAYED` only.  ``smtputf8`` and
    ``eight_bit`` say whether the original may hold 8-bit octets in its headers
    (SMTPUTF8) or in its body (SMTPUTF8 or ``BODY=8BITMIME``).  Dates are
    written in ``zone``, the local time zone when None.  The two random values
    (64-bit) make the Message-ID and the MIME boundary.
    """

    type: ReportType
    smtpname: str
    sender: Address = attrs.field(validator=_check_sender)
    recipients: tuple[RecipientReport, ...] = attrs.field(validator=_check_recipients)
    arrival: int
    now: int
    message_id_random: int = attrs.field(validator=_check_u64)
    boundary_random: int = attrs.field(validator=_check_u64)
    envid: str = ""
    ret: DsnRet = DsnRet.NONE
    delay: int = 0
    ttl: int = 0
    smtputf8: bool = False
    eight_bit: bool = False
    zone: _dt.tzinfo | None = None

    @property
    def full(self) -> bool:
        """Whether the whole message is returned (a failure with ``RET=FULL``)."""
        return self.type is ReportType.FAILED and self.ret is DsnRet.FULL


# --------------------------------------------------------------------------
# Whether to notify, and reports from envelopes


def wanted(envelope: Envelope, type: ReportType) -> bool:
    """Whether ``envelope``'s sender gets a ``type`` notification.

    Never for the null sender (RFC 5321 6.1), never about a notification
    (``bounce`` envelopes and messages flagged as bounces: no double bounce),
    never with ``NOTIFY=NEVER`` (OpenSMTPD's rules, ``queue_bounce``).  Then
    RFC 3461 4.1: failures and delays only when ``NOTIFY`` names them or was
    not given (it then means ``FAILURE,DELAY``); successes (delivered,
    relayed, expanded) only with ``NOTIFY=SUCCESS``.  OpenSMTPD sends failure
    and delay notices whatever ``NOTIFY`` says short of ``NEVER``.
    """
    if envelope.sender.is_null:
        return False
    if envelope.kind is EnvelopeKind.BOUNCE or EnvelopeFlag.BOUNCE in envelope.flags:
        return False
    notify = envelope.dsn_notify
    if DsnNotify.NEVER in notify:
        return False
    if type.success:
        return DsnNotify.SUCCESS in notify
    if not notify:
        return True
    wants = DsnNotify.FAILURE if type is ReportType.FAILED else DsnNotify.DELAY
    return wants in notify


def status_text(esc: StatusCode | None, type: ReportType) -> str:
    """The ``Status`` for an envelope's enhanced status code in a ``type``
    notification, subject and detail unchanged (``5.1.10``, ``5.7.350``).

    A failure keeps a 4 or 5 class (4.x.x: given up after temporary failures,
    as for an expired message), a delay is always 4.x.x and a success 2.x.x;
    without a code of a fitting class: ``5.0.0``, ``4.0.0``, ``2.0.0``.
    """
    if type is ReportType.FAILED:
        return str(esc) if esc is not None and esc.class_ in (4, 5) else "5.0.0"
    if type is ReportType.DELAYED:
        return str(esc.with_class(4)) if esc is not None and esc.class_ in (4, 5) else "4.0.0"
    return str(esc) if esc is not None and esc.class_ == 2 else "2.0.0"


def recipient_report(
    envelope: Envelope, type: ReportType, *, diagnostic: str | None = None, ttl: int = 0
) -> RecipientReport:
    """``envelope``'s block in a ``type`` notification.

    The diagnostic is ``diagnostic`` when given, else the envelope's error line
    for failures and delays (a success does not repeat an error left over from
    an earlier attempt).  ``ttl`` (delays): how long the envelope stays queued
    from its creation, for ``Will-Retry-Until``.
    """
    if diagnostic is None:
        diagnostic = "" if type.success else envelope.errorline
    retry_until = envelope.ctime + ttl if type is ReportType.DELAYED and ttl > 0 else None
    return RecipientReport(
        final=envelope.dest,
        status=status_text(envelope.esc, type),
        original=envelope.dsn_orcpt,
        diagnostic=diagnostic,
        last_attempt=envelope.last_try or None,
        will_retry_until=retry_until,
    )


def report_for(
    type: ReportType,
    envelopes: Sequence[Envelope],
    *,
    now: int,
    message_id_random: int,
    boundary_random: int,
    delay: int = 0,
    ttl: int = 0,
    zone: _dt.tzinfo | None = None,
) -> Report:
    """The ``type`` notification about ``envelopes``: recipients of one message,
    with the same sender and smtpname (ValueError otherwise).  Message-wide
    values (ENVID, RET, arrival, SMTPUTF8, BODY) come from the first."""
    if not envelopes:
        raise ValueError("no envelope to report on")
    first = envelopes[0]
    for envelope in envelopes[1:]:
        if (envelope.msgid, envelope.sender, envelope.smtpname) != (
            first.msgid,
            first.sender,
            first.smtpname,
        ):
            raise ValueError("a notification is about one message of one sender")
    return Report(
        type=type,
        smtpname=first.smtpname,
        sender=first.sender,
        recipients=tuple(recipient_report(e, type, ttl=ttl) for e in envelopes),
        arrival=first.ctime,
        now=now,
        message_id_random=message_id_random,
        boundary_random=boundary_random,
        envid=first.dsn_envid,
        ret=first.dsn_ret,
        delay=delay,
        ttl=ttl,
        smtputf8=first.smtputf8,
        eight_bit=first.smtputf8 or first.body is Body.EIGHTBITMIME,
        zone=zone,
    )


# --------------------------------------------------------------------------
# The message

_INTRO = "    Hi!\r\n\r\n    This is the MAILER-DAEMON, please DO NOT REPLY to this email.\r\n\r\n"
_NOTICE = {
    ReportType.FAILED: (
        "    An error has occurred while attempting to deliver a message for\r\n"
        "    the following list of recipients:\r\n\r\n"
    ),
    ReportType.DELAYED: (
        "    A message is delayed for more than {delay} for the following\r\n"
        "    list of recipients:\r\n\r\n"
    ),
    ReportType.DELIVERED: (
        "    Your message was successfully delivered to these recipients.\r\n\r\n"
    ),
    ReportType.RELAYED: "    Your message was relayed to these recipients.\r\n\r\n",
    ReportType.EXPANDED: (
        "    Your message was delivered to these aliases or lists, which sent it on\r\n"
        "    to their members.\r\n\r\n"
    ),
}
_DELAY_NOTE = (
    "    Please note that this is only a temporary failure report.\r\n"
    "    The message is kept in the queue for up to {ttl}.\r\n"
    "    You DO NOT NEED to re-send the message to these recipients.\r\n\r\n"
)
_COPY = "    Below is a copy of the original message:\r\n\r\n"


def _name(smtpname: str) -> str:
    """The server name as it goes into addresses and fields: ASCII (IDNA), no
    character that would end a field or an address."""
    try:
        name = smtpname.encode("idna").decode("ascii")
    except UnicodeError:
        name = smtpname
    return _NAME_CHARS.sub("-", name) or "localhost"


def _date(when: int, zone: _dt.tzinfo | None) -> str:
    if zone is None:
        return format_date(_dt.datetime.fromtimestamp(when).astimezone())
    return format_date(_dt.datetime.fromtimestamp(when, zone))


def _field(name: str, value: str) -> str:
    """A header field, folded, with its CRLF."""
    return "".join(line + "\r\n" for line in fold(f"{name}: {value}"))


def _text_line(text: str) -> str:
    """A line of the text part, with its CRLF (cut when over 998 octets)."""
    return "".join(line + "\r\n" for line in fold(text, width=998))


def _to(sender: Address) -> str:
    """The ``To:`` value: the sender's address, with anything that is not
    printable replaced (an address made by the SMTP parser has none); UTF-8
    stays UTF-8 (RFC 6532)."""
    return "".join(
        c if c >= " " and c != "\x7f" and not 0xD800 <= ord(c) < 0xE000 else "?"
        for c in str(sender)
    )


def _diagnostic(text: str) -> tuple[str, str]:
    """(the text for the human-readable line, the Diagnostic-Code value or "")."""
    if _PSEUDO_CODE.match(text):  # OpenSMTPD's internal 1xx / 6xx codes, not shown
        text = text[4:]
    line = free_text(text)
    if not line:
        return "", ""
    kind = "smtp" if _SMTP_REPLY.match(line) else "X-Local"
    return line, f"{kind}; {line}"


def _head(report: Report, boundary: str, content_type: str, eight_bit: bool) -> str:
    name = _name(report.smtpname)
    out = [
        _field("Subject", f"Delivery status notification: {report.type.value}"),
        _field("From", f"Mailer Daemon <MAILER-DAEMON@{name}>"),
        _field("To", _to(report.sender)),
        _field("Date", _date(report.now, report.zone)),
        _field("Message-ID", f"<{report.message_id_random:016x}@{name}>"),
        "Auto-Submitted: auto-replied\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/report; report-type=delivery-status;\r\n",
        f' boundary="{boundary}"\r\n',
    ]
    if eight_bit:
        out.append("Content-Transfer-Encoding: 8bit\r\n")
    out.append("\r\nThis is a MIME-encapsulated message.\r\n\r\n")

    # The human-readable part.
    out.append(
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    )
    out.append(_INTRO)
    out.append(_NOTICE[report.type].format(delay=bounce_duration(report.delay)))
    for rcpt in report.recipients:
        line, _ = _diagnostic(rcpt.diagnostic)
        address = plain_address(str(rcpt.final))
        out.append(_text_line(f"{address}: {line}" if line else address))
    out.append("\r\n")
    if report.type is ReportType.DELAYED:
        out.append(_DELAY_NOTE.format(ttl=bounce_duration(report.ttl)))
    out.append(_COPY)

    # The machine-readable part (RFC 3464).
    out.append(
        f"--{boundary}\r\n"
        "Content-Description: Delivery Report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
    )
    if report.envid:
        out.append(_field("Original-Envelope-Id", encode_xtext(report.envid)))
    out.append(_field("Reporting-MTA", f"dns; {name}"))
    out.append(_field("Arrival-Date", _date(report.arrival, report.zone)))
    for rcpt in report.recipients:
        out.append("\r\n")
        if rcpt.original:
            out.append(_field("Original-Recipient", original_recipient(rcpt.original)))
        out.append(_field("Final-Recipient", typed_address(str(rcpt.final))))
        out.append(_field("Action", report.type.value))
        out.append(_field("Status", rcpt.status))
        _, code = _diagnostic(rcpt.diagnostic)
        if code:
            out.append(_field("Diagnostic-Code", code))
        if rcpt.last_attempt is not None:
            out.append(_field("Last-Attempt-Date", _date(rcpt.last_attempt, report.zone)))
        if rcpt.will_retry_until is not None and report.type is ReportType.DELAYED:
            out.append(_field("Will-Retry-Until", _date(rcpt.will_retry_until, report.zone)))

    # The returned content's part header.
    out.append(f"\r\n--{boundary}\r\nContent-Description: Message headers\r\n")
    out.append(f"Content-Type: {content_type}\r\n")
    if eight_bit:
        out.append("Content-Transfer-Encoding: 8bit\r\n")
    out.append("\r\n")
    return "".join(out)


def boundary_of(report: Report) -> str:
    """The MIME boundary: OpenSMTPD's ``<random>/<smtpname>``, kept to RFC 2046's
    characters and 70-character limit."""
    name = _BCHARS.sub("-", _name(report.smtpname))
    return f"{report.boundary_random:020d}/{name}"[:_BOUNDARY_MAX]


def compose(report: Report, original: Iterable[bytes]) -> Iterator[bytes]:
    """The notification ``report`` describes, as chunks of bytes (CRLF lines),
    with ``original`` (the message content, in chunks) returned whole or as
    its header block.  ``original`` is read as the result is consumed, and no
    further than the end of its headers unless the whole message is returned.
    """
    boundary = boundary_of(report)
    full = report.full
    if full:
        content_type = "message/rfc822"
        eight_bit = report.eight_bit or report.smtputf8
    else:
        content_type = "text/rfc822-headers"
        eight_bit = report.smtputf8
    head = _head(report, boundary, content_type, eight_bit)
    return _stream(head, original, boundary, headers_only=not full)


def _stream(
    head: str, original: Iterable[bytes], boundary: str, *, headers_only: bool
) -> Iterator[bytes]:
    yield head.encode("utf-8", "surrogateescape")
    yield from returned(original, boundary=boundary.encode("ascii"), headers_only=headers_only)
    yield f"\r\n--{boundary}--\r\n".encode("ascii")

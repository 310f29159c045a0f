"""What the web inbox shows of a message: plain data, no HTTP and no HTML.

:func:`summary` is one row of the list (``/api/messages``), :func:`detail` the
whole message (``/api/messages/<id>``): the envelope, the headers, the first
text and HTML parts, and the attachments (name, type, size).  A part that does
not decode (a wrong charset, broken base64) is shown as well as it can be,
never raised: a test server must show whatever a client sent.
"""

from __future__ import annotations

import contextlib
from email.message import EmailMessage, Message
from typing import Any

from mta.testing.inbox import ReceivedMessage

__all__ = ["Attachment", "Detail", "Summary", "detail", "summary"]

Summary = dict[str, Any]
Detail = dict[str, Any]
Attachment = dict[str, Any]


def _clean(text: str) -> str:
    """``text`` without the surrogates the parser leaves for undecodable
    bytes (they cannot be sent as UTF-8): each becomes U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, ""))
    except Exception:  # a header the policy cannot parse: show it raw
        raw = message.get_all(name, failobj=[""])[0]
        return str(raw)


def summary(received: ReceivedMessage) -> Summary:
    """One row of the list: the envelope, From, To, Subject, Date, the size."""
    message = received.message
    return {
        "id": received.id,
        "mail_from": received.mail_from,
        "rcpt_tos": list(received.rcpt_tos),
        "from": _header(message, "From"),
        "to": _header(message, "To"),
        "subject": _header(message, "Subject"),
        "date": _header(message, "Date"),
        "received": received.received.isoformat(),
        "size": len(received.raw),
    }


def _text(part: Message) -> str:
    """The decoded text of a part, replacing what does not decode."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset
        return payload.decode("utf-8", errors="replace")


def _attachment(part: Message) -> Attachment:
    payload = part.get_payload(decode=True)
    filename = None
    with contextlib.suppress(Exception):
        filename = part.get_filename()
    return {
        "filename": _clean(filename or ""),
        "content_type": part.get_content_type(),
        "size": len(payload) if isinstance(payload, bytes) else 0,
    }


def detail(received: ReceivedMessage) -> Detail:
    """The whole message: the summary, every header in order, the first
    ``text/plain`` and ``text/html`` parts that are not attachments (None when
    absent), and the attachments."""
    message = received.message
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        kind = part.get_content_type()
        if disposition != "attachment" and kind == "text/plain" and text is None:
            text = _text(part)
        elif disposition != "attachment" and kind == "text/html" and html is None:
            html = _text(part)
        elif disposition is not None or part.get_filename() or not kind.startswith("text/"):
            attachments.append(_attachment(part))
    headers = [[_clean(name), _clean(str(value))] for name, value in message.raw_items()]
    return {
        **summary(received),
        "headers": headers,
        "text": text,
        "html": html,
        "attachments": attachments,
    }

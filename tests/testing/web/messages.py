"""Messages for the web inbox tests: plain, multipart with HTML and an
attachment, and one whose HTML tries to run script."""

from __future__ import annotations

import datetime
from email.message import EmailMessage

from mta.testing import ReceivedMessage

WHEN = datetime.datetime(2026, 12, 7, 21, 0, tzinfo=datetime.UTC)

# Each payload, if it ran, would change the title of the document it is in
# (and try the page's): the browser test asserts that none did.
HOSTILE_HTML = (
    "<p>hostile</p><script>document.title='PWNED';parent.document.title='PWNED'</script>"
    "<img src=x onerror=\"document.title='PWNED'\">"
    "<svg onload=\"document.title='PWNED'\"></svg>"
)


def _received(message_id: str, message: EmailMessage, to: str) -> ReceivedMessage:
    raw = message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return ReceivedMessage(message_id, "alice@example.test", (to,), raw, WHEN)


def plain(message_id: str, subject: str, to: str = "bob@example.test") -> ReceivedMessage:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Mon, 07 Dec 2026 21:00:00 +0000"
    message.set_content(f"Hello from {subject}.\n")
    return _received(message_id, message, to)


def rich(message_id: str, html: str, subject: str = "rich") -> ReceivedMessage:
    """text/plain + text/html alternatives and a PDF attachment."""
    message = EmailMessage()
    message["From"] = "alice@example.test"
    message["To"] = "bob@example.test"
    message["Subject"] = subject
    message.set_content("the text part\n")
    message.add_alternative(html, subtype="html")
    message.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="report.pdf"
    )
    return _received(message_id, message, "bob@example.test")

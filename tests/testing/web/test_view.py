"""What the web inbox shows of a message: summary, parts and attachments."""

from __future__ import annotations

import json

from mta.testing import ReceivedMessage
from mta.testing.web import view
from tests.testing.web.messages import WHEN, plain, rich


def test_summary_has_the_envelope_and_the_headers() -> None:
    s = view.summary(plain("7", "greetings", to="carol@example.test"))
    assert s["id"] == "7"
    assert s["mail_from"] == "alice@example.test"
    assert s["rcpt_tos"] == ["carol@example.test"]
    assert s["from"] == "Alice <alice@example.test>"
    assert s["to"] == "carol@example.test"
    assert s["subject"] == "greetings"
    assert s["date"] == "Mon, 07 Dec 2026 21:00:00 +0000"
    assert s["received"] == WHEN.isoformat()
    assert s["size"] > 0


def test_detail_finds_the_text_the_html_and_the_attachments() -> None:
    d = view.detail(rich("1", "<p>the <b>HTML</b> part</p>"))
    assert d["text"] == "the text part\n"
    assert d["html"] == "<p>the <b>HTML</b> part</p>\n"
    assert d["attachments"] == [
        {"filename": "report.pdf", "content_type": "application/pdf", "size": 13}
    ]
    names = [name for name, _ in d["headers"]]
    assert names[:3] == ["From", "To", "Subject"]


def test_a_plain_message_has_no_html_and_no_attachments() -> None:
    d = view.detail(plain("1", "x"))
    assert d["text"] == "Hello from x.\n"
    assert d["html"] is None and d["attachments"] == []


def test_undecodable_parts_are_shown_not_raised() -> None:
    raw = (
        b"Subject: broken\r\nContent-Type: text/plain; charset=no-such-charset\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n"
    )
    d = view.detail(ReceivedMessage("1", "", ("bob@example.test",), raw, WHEN))
    assert d["text"] == "caf\ufffd\n"
    assert d["mail_from"] == ""


def test_eight_bit_headers_become_replacement_characters() -> None:
    raw = b"Subject: caf\xe9\r\nX-Name: J\xf6rg\r\n\r\nhi\r\n"
    d = view.detail(ReceivedMessage("1", "", ("bob@example.test",), raw, WHEN))
    assert d["subject"] == "caf\ufffd"
    assert d["headers"] == [["Subject", "caf\ufffd"], ["X-Name", "J\ufffdrg"]]
    json.dumps(d, ensure_ascii=False).encode("utf-8")  # what the API sends

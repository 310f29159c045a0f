"""The second pass: headers added as enqueue.c adds them, quoted-printable for long lines."""

from __future__ import annotations

import binascii
import datetime as dt
import io

import pytest

from mta.enqueue.compose import Content, compose, from_header, needs_quoted_printable
from mta.enqueue.scan import InputScanner, ScanError
from mta.smtp.data import TEXT_LINE_MAX

HOST = "host.example"
DATE = dt.datetime(2025, 1, 5, 12, 34, 56, tzinfo=dt.timezone(dt.timedelta(hours=1), "CET"))
MSGID = "<1.abc@host.example>"


def prepare(data: bytes, full_name: str | None = None) -> tuple[InputScanner, Content]:
    scanner = InputScanner(hostname=HOST, ignore_dots=True, read_recipients=False)
    kept = io.BytesIO()
    for line in data.split(b"\n")[:-1]:
        kept.write(scanner.line(line))
    scanner.finish()
    content = compose(
        scanner,
        kept,
        from_address="alice@host.example",
        full_name=full_name,
        date=DATE,
        message_id=MSGID,
    )
    return scanner, content


def test_adds_from_date_message_id_when_missing() -> None:
    _, content = prepare(b"Subject: s\n\nbody\n", full_name="Alice Liddell")
    assert content.read_all() == (
        b"From: Alice Liddell <alice@host.example>\r\n"
        b"Date: Sun, 5 Jan 2025 12:34:56 +0100 (CET)\r\n"
        b"Message-ID: <1.abc@host.example>\r\n"
        b"Subject: s\r\n\r\nbody\r\n"
    )
    assert content.size == len(content.read_all())


def test_keeps_existing_headers() -> None:
    data = b"From: x@y.example\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <m@y>\n\nb\n"
    _, content = prepare(data)
    assert content.read_all() == data.replace(b"\n", b"\r\n")


def test_no_header_block_gets_a_blank_line() -> None:
    _, content = prepare(b"hello\n")
    text = content.read_all()
    assert text.endswith(b"Message-ID: <1.abc@host.example>\r\n\r\nhello\r\n")
    assert text.startswith(b"From: <alice@host.example>\r\n")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, b"From: <a@b.example>\r\n"),
        ("Al Ice", b"From: Al Ice <a@b.example>\r\n"),
        ('Al "x" (y)', b'From: "Al \\"x\\" (y)" <a@b.example>\r\n'),
        ("A\r\nBcc: evil@x", b'From: "A Bcc: evil@x" <a@b.example>\r\n'),
        ("J\u00f6rg", b"From: =?utf-8?b?SsO2cmc=?= <a@b.example>\r\n"),
    ],
)
def test_from_header(name: str | None, expected: bytes) -> None:
    assert from_header(name, "a@b.example") == expected


def test_long_body_lines_are_quoted_printable() -> None:
    long = b"x" * 2000 + b" \xc3\xa9"
    scanner, content = prepare(b"Subject: s\n\nshort=\n" + long + b"\n")
    assert needs_quoted_printable(scanner)
    assert content.owns_file
    with content:
        text = content.read_all()
    assert content.file is not None and content.file.closed
    head, _, body = text.partition(b"\r\n\r\n")
    assert b"MIME-Version: 1.0\r\n" in head
    assert b"Content-Type: text/plain; charset=unknown-8bit\r\n" in head
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in head
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert binascii.a2b_qp(body) == b"short=\r\n" + long + b"\r\n"
    assert content.size == len(text)


def test_existing_transfer_encoding_is_not_re_encoded() -> None:
    long = b"y" * 1200
    data = b"Content-Transfer-Encoding: 8bit\n\n" + long + b"\n"
    scanner, content = prepare(data)
    assert not needs_quoted_printable(scanner)
    assert content.read_all().endswith(long + b"\r\n")


def test_multipart_is_not_re_encoded() -> None:
    scanner, _ = prepare(b"Content-Type: multipart/mixed; boundary=b\n\n" + b"z" * 1200 + b"\n")
    assert not needs_quoted_printable(scanner)


def test_line_too_long_for_the_server_without_reencoding() -> None:
    data = b"Content-Transfer-Encoding: 8bit\n\n" + b"z" * TEXT_LINE_MAX + b"\n"
    with pytest.raises(ScanError, match="longer"):
        prepare(data)


def test_header_line_too_long_for_the_server() -> None:
    with pytest.raises(ScanError, match="header"):
        prepare(b"Subject: " + b"z" * TEXT_LINE_MAX + b"\n\nb\n")


def test_content_blocks_read_a_region() -> None:
    file = io.BytesIO(b"0123456789")
    content = Content(b"P", file, 2, 5)
    assert list(content.blocks(block=2)) == [b"P", b"23", b"45", b"6"]
    assert content.size == 6
    short = Content(b"", file, 8, 5)
    with pytest.raises(OSError, match="shorter"):
        short.read_all()

"""Tests for mta.dsn: delivery status notifications as OpenSMTPD words them and
RFC 3464 / 3461 / 6522 structure them, parsed back with the ``email`` package."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import re
import tracemalloc
from collections.abc import Iterator
from email.message import EmailMessage, Message
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.dsn import (
    RecipientReport,
    Report,
    ReportType,
    bounce_duration,
    boundary_of,
    compose,
    recipient_report,
    report_for,
    status_text,
    wanted,
)
from mta.dsn.content import returned
from mta.dsn.text import LINE_MAX, fold, free_text, original_recipient, utf8_addr_xtext
from mta.envelope import (
    NULL_ADDRESS,
    Address,
    Body,
    DsnNotify,
    DsnRet,
    Envelope,
    EnvelopeFlag,
    EnvelopeKind,
)
from mta.smtp.params import decode_xtext, encode_xtext
from mta.status import StatusCode
from tests.envelopes import make_envelope

SENDER = Address("alice", "example.com")
BOB = Address("bob", "example.net")
CAROL = Address("carol", "example.org")
ARRIVAL = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 UTC
NOW = ARRIVAL + 4 * 3600
HEADERS = b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: hello\r\n"
ORIGINAL = HEADERS + b"\r\nHello Bob,\r\n\r\nbye.\r\n"


def rcpt(final: Address = BOB, **kw: Any) -> RecipientReport:
    kw.setdefault("status", "5.1.1")
    return RecipientReport(final=final, **kw)


def report(**kw: Any) -> Report:
    values: dict[str, Any] = {
        "type": ReportType.FAILED,
        "smtpname": "mx.example.org",
        "sender": SENDER,
        "recipients": (rcpt(diagnostic="550 5.1.1 <bob@example.net>: no such user"),),
        "arrival": ARRIVAL,
        "now": NOW,
        "message_id_random": 0xDEADBEEF,
        "boundary_random": 42,
        "zone": dt.UTC,
    }
    values.update(kw)
    return Report(**values)


def render(rep: Report, original: bytes | list[bytes] = ORIGINAL) -> bytes:
    chunks = [original] if isinstance(original, bytes) else original
    return b"".join(compose(rep, chunks))


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> list[EmailMessage]:
    return list(msg.iter_parts())  # type: ignore[arg-type]


def status_blocks(msg: EmailMessage) -> list[Message]:
    """The field blocks of the message/delivery-status part: per message, then per recipient."""
    part = parts(msg)[1]
    assert part.get_content_type() == "message/delivery-status"
    payload = part.get_payload()
    assert isinstance(payload, list)
    blocks = [block for block in payload if isinstance(block, Message)]
    assert len(blocks) == len(payload)
    return blocks


def text_part(msg: EmailMessage) -> str:
    content = parts(msg)[0].get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    return data[:-2].split(b"\r\n")


def envelope(**changes: object) -> Envelope:
    """An envelope of message 12345678 from SENDER to BOB, as mx.example.org took it."""
    overrides = {
        "msgid": 0x12345678,
        "smtpname": "mx.example.org",
        "sender": SENDER,
        "ctime": ARRIVAL,
    }
    return make_envelope(str(BOB), **{**overrides, **changes})


# --------------------------------------------------------------------------
# Structure


@pytest.mark.parametrize("kind", list(ReportType))
def test_mime_tree(kind: ReportType) -> None:
    msg = parse(render(report(type=kind, ret=DsnRet.FULL)))
    assert msg.defects == []
    assert msg["Subject"] == f"Delivery status notification: {kind.value}"
    assert msg["From"] == "Mailer Daemon <MAILER-DAEMON@mx.example.org>"
    assert msg["To"] == "alice@example.com"
    assert msg["Message-ID"] == "<00000000deadbeef@mx.example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"].datetime == dt.datetime.fromtimestamp(NOW, dt.UTC)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg.get_boundary() == boundary_of(report())
    types = [p.get_content_type() for p in parts(msg)]
    returned_type = "message/rfc822" if kind is ReportType.FAILED else "text/rfc822-headers"
    assert types == ["text/plain", "message/delivery-status", returned_type]
    first = parts(msg)[0]
    assert first.get_content_charset() == "us-ascii"
    assert first["Content-Description"] == "Notification"
    assert parts(msg)[1]["Content-Description"] == "Delivery Report"
    assert parts(msg)[2]["Content-Description"] == "Message headers"
    for part in msg.walk():
        assert part.defects == []


def test_top_level_header_order_as_opensmtpd() -> None:
    head = render(report()).split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in lines(head + b"\r\n") if line[:1] != b" "]
    assert names == [
        b"Subject",
        b"From",
        b"To",
        b"Date",
        b"Message-ID",
        b"Auto-Submitted",
        b"MIME-Version",
        b"Content-Type",
    ]


def test_failed_text_exactly_as_opensmtpd() -> None:
    rep = report(
        recipients=(
            rcpt(BOB, diagnostic="550 5.1.1 <bob@example.net>: no such user"),
            rcpt(CAROL, status="5.2.2", diagnostic="552 5.2.2 mailbox full"),
        )
    )
    assert text_part(parse(render(rep))) == (
        "    Hi!\n"
        "\n"
        "    This is the MAILER-DAEMON, please DO NOT REPLY to this email.\n"
        "\n"
        "    An error has occurred while attempting to deliver a message for\n"
        "    the following list of recipients:\n"
        "\n"
        "bob@example.net: 550 5.1.1 <bob@example.net>: no such user\n"
        "carol@example.org: 552 5.2.2 mailbox full\n"
        "\n"
        "    Below is a copy of the original message:\n"
    )


def test_delayed_text_exactly_as_opensmtpd() -> None:
    rep = report(
        type=ReportType.DELAYED,
        recipients=(rcpt(status="4.4.1", diagnostic="421 4.4.1 Connection refused"),),
        delay=4 * 3600,
        ttl=4 * 86400,
    )
    assert text_part(parse(render(rep))) == (
        "    Hi!\n"
        "\n"
        "    This is the MAILER-DAEMON, please DO NOT REPLY to this email.\n"
        "\n"
        "    A message is delayed for more than 4 hours for the following\n"
        "    list of recipients:\n"
        "\n"
        "bob@example.net: 421 4.4.1 Connection refused\n"
        "\n"
        "    Please note that this is only a temporary failure report.\n"
        "    The message is kept in the queue for up to 4 days.\n"
        "    You DO NOT NEED to re-send the message to these recipients.\n"
        "\n"
        "    Below is a copy of the original message:\n"
    )


@pytest.mark.parametrize(
    ("kind", "notice"),
    [
        (
            ReportType.DELIVERED,
            "    Your message was successfully delivered to these recipients.\n",
        ),
        (ReportType.RELAYED, "    Your message was relayed to these recipients.\n"),
    ],
)
def test_success_texts_as_opensmtpd(kind: ReportType, notice: str) -> None:
    rep = report(type=kind, recipients=(rcpt(status="2.0.0"),))
    text = text_part(parse(render(rep)))
    assert notice + "\nbob@example.net\n\n    Below is a copy" in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (119, "1 minute"),
        (3599, "59 minutes"),
        (3600, "1 hour"),
        (7200, "2 hours"),
        (86399, "23 hours"),
        (86400, "1 day"),
        (4 * 86400, "4 days"),
        (7 * 86400 + 3600, "7 days"),
        (-5, "0 seconds"),
    ],
)
def test_bounce_duration(seconds: int, text: str) -> None:
    assert bounce_duration(seconds) == text


@pytest.mark.parametrize(
    ("delay", "ttl", "delayed", "kept"),
    [(3600, 86400, "1 hour", "1 day"), (4 * 3600, 5 * 86400, "4 hours", "5 days")],
)
def test_delay_wording_uses_both_durations(delay: int, ttl: int, delayed: str, kept: str) -> None:
    rep = report(type=ReportType.DELAYED, recipients=(rcpt(status="4.0.0"),), delay=delay, ttl=ttl)
    text = text_part(parse(render(rep)))
    assert f"delayed for more than {delayed} for the following" in text
    assert f"kept in the queue for up to {kept}." in text


# --------------------------------------------------------------------------
# The delivery-status part


def test_delivery_status_fields() -> None:
    rep = report(
        recipients=(
            rcpt(
                BOB,
                original="rfc822;Bob@Example.NET",
                diagnostic="550 5.1.1 <bob@example.net>: no such user",
                last_attempt=NOW - 60,
            ),
            rcpt(CAROL, status="5.4.7", diagnostic="Envelope expired"),
        ),
        envid="QQ314159",
    )
    per_message, first, second = status_blocks(parse(render(rep)))
    assert dict(per_message.items()) == {
        "Original-Envelope-Id": "QQ314159",
        "Reporting-MTA": "dns; mx.example.org",
        "Arrival-Date": "Tue, 14 Nov 2023 22:13:20 +0000 (UTC)",
    }
    assert dict(first.items()) == {
        "Original-Recipient": "rfc822;Bob@Example.NET",
        "Final-Recipient": "rfc822; bob@example.net",
        "Action": "failed",
        "Status": "5.1.1",
        "Diagnostic-Code": "smtp; 550 5.1.1 <bob@example.net>: no such user",
        "Last-Attempt-Date": "Wed, 15 Nov 2023 02:12:20 +0000 (UTC)",
    }
    assert dict(second.items()) == {
        "Final-Recipient": "rfc822; carol@example.org",
        "Action": "failed",
        "Status": "5.4.7",
        "Diagnostic-Code": "X-Local; Envelope expired",
    }


def test_delayed_fields() -> None:
    rep = report(
        type=ReportType.DELAYED,
        recipients=(
            rcpt(
                status="4.4.1",
                diagnostic="421 mx.example.net busy",
                last_attempt=NOW,
                will_retry_until=ARRIVAL + 4 * 86400,
            ),
        ),
        delay=4 * 3600,
        ttl=4 * 86400,
    )
    _, block = status_blocks(parse(render(rep)))
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.4.1"
    assert block["Will-Retry-Until"] == "Sat, 18 Nov 2023 22:13:20 +0000 (UTC)"
    assert block["Last-Attempt-Date"] == "Wed, 15 Nov 2023 02:13:20 +0000 (UTC)"


def test_will_retry_until_only_for_delays() -> None:
    rep = report(recipients=(rcpt(will_retry_until=NOW + 10),))
    _, block = status_blocks(parse(render(rep)))
    assert "Will-Retry-Until" not in block


@pytest.mark.parametrize("kind", list(ReportType))
def test_action_per_type(kind: ReportType) -> None:
    _, block = status_blocks(parse(render(report(type=kind))))
    assert block["Action"] == kind.value


def test_no_diagnostic_without_error_line() -> None:
    rep = report(type=ReportType.DELIVERED, recipients=(rcpt(status="2.0.0"),))
    _, block = status_blocks(parse(render(rep)))
    assert "Diagnostic-Code" not in block
    assert "Original-Recipient" not in block


@pytest.mark.parametrize(
    ("line", "shown", "code"),
    [
        ("550 5.1.1 unknown", "550 5.1.1 unknown", "smtp; 550 5.1.1 unknown"),
        ("421-busy", "421-busy", "smtp; 421-busy"),
        ("Loop detected", "Loop detected", "X-Local; Loop detected"),
        ("100 Network error", "Network error", "X-Local; Network error"),  # bounce.c skips 1xx
        ("600 550 refused", "550 refused", "smtp; 550 refused"),  # and 6xx prefixes
        ("127.0.0.1 refused", "127.0.0.1 refused", "X-Local; 127.0.0.1 refused"),
        ("100 ", "100", "X-Local; 100"),
        ("5000 no", "5000 no", "X-Local; 5000 no"),
    ],
)
def test_diagnostic_type(line: str, shown: str, code: str) -> None:
    msg = parse(render(report(recipients=(rcpt(diagnostic=line),))))
    assert f"bob@example.net: {shown}\n" in text_part(msg)
    assert status_blocks(msg)[1]["Diagnostic-Code"] == code


def test_envid_is_xtext_and_round_trips() -> None:
    envid = "id with spaces+plus=equals"
    msg = parse(render(report(envid=envid)))
    value = status_blocks(msg)[0]["Original-Envelope-Id"]
    assert value == "id+20with+20spaces+2Bplus+3Dequals"
    assert decode_xtext(value) == envid


@pytest.mark.parametrize(
    ("orcpt", "field"),
    [
        ("rfc822;Bob@example.net", "rfc822;Bob@example.net"),
        ('rfc822;"b o b"@example.net', 'rfc822;"b o b"@example.net'),
        ("x400;/G=Bob/S=Smith/", "x400;/G=Bob/S=Smith/"),
        ("utf-8;j\\x{E9}r\\x{F4}me@example.net", "utf-8;j\\x{E9}r\\x{F4}me@example.net"),
        ("rfc822;jérôme@example.net", "utf-8;j\\x{E9}r\\x{F4}me@example.net"),
        ("no type here", "unknown;no type here"),
    ],
)
def test_orcpt_round_trip(orcpt: str, field: str) -> None:
    msg = parse(render(report(recipients=(rcpt(original=orcpt),))))
    assert status_blocks(msg)[1]["Original-Recipient"] == field


def test_orcpt_from_the_smtp_parser_round_trips() -> None:
    # What RCPT TO:<...> ORCPT=rfc822;Bob+2Bx@example.net stores comes back as given.
    env = envelope(dsn_orcpt="rfc822;Bob+x@example.net")
    rep = report_for(ReportType.FAILED, [env], now=NOW, message_id_random=1, boundary_random=2)
    msg = parse(render(rep))
    assert status_blocks(msg)[1]["Original-Recipient"] == "rfc822;Bob+x@example.net"


# --------------------------------------------------------------------------
# RET: what comes back


def returned_part(msg: EmailMessage) -> EmailMessage:
    return parts(msg)[2]


def test_failed_full_returns_the_whole_message() -> None:
    msg = parse(render(report(ret=DsnRet.FULL)))
    part = returned_part(msg)
    assert part.get_content_type() == "message/rfc822"
    inner = part.get_content()
    assert isinstance(inner, EmailMessage)
    assert inner["Subject"] == "hello"
    assert inner.get_content().replace("\r\n", "\n") == "Hello Bob,\n\nbye.\n"
    assert inner.as_bytes(policy=email.policy.SMTP) == ORIGINAL


@pytest.mark.parametrize(
    ("kind", "ret"),
    [
        (ReportType.FAILED, DsnRet.HDRS),
        (ReportType.FAILED, DsnRet.NONE),
        (ReportType.DELAYED, DsnRet.FULL),
        (ReportType.DELIVERED, DsnRet.FULL),
        (ReportType.RELAYED, DsnRet.FULL),
    ],
)
def test_headers_only_otherwise(kind: ReportType, ret: DsnRet) -> None:
    data = render(report(type=kind, ret=ret))
    part = returned_part(parse(data))
    assert part.get_content_type() == "text/rfc822-headers"
    assert b"Hello Bob" not in data
    assert b"\r\n\r\n" + HEADERS + b"\r\n--" + boundary_of(report()).encode() + b"--\r\n" in data


def test_returned_headers_exact_bytes() -> None:
    data = render(report())
    boundary = boundary_of(report()).encode()
    tail = data.split(b"Content-Type: text/rfc822-headers\r\n\r\n", 1)[1]
    assert tail == HEADERS + b"\r\n--" + boundary + b"--\r\n"


def test_full_return_exact_bytes() -> None:
    data = render(report(ret=DsnRet.FULL))
    boundary = boundary_of(report()).encode()
    tail = data.split(b"Content-Type: message/rfc822\r\n\r\n", 1)[1]
    assert tail == ORIGINAL + b"\r\n--" + boundary + b"--\r\n"


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (b"", b""),
        (b"\r\nbody only\r\n", b""),
        (b"Subject: no body\r\n", b"Subject: no body\r\n"),
        (b"Subject: no newline", b"Subject: no newline\r\n"),
        (b"Subject: x\n\nbody\n", b"Subject: x\r\n"),
        (b"Subject: x\rX-A: y\r\rbody", b"Subject: x\r\nX-A: y\r\n"),
        (b"Subject: x\r\n folded\r\n\r\n", b"Subject: x\r\n folded\r\n"),
    ],
)
def test_header_block_edges(original: bytes, expected: bytes) -> None:
    assert b"".join(returned([original], boundary=b"B", headers_only=True)) == expected


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (b"", b""),
        (b"a", b"a\r\n"),
        (b"a\nb\rc\r\nd", b"a\r\nb\r\nc\r\nd\r\n"),
        (b"\r", b"\r\n"),
        (b"\n\n", b"\r\n\r\n"),
        (b"a\r\n", b"a\r\n"),
    ],
)
def test_full_content_line_endings(original: bytes, expected: bytes) -> None:
    assert b"".join(returned([original], boundary=b"B", headers_only=False)) == expected


def test_eight_bit_declared() -> None:
    data = render(report(ret=DsnRet.FULL, eight_bit=True), ORIGINAL.replace(b"Bob", b"B\xc3\xb6b"))
    msg = parse(data)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert returned_part(msg)["Content-Transfer-Encoding"] == "8bit"
    # headers only: 8-bit only under SMTPUTF8 (8BITMIME is about the body)
    data = render(report(eight_bit=True))
    assert b"Content-Transfer-Encoding" not in data
    data = render(report(smtputf8=True))
    assert parse(data)["Content-Transfer-Encoding"] == "8bit"
    assert returned_part(parse(data))["Content-Transfer-Encoding"] == "8bit"


# --------------------------------------------------------------------------
# Streaming


def guarded(*chunks: bytes) -> Iterator[bytes]:
    """``chunks``, then a failure: the content must not be read past them."""
    yield from chunks
    raise AssertionError("read past the header block")


@pytest.mark.parametrize(
    "chunks",
    [
        [HEADERS + b"\r\n"],
        [HEADERS + b"\r\nbody that may be read with the headers\r\n"],
        [HEADERS, b"\r\n"],
        [HEADERS[:-1], b"\n\r", b"\n"],
        [b"Subject: x\r\n\r", b"\n"],  # a CR at the end of a chunk waits for the next
    ],
)
def test_headers_only_stops_reading_at_the_blank_line(chunks: list[bytes]) -> None:
    data = b"".join(compose(report(), guarded(*chunks)))
    assert parse(data).defects == []
    assert data.endswith(b"--\r\n")


def test_large_message_headers_only_reads_one_chunk() -> None:
    reads = 0

    def content() -> Iterator[bytes]:
        nonlocal reads
        reads += 1
        yield HEADERS + b"\r\n" + b"x" * 65000 + b"\r\n"
        for _ in range(1000):  # 64 MB that must stay unread
            reads += 1
            yield b"y" * 65534 + b"\r\n"

    data = b"".join(compose(report(), content()))
    assert reads == 1
    assert b"xxxx" not in data


def test_large_message_full_is_streamed() -> None:
    line = b"z" * 76 + b"\r\n"
    block = line * (65536 // len(line))
    count = 40 * 1024 * 1024 // len(block)  # ~40 MB

    def content() -> Iterator[bytes]:
        yield HEADERS + b"\r\n"
        for _ in range(count):
            yield block

    expected = hashlib.sha256(HEADERS + b"\r\n")
    for _ in range(count):
        expected.update(block)
    expected.update(b"\r\n--" + boundary_of(report()).encode() + b"--\r\n")

    tracemalloc.start()
    try:
        chunks = compose(report(ret=DsnRet.FULL), content())
        head = next(chunks)  # the generated text comes first, in one piece
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert head.endswith(b"Content-Type: message/rfc822\r\n\r\n")
    assert digest.hexdigest() == expected.hexdigest()
    assert peak < 2 * 1024 * 1024, peak


def reference(original: bytes, boundary: bytes, headers_only: bool) -> bytes:
    """What :func:`returned` does, on the whole content at once."""
    text = re.sub(rb"\r\n|\r|\n", b"\r\n", original)
    if headers_only:
        end = (b"\r\n" + text).find(b"\r\n\r\n")
        if end >= 0:
            text = text[:end]
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    return (b"\r\n" + text).replace(b"\r\n--" + boundary, b"\r\n --" + boundary)[2:]


@settings(max_examples=300, deadline=None)
@given(
    original=st.lists(
        st.sampled_from([b"a", b"Subject: x", b"\r", b"\n", b"\r\n", b" y", b"--", b"-", b"Bd"]),
        max_size=40,
    ).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=10),
    headers_only=st.booleans(),
)
def test_returned_content_whatever_the_chunks(
    original: bytes, cuts: list[int], headers_only: bool
) -> None:
    points = sorted({c for c in cuts if c < len(original)})
    chunks = [original[a:b] for a, b in zip([0, *points], [*points, len(original)], strict=True)]
    got = b"".join(returned(chunks, boundary=b"Bd", headers_only=headers_only))
    assert got == reference(original, b"Bd", headers_only)
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", got) is None
    assert not got.startswith(b"--Bd")
    assert b"\r\n--Bd" not in got


# --------------------------------------------------------------------------
# Safety: line endings, line lengths, injection


def assert_clean(data: bytes) -> None:
    """CRLF only, and no line over 998 octets."""
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None
    for line in lines(data):
        assert len(line) <= LINE_MAX


def test_crlf_everywhere_even_from_bare_lf_content() -> None:
    original = b"From: a@example.com\nSubject: lf\n\nbody\rmore\r\n"
    for ret in (DsnRet.FULL, DsnRet.HDRS):
        data = render(report(ret=ret), [original[:7], original[7:20], original[20:]])
        assert_clean(data)
        assert parse(data).defects == []


def test_long_error_lines_are_folded() -> None:
    word = "x" * 5000
    text = "550 5.0.0 " + " ".join(["lorem"] * 400) + " " + word
    for kind in ReportType:
        data = render(
            report(
                type=kind,
                recipients=(
                    rcpt(status="5.0.0" if kind is ReportType.FAILED else "2.0.0", diagnostic=text),
                ),
            )
        )
        assert_clean(data)
        if kind is ReportType.FAILED:
            code = status_blocks(parse(data))[1]["Diagnostic-Code"]
            # unfolded, the text is back, with a space where the long word was cut
            assert code.replace(" ", "") == ("smtp; " + text).replace(" ", "")
            assert code.startswith("smtp; 550 5.0.0 lorem lorem")
    # the folding keeps structured lines short where words allow
    data = render(report(recipients=(rcpt(diagnostic="550 " + " ".join(["word"] * 100)),)))
    part = data.split(b"message/delivery-status\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    assert max(len(line) for line in part.split(b"\r\n")) <= 78


def test_long_envid_orcpt_and_address() -> None:
    rep = report(
        envid="e" * 3000,
        recipients=(rcpt(Address("b" * 1500, "example.net"), original="rfc822;" + "o" * 3000),),
    )
    data = render(rep)
    assert_clean(data)
    msg = parse(data)
    assert status_blocks(msg)[0]["Original-Envelope-Id"].replace(" ", "") == "e" * 3000


INJECTIONS = [
    "550 no\r\nX-Injected: yes",
    "550 no\nX-Injected: yes",
    "550 no\rX-Injected: yes",
    "550 no\r\n\r\nX-Injected: yes",
    "550 no\r\n--{boundary}\r\nContent-Type: text/html\r\n\r\n<b>x</b>",
    "550 no\x00\x1b[31m\x7f\x85",
]


@pytest.mark.parametrize("attack", INJECTIONS)
def test_error_line_cannot_inject(attack: str) -> None:
    attack = attack.replace("{boundary}", boundary_of(report()))
    data = render(report(recipients=(rcpt(diagnostic=attack),)))
    assert_clean(data)
    assert data.isascii()
    msg = parse(data)
    assert len(parts(msg)) == 3
    assert "X-Injected" not in msg
    blocks = status_blocks(msg)
    assert len(blocks) == 2
    assert all("X-Injected" not in block for block in blocks)
    assert "Content-Type" not in blocks[1]
    assert "\n" not in blocks[1]["Diagnostic-Code"]


def test_addresses_and_dsn_values_cannot_inject() -> None:
    evil = "x\r\nX-Injected: yes\r\n"
    rep = report(
        sender=Address("alice" + evil, "example.com"),
        recipients=(rcpt(Address("bob" + evil, "example.net"), original="rfc822;o" + evil),),
        envid="id" + evil,
        smtpname="mx.example.org\r\nX-Injected: yes",
    )
    data = render(rep)
    assert_clean(data)
    assert data.isascii()
    msg = parse(data)
    assert "X-Injected" not in msg
    assert len(parts(msg)) == 3
    assert all("X-Injected" not in block for block in status_blocks(msg))
    assert "\n" not in msg["To"]
    assert msg["From"].count("@") == 1


def test_original_content_cannot_end_the_notification() -> None:
    boundary = boundary_of(report()).encode()
    original = (
        b"Subject: x\r\n--"
        + boundary
        + b"\r\n\r\n--"
        + boundary
        + b"\r\nContent-Type: text/html\r\n"
        b"\r\n--" + boundary + b"--\r\nafter\r\n"
    )
    for ret in (DsnRet.FULL, DsnRet.HDRS):
        data = render(report(ret=ret), [original[:5], original[5:]])
        msg = parse(data)
        assert len(parts(msg)) == 3
        assert data.count(b"\r\n--" + boundary + b"--\r\n") == 1
        assert data.endswith(b"\r\n--" + boundary + b"--\r\n")
    # the lines that would have been delimiters come back one space in
    data = render(report(ret=DsnRet.FULL), [original])
    assert data.split(b"Content-Type: message/rfc822\r\n\r\n", 1)[1] == (
        original.replace(b"\r\n--" + boundary, b"\r\n --" + boundary)
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )


def test_absurdly_long_sender_stays_within_line_limits() -> None:
    data = render(report(sender=Address("a" * 2000, "example.com")))
    assert_clean(data)
    head = data.split(b"\r\n\r\n", 1)[0]
    to = head.split(b"\r\nTo: ", 1)[1].split(b"\r\nDate: ", 1)[0]
    assert to.replace(b"\r\n ", b"") == b"a" * 2000 + b"@example.com"


def test_boundary_is_short_and_plain() -> None:
    rep = report(smtpname="a" * 300 + ".example.org", boundary_random=2**64 - 1)
    boundary = boundary_of(rep)
    assert len(boundary) <= 70
    assert re.fullmatch(r"[0-9A-Za-z'()+_,./:=?-]+", boundary)
    assert boundary.startswith("18446744073709551615/")
    assert_clean(render(rep))


# --------------------------------------------------------------------------
# SMTPUTF8 addresses


def test_non_ascii_addresses() -> None:
    jerome = Address("jérôme", "exämple.net")
    rep = report(
        sender=Address("andré", "example.com"),
        recipients=(rcpt(jerome, diagnostic="550 unknown"),),
        smtputf8=True,
    )
    data = render(rep)
    assert_clean(data)
    head, _, body = data.partition(b"\r\n\r\n")
    assert "To: andré@example.com".encode() in head
    assert body.isascii()  # generated parts stay ASCII (ORIGINAL is ASCII)
    msg = parse(data)
    assert msg["To"] == "andré@example.com"
    block = status_blocks(msg)[1]
    assert block["Final-Recipient"] == "utf-8; j\\x{E9}r\\x{F4}me@ex\\x{E4}mple.net"
    assert "j\\x{E9}r\\x{F4}me@ex\\x{E4}mple.net: 550 unknown\n" in text_part(msg)


def test_utf8_addr_xtext() -> None:
    assert utf8_addr_xtext("a+b=c\\d e@x") == "a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}e@x"
    assert utf8_addr_xtext("日本@例") == "\\x{65E5}\\x{672C}@\\x{4F8B}"
    assert utf8_addr_xtext("\x01") == "\\x{01}"


def test_text_helpers() -> None:
    assert encode_xtext("a b+c=d\x7fé") == "a+20b+2Bc+3Dd+7F+C3+A9"
    assert free_text("  a\r\n\tb  \x00 é ") == "a b \\x{00} \\x{E9}"
    assert original_recipient("RFC822;bob@x") == "RFC822;bob@x"
    assert fold("Field: " + "w " * 10) == ["Field: " + "w " * 9 + "w "]
    assert fold("A: " + "x" * 2000) == ["A: " + "x" * 995, " " + "x" * 997, " " + "x" * 8]


# --------------------------------------------------------------------------
# Validation


def test_never_to_the_null_sender() -> None:
    with pytest.raises(ValueError, match="never sent to <>"):
        report(sender=NULL_ADDRESS)


def test_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        report(recipients=())


@pytest.mark.parametrize(
    "status", ["", "5.1", "3.0.0", "5.1.1 ", "5.1.1\r\nX: y", "5.1000.1", "5.1.1000", "5.1.\u0663"]
)
def test_bad_status(status: str) -> None:
    with pytest.raises(ValueError, match="enhanced status"):
        rcpt(status=status)


@pytest.mark.parametrize("field", ["message_id_random", "boundary_random"])
@pytest.mark.parametrize("value", [-1, 2**64])
def test_random_values_are_64_bit(field: str, value: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        report(**{field: value})


# --------------------------------------------------------------------------
# Whether to notify

N = DsnNotify
_ALL = N.SUCCESS | N.FAILURE | N.DELAY

# notify: (failed, delayed, success types)
WANTED = [
    (N.NONE, True, True, False),
    (N.SUCCESS, False, False, True),
    (N.FAILURE, True, False, False),
    (N.DELAY, False, True, False),
    (N.SUCCESS | N.FAILURE, True, False, True),
    (N.SUCCESS | N.DELAY, False, True, True),
    (N.FAILURE | N.DELAY, True, True, False),
    (_ALL, True, True, True),
    (N.NEVER, False, False, False),
]


@pytest.mark.parametrize(("notify", "failed", "delayed", "success"), WANTED)
def test_wanted_truth_table(notify: DsnNotify, failed: bool, delayed: bool, success: bool) -> None:
    env = envelope(dsn_notify=notify)
    assert wanted(env, ReportType.FAILED) is failed
    assert wanted(env, ReportType.DELAYED) is delayed
    for kind in (ReportType.DELIVERED, ReportType.RELAYED, ReportType.EXPANDED):
        assert wanted(env, kind) is success


@pytest.mark.parametrize(
    "env",
    [
        envelope(sender=NULL_ADDRESS),
        envelope(kind=EnvelopeKind.BOUNCE),
        envelope(flags=EnvelopeFlag.BOUNCE),
        envelope(flags=EnvelopeFlag.BOUNCE | EnvelopeFlag.AUTHENTICATED),
    ],
    ids=["null-sender", "bounce-envelope", "bounce-message", "bounce-message-auth"],
)
@pytest.mark.parametrize("notify", [N.NONE, _ALL])
def test_never_wanted(env: Envelope, notify: DsnNotify) -> None:
    env = attrs.evolve(env, dsn_notify=notify)
    for kind in ReportType:
        assert not wanted(env, kind)


def test_other_flags_do_not_matter() -> None:
    env = envelope(flags=EnvelopeFlag.AUTHENTICATED | EnvelopeFlag.INTERNAL)
    assert wanted(env, ReportType.FAILED)


# --------------------------------------------------------------------------
# Reports from envelopes


@pytest.mark.parametrize(
    ("esc", "kind", "status"),
    [
        ("5.1.1", ReportType.FAILED, "5.1.1"),
        ("5.4.7", ReportType.FAILED, "5.4.7"),
        ("4.4.6", ReportType.FAILED, "4.4.6"),  # OpenSMTPD's loop: a temporary class, failed
        (None, ReportType.FAILED, "5.0.0"),
        ("2.0.0", ReportType.FAILED, "5.0.0"),
        ("4.4.1", ReportType.DELAYED, "4.4.1"),
        ("5.1.1", ReportType.DELAYED, "4.1.1"),
        (None, ReportType.DELAYED, "4.0.0"),
        ("2.0.0", ReportType.DELIVERED, "2.0.0"),
        (None, ReportType.DELIVERED, "2.0.0"),
        ("4.3.0", ReportType.RELAYED, "2.0.0"),
        ("2.1.5", ReportType.EXPANDED, "2.1.5"),
        ("5.1.10", ReportType.FAILED, "5.1.10"),  # RFC 7505 Null MX
        ("5.7.350", ReportType.FAILED, "5.7.350"),
        ("4.7.28", ReportType.DELAYED, "4.7.28"),
        ("5.999.999", ReportType.DELAYED, "4.999.999"),
        ("2.6.10", ReportType.DELIVERED, "2.6.10"),
    ],
)
def test_status_text(esc: str | None, kind: ReportType, status: str) -> None:
    code = None if esc is None else StatusCode.parse(esc)
    assert esc is None or code is not None
    assert status_text(code, kind) == status


def test_recipient_report_from_envelope() -> None:
    env = envelope(
        rcpt=Address("Bob", "example.net"),
        dest=Address("bob.smith", "mail.example.net"),
        dsn_orcpt="rfc822;Bob@example.net",
        errorline="421 4.4.1 mx busy",
        esc=StatusCode(4, 4, 1),
        last_try=NOW - 100,
    )
    got = recipient_report(env, ReportType.DELAYED, ttl=4 * 86400)
    assert got == RecipientReport(
        final=Address("bob.smith", "mail.example.net"),
        status="4.4.1",
        original="rfc822;Bob@example.net",
        diagnostic="421 4.4.1 mx busy",
        last_attempt=NOW - 100,
        will_retry_until=ARRIVAL + 4 * 86400,
    )
    failed = recipient_report(env, ReportType.FAILED, ttl=4 * 86400)
    assert failed.will_retry_until is None
    assert failed.status == "4.4.1"


def test_success_does_not_repeat_an_old_error() -> None:
    env = envelope(errorline="421 earlier failure", esc=StatusCode(4, 2, 1), last_try=0)
    got = recipient_report(env, ReportType.DELIVERED)
    assert got.diagnostic == ""
    assert got.last_attempt is None
    assert recipient_report(env, ReportType.DELIVERED, diagnostic="250 ok").diagnostic == "250 ok"


def test_report_for_envelopes() -> None:
    first = envelope(
        id=1,
        dsn_envid="ENV1",
        dsn_ret=DsnRet.FULL,
        body=Body.EIGHTBITMIME,
        errorline="550 no",
        esc=StatusCode(5, 1, 1),
    )
    second = attrs.evolve(
        first, id=2, rcpt=CAROL, dest=CAROL, errorline="552 full", esc=StatusCode(5, 2, 2)
    )
    rep = report_for(
        ReportType.FAILED, [first, second], now=NOW, message_id_random=7, boundary_random=8
    )
    assert rep.sender == SENDER
    assert rep.smtpname == "mx.example.org"
    assert rep.envid == "ENV1"
    assert rep.ret is DsnRet.FULL
    assert rep.arrival == ARRIVAL
    assert rep.eight_bit and not rep.smtputf8
    assert [r.final for r in rep.recipients] == [BOB, CAROL]
    assert [r.status for r in rep.recipients] == ["5.1.1", "5.2.2"]
    msg = parse(render(rep))
    assert [b["Final-Recipient"] for b in status_blocks(msg)[1:]] == [
        "rfc822; bob@example.net",
        "rfc822; carol@example.org",
    ]
    assert returned_part(msg).get_content_type() == "message/rfc822"


def test_codes_above_9_reach_the_status_field_unchanged() -> None:
    """Null MX (RFC 7505: 5.1.10) and a remote's 5.7.350, from the envelopes to
    the bytes of the notification: ``Status:`` and the diagnostic keep them."""
    null_mx = envelope(id=1, errorline="Domain does not accept mail", esc=StatusCode(5, 1, 10))
    remote = envelope(
        id=2,
        rcpt=CAROL,
        dest=CAROL,
        errorline="550 5.7.350 Remote server returned message detected as spam",
        esc=StatusCode(5, 7, 350),
    )
    rep = report_for(
        ReportType.FAILED, [null_mx, remote], now=NOW, message_id_random=7, boundary_random=8
    )
    data = render(rep)
    assert b"\r\nStatus: 5.1.10\r\n" in data
    assert b"\r\nStatus: 5.7.350\r\n" in data
    _, first, second = status_blocks(parse(data))
    assert (first["Status"], first["Diagnostic-Code"]) == (
        "5.1.10",
        "X-Local; Domain does not accept mail",
    )
    assert (second["Status"], second["Diagnostic-Code"]) == (
        "5.7.350",
        "smtp; 550 5.7.350 Remote server returned message detected as spam",
    )
    text = data.decode()
    assert "carol@example.org: 550 5.7.350 Remote server returned" in text


def test_report_for_refuses_mixed_messages() -> None:
    with pytest.raises(ValueError, match="one message"):
        report_for(
            ReportType.FAILED,
            [envelope(), envelope(sender=CAROL)],
            now=NOW,
            message_id_random=1,
            boundary_random=2,
        )
    with pytest.raises(ValueError, match="no envelope"):
        report_for(ReportType.FAILED, [], now=NOW, message_id_random=1, boundary_random=2)


def test_dates_in_the_given_zone() -> None:
    zone = dt.timezone(dt.timedelta(hours=2), "EET")
    data = render(report(zone=zone))
    assert b"\r\nDate: Wed, 15 Nov 2023 04:13:20 +0200 (EET)\r\n" in data
    assert b"\r\nArrival-Date: Wed, 15 Nov 2023 00:13:20 +0200 (EET)\r\n" in data


def test_local_zone_by_default() -> None:
    msg = parse(render(report(zone=None)))
    assert msg["Date"].datetime.timestamp() == NOW

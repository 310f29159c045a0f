"""Tests for mta.smtp.message: the content written to the spool, and the verdict."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import tracemalloc
from collections.abc import Iterable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.envelope import NULL_ADDRESS, Address
from mta.reply import Reply
from mta.smtp.message import (
    MAX_HEADER,
    MAX_HEADER_NAME,
    MAX_HOPS,
    MessageRewriter,
    RewriteOptions,
    Verdict,
)

RECEIVED = b"Received: from a (b [192.0.2.1])\r\n\tby mx (mta) with ESMTP id 00000001;\r\n\tX\r\n"
DATE = dt.datetime(2025, 1, 5, 12, 34, 56, tzinfo=dt.UTC)
DATE_LINE = b"Date: Sun, 5 Jan 2025 12:34:56 +0000 (UTC)\r\n"
MSGID_LINE = b"Message-ID: <00000000deadbeef@mx.example.org>\r\n"
OPTIONS = RewriteOptions(received=RECEIVED, hostname="mx.example.org")
LOCAL = attrs.evolve(OPTIONS, add_missing=True, date=DATE, message_id_random=0xDEADBEEF)


def run(
    content: bytes | Iterable[bytes], options: RewriteOptions = OPTIONS
) -> tuple[bytes, Verdict]:
    rewriter = MessageRewriter(options)
    chunks = [content] if isinstance(content, bytes) else list(content)
    out = b"".join(rewriter.feed(chunk) for chunk in chunks) + rewriter.finish()
    return out, rewriter.verdict


def ok(content: bytes, options: RewriteOptions = OPTIONS) -> bytes:
    out, verdict = run(content, options)
    assert verdict is Verdict.OK
    assert out.startswith(options.received)
    return out[len(options.received) :]


SIMPLE = b"From: a@b.org\r\nTo: c@d.org\r\nSubject: hi\r\n\r\nbody line\r\n.dot kept\r\n"


def test_plain_message_is_copied_after_received() -> None:
    assert ok(SIMPLE) == SIMPLE


def test_junk_adds_x_spam_first() -> None:
    out, verdict = run(SIMPLE, attrs.evolve(OPTIONS, junk=True))
    assert verdict is Verdict.OK
    assert out == b"X-Spam: Yes\r\n" + RECEIVED + SIMPLE


def test_body_is_never_touched() -> None:
    body = b"Bcc: not a header\r\nTo: bob\r\nReceived: x\r\n \r\n\r\n"
    assert ok(b"Subject: s\r\n\r\n" + body) == b"Subject: s\r\n\r\n" + body


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"Bcc: x@y.org\r\nSubject: s\r\n\r\nb\r\n", b"Subject: s\r\n\r\nb\r\n"),
        (
            b"Subject: s\r\nBCC: x@y.org,\r\n z@y.org\r\n\tw\r\n\r\nb\r\n",
            b"Subject: s\r\n\r\nb\r\n",
        ),
        (b"bcc:\r\nSubject: s\r\n\r\n", b"Subject: s\r\n\r\n"),
        (b"Subject: s\r\nBcc: x\r\n", b"Subject: s\r\n"),  # headers only, Bcc last
        (b"Bcc : x\r\n\r\n", b"Bcc : x\r\n\r\n"),  # name is "Bcc ", not Bcc
        (b"X-Bcc: x\r\n\r\n", b"X-Bcc: x\r\n\r\n"),
    ],
)
def test_bcc_removed(content: bytes, expected: bytes) -> None:
    assert ok(content) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"To: bob\r\n\r\n", b"To: bob@mx.example.org\r\n\r\n"),
        (b"cc: Bob <bob>, al@x.org\r\n\r\n", b"cc: Bob <bob@mx.example.org>, al@x.org\r\n\r\n"),
        (b"FROM:bob\r\n\r\n", b"FROM:bob@mx.example.org\r\n\r\n"),
        (
            b"To: a,\r\n b,\r\n\tc\r\nSubject: s\r\n\r\nx\r\n",
            b"To: a@mx.example.org,\r\n b@mx.example.org,\r\n\tc@mx.example.org\r\n"
            b"Subject: s\r\n\r\nx\r\n",
        ),
        (b"To: John Smith\r\n\r\n", b"To: John Smith\r\n\r\n"),  # unparseable: untouched
        (b"Reply-To: bob\r\nSender: bob\r\n\r\n", b"Reply-To: bob\r\nSender: bob\r\n\r\n"),
        (b"To : bob\r\n\r\n", b"To : bob\r\n\r\n"),  # name is "To "
        (b"To: bob\r\n", b"To: bob@mx.example.org\r\n"),  # headers only, To last
    ],
)
def test_addresses_qualified(content: bytes, expected: bytes) -> None:
    assert ok(content) == expected


def test_masquerade_rewrites_from_only() -> None:
    options = attrs.evolve(OPTIONS, masquerade=Address("sender", "x.org"))
    content = b"From: Bob <bob@laptop.lan>\r\nTo: carol\r\nCc: Dan <dan@d.org>\r\n\r\nhi\r\n"
    assert ok(content, options) == (
        b"From: Bob <sender@x.org>\r\nTo: carol@mx.example.org\r\nCc: Dan <dan@d.org>\r\n\r\nhi\r\n"
    )


def test_masquerade_with_null_sender_only_qualifies() -> None:
    options = attrs.evolve(OPTIONS, masquerade=NULL_ADDRESS)
    assert ok(b"From: bob\r\n\r\n", options) == b"From: bob@mx.example.org\r\n\r\n"


def test_add_missing_date_and_message_id() -> None:
    assert ok(b"Subject: s\r\n\r\nbody\r\n", LOCAL) == (
        b"Subject: s\r\n" + DATE_LINE + MSGID_LINE + b"\r\nbody\r\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"DATE: x\r\n\r\n", b"DATE: x\r\n" + MSGID_LINE + b"\r\n"),
        (b"message-id: <a@b>\r\n\r\n", b"message-id: <a@b>\r\n" + DATE_LINE + b"\r\n"),
        (b"Date: x\r\nMessage-Id: <a@b>\r\n\r\n", b"Date: x\r\nMessage-Id: <a@b>\r\n\r\n"),
        (b"", DATE_LINE + MSGID_LINE),  # empty message
        (b"Subject: s\r\n", b"Subject: s\r\n" + DATE_LINE + MSGID_LINE),  # headers only
        (b"\r\nbody\r\n", DATE_LINE + MSGID_LINE + b"\r\nbody\r\n"),  # no headers at all
        (
            b"To: bob,\r\n x\r\n\r\n",
            b"To: bob@mx.example.org,\r\n x@mx.example.org\r\n" + DATE_LINE + MSGID_LINE + b"\r\n",
        ),
    ],
)
def test_add_missing_cases(content: bytes, expected: bytes) -> None:
    assert ok(content, LOCAL) == expected


def test_nothing_added_when_not_local() -> None:
    assert ok(b"Subject: s\r\n\r\n") == b"Subject: s\r\n\r\n"
    assert ok(b"") == b""


def test_add_missing_needs_a_date() -> None:
    with pytest.raises(ValueError):
        RewriteOptions(received=RECEIVED, hostname="h", add_missing=True)
    with pytest.raises(ValueError):
        RewriteOptions(
            received=RECEIVED, hostname="h", add_missing=True, date=dt.datetime(2025, 1, 1)
        )


@pytest.mark.parametrize("value", [-1, 1 << 64])
def test_message_id_random_is_64_bit(value: int) -> None:
    with pytest.raises(ValueError):
        attrs.evolve(LOCAL, message_id_random=value)


def received_lines(count: int, name: bytes = b"Received") -> bytes:
    return b"".join(name + b": from hop%d\r\n\tby x;\r\n\tdate\r\n" % i for i in range(count))


def test_99_received_headers_pass() -> None:
    content = received_lines(MAX_HOPS - 1) + b"Subject: s\r\n\r\nbody\r\n"
    rewriter = MessageRewriter(OPTIONS)
    out = rewriter.feed(content) + rewriter.finish()
    assert rewriter.verdict is Verdict.OK
    assert rewriter.received_count == 99
    assert out == RECEIVED + content


@pytest.mark.parametrize("name", [b"Received", b"RECEIVED", b"received"])
def test_100_received_headers_are_a_loop(name: bytes) -> None:
    out, verdict = run(received_lines(MAX_HOPS, name) + b"\r\nbody\r\n")
    assert verdict is Verdict.LOOP
    assert out == b""


def test_loop_across_chunks_stops_output() -> None:
    rewriter = MessageRewriter(OPTIONS)
    first = rewriter.feed(received_lines(50))
    assert first.startswith(RECEIVED)
    assert rewriter.feed(received_lines(50)) == b""
    assert rewriter.verdict is Verdict.LOOP
    assert rewriter.feed(b"\r\nbody\r\n") == b""
    assert rewriter.finish() == b""
    assert rewriter.verdict is Verdict.LOOP


def test_received_in_body_not_counted() -> None:
    content = b"Subject: s\r\n\r\n" + received_lines(200)
    assert ok(content) == content


@pytest.mark.parametrize(
    "content",
    [
        b"Subject: s\r\nbody without separator\r\n",
        b"just some text\r\n\r\n",
        b" starts with a space: x\r\n\r\n",
        b"\tstarts with a tab\r\n\r\n",
        b"no colon here\r\n",
        b"Subject: s\r\nTo: bob\r\nnot a header\r\n\r\n",
        b"Bcc: x\r\nnot a header\r\n",
        b"Subject: s\r\nx\r\n\r\n",  # a colon-less line ends the headers
    ],
)
def test_not_compliant(content: bytes) -> None:
    out, verdict = run(content)
    assert verdict is Verdict.NOT_COMPLIANT
    assert out == b""


def test_long_header_name() -> None:
    fine = b"X" * MAX_HEADER_NAME + b": v\r\n\r\n"
    assert ok(fine) == fine
    out, verdict = run(b"X" * (MAX_HEADER_NAME + 1) + b": v\r\n\r\n")
    assert verdict is Verdict.NOT_COMPLIANT
    assert out == b""


def test_header_with_empty_name_is_a_header() -> None:
    assert ok(b": odd\r\n\r\n") == b": odd\r\n\r\n"


def test_verdict_replies() -> None:
    assert Verdict.OK.reply is None
    loop = Verdict.LOOP.reply
    assert loop == Reply.of(500, "5.4.6", "Routing loop detected: Loop detected")
    assert (
        loop is not None and loop.encode() == b"500 5.4.6 Routing loop detected: Loop detected\r\n"
    )
    refused = Verdict.NOT_COMPLIANT.reply
    assert refused is not None
    assert refused.encode() == (
        b"550 5.7.1 Delivery not authorized, message refused: Message is not RFC 2822 compliant\r\n"
    )


def test_feed_after_finish_is_an_error() -> None:
    rewriter = MessageRewriter(OPTIONS)
    rewriter.feed(b"Subject: s\r\n\r\n")
    rewriter.finish()
    with pytest.raises(RuntimeError):
        rewriter.feed(b"x\r\n")
    with pytest.raises(RuntimeError):
        rewriter.finish()


def test_finish_without_feed() -> None:
    rewriter = MessageRewriter(LOCAL)
    assert rewriter.finish() == RECEIVED + DATE_LINE + MSGID_LINE
    assert rewriter.verdict is Verdict.OK


def test_address_header_continued_in_next_chunk() -> None:
    rewriter = MessageRewriter(OPTIONS)
    first = rewriter.feed(b"Subject: s\r\nTo: a,\r\n")
    assert first == RECEIVED + b"Subject: s\r\n"  # To: held back until its end
    second = rewriter.feed(b" b\r\nX: y\r\n\r\nbody\r\n")
    assert second == b"To: a@mx.example.org,\r\n b@mx.example.org\r\nX: y\r\n\r\nbody\r\n"


def test_body_chunks_are_returned_as_is() -> None:
    rewriter = MessageRewriter(OPTIONS)
    rewriter.feed(b"Subject: s\r\n\r\n")
    chunk = b"line\r\n" * 100
    assert rewriter.feed(chunk) is chunk


def test_oversized_address_header_passes_unchanged() -> None:
    line = b" bob,\r\n"
    count = MAX_HEADER // len(line) + 10
    header = b"To: first,\r\n" + line * count + b" last\r\n"
    content = header + b"Subject: s\r\n\r\nbody\r\n"
    rewriter = MessageRewriter(OPTIONS)
    pieces = [rewriter.feed(b"To: first,\r\n")]
    for _ in range(count):
        pieces.append(rewriter.feed(line))
    pieces.append(rewriter.feed(b" last\r\nSubject: s\r\n\r\nbody\r\n"))
    pieces.append(rewriter.finish())
    assert rewriter.verdict is Verdict.OK
    assert b"".join(pieces) == RECEIVED + content


# -- streaming ----------------------------------------------------------------

STREAM_SAMPLE = (
    b"Received: from x\r\n\tby y;\r\n\td\r\n"
    b"From: Bob <bob>\r\n"
    b'To: a,\r\n b (c, d),\r\n\t"q x" <q>\r\n'
    b"Bcc: hidden\r\n more\r\n"
    b"Subject: a subject\r\n continued\r\n"
    b"Cc: friends: a, b@x.org;\r\n"
    b"\r\n"
    b"Body line one\r\n\r\nTo: not a header\r\n"
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def line_ends(data: bytes) -> list[int]:
    ends = []
    pos = data.find(b"\r\n")
    while pos >= 0:
        ends.append(pos + 2)
        pos = data.find(b"\r\n", pos + 2)
    return ends


@pytest.mark.parametrize(
    "options", [OPTIONS, LOCAL, attrs.evolve(LOCAL, masquerade=Address("s", "x.org"))]
)
@given(data=st.data())
@settings(max_examples=200)
def test_same_output_whatever_the_line_split(options: RewriteOptions, data: st.DataObject) -> None:
    whole, verdict = run(STREAM_SAMPLE, options)
    assert verdict is Verdict.OK
    ends = line_ends(STREAM_SAMPLE)
    cuts = data.draw(st.lists(st.sampled_from(ends)))
    out, verdict = run(split_at(STREAM_SAMPLE, cuts), options)
    assert verdict is Verdict.OK
    assert out == whole


@given(data=st.data())
@settings(max_examples=200)
def test_same_output_whatever_the_byte_split(data: st.DataObject) -> None:
    whole, _ = run(STREAM_SAMPLE, LOCAL)
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(STREAM_SAMPLE) - 1)))
    out, verdict = run(split_at(STREAM_SAMPLE, cuts), LOCAL)
    assert verdict is Verdict.OK
    assert out == whole


HEADER_LINE = st.one_of(
    st.sampled_from(
        [
            b"To: bob\r\n",
            b"Cc: a, b@c.d\r\n",
            b"From: X <x>\r\n",
            b"Bcc: z\r\n",
            b"Received: r\r\n",
            b"Date: d\r\n",
            b"Message-ID: <m@x>\r\n",
            b" continued\r\n",
            b"\tcontinued, more\r\n",
        ]
    ),
    st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"),
)


@given(
    lines=st.lists(HEADER_LINE, max_size=12),
    body=st.lists(st.binary(max_size=30), max_size=5),
    data=st.data(),
)
@settings(max_examples=300)
def test_random_messages_split_anywhere_between_lines(
    lines: list[bytes], body: list[bytes], data: st.DataObject
) -> None:
    content = b"".join(lines) + b"".join(
        b.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n" for b in body
    )
    whole, verdict = run(content, LOCAL)
    cuts = data.draw(st.lists(st.sampled_from(line_ends(content) or [0])))
    split, split_verdict = run(split_at(content, cuts), LOCAL)
    assert split_verdict is verdict
    if verdict is Verdict.OK:
        assert split == whole
        assert whole.startswith(RECEIVED)
        assert b"\nBcc:" not in whole.split(b"\r\n\r\n", 1)[0]


def test_fifty_megabyte_body_streams_in_bounded_memory() -> None:
    chunk = bytes(range(256)) * 256
    chunk = chunk.replace(b"\r", b"").replace(b"\n", b"")[: 64 * 1024 - 2] + b"\r\n"
    chunks = 50 * 1024 * 1024 // len(chunk)
    head = b"From: bob\r\nSubject: big\r\n\r\n"
    expected = hashlib.sha256()
    expected.update(RECEIVED + b"From: bob@mx.example.org\r\nSubject: big\r\n\r\n")
    for _ in range(chunks):
        expected.update(chunk)
    got = hashlib.sha256()
    rewriter = MessageRewriter(OPTIONS)
    tracemalloc.start()
    try:
        got.update(rewriter.feed(head))
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(chunks):
            got.update(rewriter.feed(chunk))
        got.update(rewriter.finish())
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rewriter.verdict is Verdict.OK
    assert got.hexdigest() == expected.hexdigest()
    assert peak - baseline < 256 * 1024
    assert current - baseline < 64 * 1024


def test_last_line_without_crlf_is_taken_as_a_line() -> None:
    rewriter = MessageRewriter(LOCAL)
    assert rewriter.feed(b"Subject: s\r\nTo: bo") == RECEIVED + b"Subject: s\r\n"
    assert rewriter.feed(b"b") == b""
    assert rewriter.finish() == b"To: bob@mx.example.org\r\n" + DATE_LINE + MSGID_LINE
    assert rewriter.verdict is Verdict.OK


def test_last_line_without_crlf_can_be_refused() -> None:
    rewriter = MessageRewriter(OPTIONS)
    rewriter.feed(b"Subject: s\r\nno colon")
    assert rewriter.finish() == b""
    assert rewriter.verdict is Verdict.NOT_COMPLIANT


def test_received_count() -> None:
    rewriter = MessageRewriter(OPTIONS)
    rewriter.feed(received_lines(3) + b"X-Received: no\r\n\r\n" + received_lines(5))
    rewriter.finish()
    assert rewriter.received_count == 3

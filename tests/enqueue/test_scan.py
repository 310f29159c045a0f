"""The first pass over sendmail input: dots, line ends, headers, Bcc, -t addresses."""

from __future__ import annotations

import pytest

from mta.enqueue.scan import MAX_HEADER, RFC_LINE_MAX, InputScanner, ScanError

HOST = "host.example"


def scan(
    data: bytes, *, ignore_dots: bool = False, read_recipients: bool = False
) -> tuple[InputScanner, bytes]:
    scanner = InputScanner(hostname=HOST, ignore_dots=ignore_dots, read_recipients=read_recipients)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"".join(scanner.line(line) for line in lines)
    scanner.finish()
    assert scanner.size == len(out)
    return scanner, out


def test_lone_dot_ends_input_without_i() -> None:
    s, out = scan(b"Subject: x\n\nbody\n.\nafter\n")
    assert s.ended
    assert out == b"Subject: x\r\n\r\nbody\r\n"


def test_lone_dot_with_crlf_ends_input() -> None:
    s, out = scan(b"Subject: x\r\n\r\nbody\r\n.\r\nafter\r\n")
    assert s.ended
    assert out == b"Subject: x\r\n\r\nbody\r\n"


def test_i_keeps_lone_dot_and_what_follows() -> None:
    s, out = scan(b"Subject: x\n\nbody\n.\nafter\n", ignore_dots=True)
    assert not s.ended
    assert out == b"Subject: x\r\n\r\nbody\r\n.\r\nafter\r\n"


def test_dot_lines_that_are_not_alone_do_not_end_input() -> None:
    s, out = scan(b"Subject: x\n\n..\n.x\n .\n")
    assert not s.ended
    assert out == b"Subject: x\r\n\r\n..\r\n.x\r\n .\r\n"


def test_bare_cr_ends_a_line() -> None:
    _, out = scan(b"Subject: x\n\na\rb\r\n")
    assert out == b"Subject: x\r\n\r\na\r\nb\r\n"


def test_bcc_removed_with_continuation_lines() -> None:
    s, out = scan(b"To: a@x.example\nBcc: b@x.example,\n c@x.example\nSubject: s\n\nbody\n")
    assert out == b"To: a@x.example\r\nSubject: s\r\n\r\nbody\r\n"
    assert s.recipients == []  # without -t nothing is collected


def test_t_collects_to_cc_bcc_with_folding_and_qualifies() -> None:
    s, out = scan(
        b'To: Bob <bob@X.example>, carol\nCc: (c) dan@x.example,\n\t"e f"@x.example\n'
        b"bcc: hidden@x.example\nSubject: s\n\nTo: not@header.example\n",
        read_recipients=True,
    )
    assert s.recipients == [
        "bob@x.example",
        f"carol@{HOST}",
        "dan@x.example",
        '"e f"@x.example',
        "hidden@x.example",
    ]
    assert b"hidden" not in out


def test_t_undisclosed_recipients_group_is_empty() -> None:
    s, _ = scan(b"To: undisclosed-recipients:;\n\nx\n", read_recipients=True)
    assert s.recipients == []


def test_t_bad_address_header_is_an_error() -> None:
    with pytest.raises(ScanError, match="To"):
        scan(b"To: bob@<<\n\nx\n", read_recipients=True)


def test_from_address_noted_and_headers_seen() -> None:
    s, _ = scan(
        b"From: Alice <alice@x.example>\nDate: today\nMessage-Id: <1@x>\nMIME-Version: 1.0\n\nx\n"
    )
    assert s.from_address == "alice@x.example"
    assert s.seen == {"from", "date", "message-id", "mime-version"}


def test_mbox_from_line_and_return_path_dropped() -> None:
    _, out = scan(
        b"From alice Mon Jan 1 00:00:00 2024\nReturn-Path: <x@y>\n more\nSubject: s\n\nb\n"
    )
    assert out == b"Subject: s\r\n\r\nb\r\n"


def test_from_line_that_is_not_mbox_is_kept() -> None:
    s, out = scan(b"from the desk of Bob\nFrom me to you\n")
    assert not s.has_headers
    assert out == b"from the desk of Bob\r\nFrom me to you\r\n"
    _, out = scan(b"Subject: s\nFrom here on, the body\n")
    assert out == b"Subject: s\r\n\r\nFrom here on, the body\r\n"


def test_no_header_block() -> None:
    s, out = scan(b"just a body\nline two\n")
    assert not s.has_headers
    assert s.body_offset == 0
    assert out == b"just a body\r\nline two\r\n"


def test_empty_first_line_is_an_empty_header_block() -> None:
    s, out = scan(b"\nbody\n")
    assert s.has_headers
    assert out == b"\r\nbody\r\n"
    assert s.body_offset == 2


def test_non_header_line_ends_header_block_with_a_blank_line() -> None:
    s, out = scan(b"Subject: s\nthis is the body\n")
    assert out == b"Subject: s\r\n\r\nthis is the body\r\n"
    assert s.body_offset == len(b"Subject: s\r\n\r\n")


def test_headers_only() -> None:
    s, out = scan(b"Subject: s\n")
    assert out == b"Subject: s\r\n"
    assert s.body_offset == len(out)


def test_long_body_lines_and_eight_bit_counted() -> None:
    long = b"x" * (RFC_LINE_MAX + 1)
    s, _ = scan(b"Subject: s\n\n" + long + b"\nok\n\xc3\xa9\n")
    assert s.long_body_lines == 1
    assert s.longest_body_line == RFC_LINE_MAX + 1
    assert s.eight_bit


def test_long_header_line_is_not_a_long_body_line() -> None:
    s, _ = scan(b"Subject: " + b"y" * 2000 + b"\n\nshort\n")
    assert s.long_body_lines == 0
    assert s.longest_header_line == 2009
    assert not s.eight_bit


def test_content_type_noted() -> None:
    s, _ = scan(b"Content-Type: Multipart/Mixed;\n boundary=x\n\nb\n")
    assert s.content_type.startswith(b"multipart/mixed;")


def test_huge_address_header_refused() -> None:
    value = b", ".join(b"a%d@x.example" % i for i in range(MAX_HEADER // 10))
    with pytest.raises(ScanError, match="too long"):
        scan(b"To: " + value + b"\n\nb\n", read_recipients=True)


def test_nothing_after_end() -> None:
    scanner = InputScanner(hostname=HOST, ignore_dots=False, read_recipients=False)
    assert scanner.line(b".") == b""
    assert scanner.line(b"more") == b""

"""DATA: end-of-data policy, normalisation, dot-unstuffing, size, limits, splits, memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.smtp import events as ev
from mta.smtp.data import _SPECIAL, TEXT_LINE_MAX, DataReader, _first_special
from tests.smtp.test_server_support import Client, run_session


def message(data: bytes, **overrides: object) -> tuple[Client, str]:
    client = Client(**overrides)  # type: ignore[arg-type]
    client.ready_for_data()
    return client, client.send(data)


def test_simple_message() -> None:
    client, out = message(b"Subject: hi\r\n\r\nbody\r\n.\r\n")
    assert out == "250 2.0.0 0000abcd Message accepted for delivery\r\n"
    assert client.content() == b"Subject: hi\r\n\r\nbody\r\n"
    assert client.of(ev.DataEnd) == [ev.DataEnd(len(b"Subject: hi\r\n\r\nbody\r\n"), None)]
    assert not client.conn.in_transaction


def test_empty_message_ends_at_once() -> None:
    client, out = message(b".\r\n")
    assert out.startswith("250 2.0.0 0000abcd ")
    assert client.of(ev.DataEnd) == [ev.DataEnd(0, None)]
    assert client.of(ev.DataChunk) == []


def test_dot_unstuffing() -> None:
    client, _ = message(b"..\r\n...x\r\n.y\r\n.\r\n")
    assert client.content() == b".\r\n..x\r\ny\r\n"
    assert client.of(ev.DataEnd)[0].size == len(b".\r\n..x\r\ny\r\n")


@pytest.mark.parametrize(
    ("data", "content"),
    [
        (b"a\n.\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),  # \n.\n does not end
        (b"a\r.\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),  # \r.\r\n does not end
        (b"a\r\n.\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),  # \r\n.\n does not end
        (b"a\n.\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),  # \n.\r\n does not end
        (b"a\r\n.\rb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),  # \r\n.\r does not end
        (b"bare\ncr\rcrlf\r\n.\r\n", b"bare\r\ncr\r\ncrlf\r\n"),
        (b"x\r\r\ny\r\n.\r\n", b"x\r\n\r\ny\r\n"),
        (b"\n\r\n.\r\n", b"\r\n\r\n"),
    ],
)
def test_only_crlf_dot_crlf_ends_data(data: bytes, content: bytes) -> None:
    client, out = message(data + b"NOOP\r\n")
    assert client.content() == content
    assert len(client.of(ev.DataEnd)) == 1
    assert out.splitlines() == ["250 2.0.0 0000abcd Message accepted for delivery", "250 2.0.0 Ok"]


def test_smuggled_commands_stay_content() -> None:
    data = b"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<v@x.org>\r\n.\r\n"
    client, out = message(data)
    assert len(client.of(ev.MailFrom)) == 1
    assert b"MAIL FROM:<evil@example.com>\r\n" in client.content()
    assert out.count("\r\n") == 1


def test_size_is_counted_after_unstuffing() -> None:
    client, _ = message(b"..ab\nc\r\n.\r\n")
    assert client.of(ev.DataEnd)[0].size == len(b".ab\r\nc\r\n")


def test_too_big_is_drained_then_refused() -> None:
    client, out = message(
        b"x" * 50 + b"\r\n" + (b"y" * 60 + b"\r\n") * 3 + b".\r\n", max_message_size=100
    )
    assert out == "552 5.3.4 Message too big for system: Transaction failed, message too big\r\n"
    (end,) = client.of(ev.DataEnd)
    assert end.error is not None and end.error.code == 552
    assert end.size == 52 + 3 * 62
    assert len(client.content()) <= 100
    assert not client.conn.in_transaction
    assert client.mail().startswith("250 ")


def test_exactly_max_size_is_fine() -> None:
    _, out = message(b"x" * 98 + b"\r\n.\r\n", max_message_size=100)
    assert out.startswith("250 ")


def test_nul_in_content() -> None:
    client, out = message(b"a\r\nb\0c\r\nd\r\n.\r\n")
    assert out == "554 5.6.0 Message content rejected: NUL character in message\r\n"
    assert client.of(ev.DataEnd)[0].error is not None


def test_text_line_limit() -> None:
    longest = b"x" * (TEXT_LINE_MAX - 2) + b"\r\n"
    client, out = message(longest + b".\r\n", max_message_size=0)
    assert out.startswith("250 ")
    assert client.content() == longest
    client, out = message(b"x" * (TEXT_LINE_MAX - 1) + b"\r\n.\r\n", max_message_size=0)
    assert out == "500 5.0.0 Line too long\r\n"
    assert client.events[-1] == ev.ConnectionClosed("line-too-long")


def test_unfinished_long_line_is_refused_early() -> None:
    client = Client(max_message_size=0)
    client.ready_for_data()
    client.feed(b"z" * (TEXT_LINE_MAX + 10))
    assert client.conn.closed
    assert client.conn.data_to_send() == b"500 5.0.0 Line too long\r\n"


def test_eof_inside_data() -> None:
    client = Client()
    client.ready_for_data()
    client.feed(b"Subject: cut\r\n")
    assert client.feed(b"") == [ev.ConnectionClosed("disconnect")]
    assert client.of(ev.DataEnd) == []


def test_chunks_hold_many_lines() -> None:
    client = Client()
    client.ready_for_data()
    events = client.feed(b"line\r\n" * 1000)
    assert events == [ev.DataChunk(b"line\r\n" * 1000)]


def test_data_rejected_by_driver_keeps_transaction() -> None:
    from mta.reply import Reply
    from tests.smtp.test_server_support import rejecting

    client = Client(rejecting(ev.DataStart, Reply.of(452, "4.3.1", "Insufficient system storage")))
    client.ehlo()
    client.mail()
    client.rcpt()
    assert client.send("DATA\r\n") == "452 4.3.1 Insufficient system storage\r\n"
    assert client.conn.in_transaction
    assert client.send("hello\r\n").startswith("500 5.5.1 Invalid command: Command unrecognized")


SESSION = [
    b"EHLO client.example\r\n",
    b"MAIL FROM:<a@b.example> SIZE=300\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@f.example>\r\n",
    b"DATA\r\n",
    b"Subject: split\r\n\r\n..dots\n.\nbare\rcr\r\r\n\n.\r\n\x00\r\n.x\r\n.\r\n",
    b"MAIL FROM:<>\r\nRCPT TO:<g@h.example>\r\n",
    b"DATA\r\n",
    b"x" * 400 + b"\r\n.\r\nQUIT\r\n",
]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return [p for p in pieces if p]


REFERENCE = run_session(SESSION, max_message_size=300)


def test_reference_session() -> None:
    events, out = REFERENCE
    assert isinstance(events[-1], ev.ConnectionClosed) and events[-1].reason == "quit"
    ends = [e for e in events if isinstance(e, ev.DataEnd)]
    assert ends[0].error is not None and ends[0].error.code == 554
    assert ends[1].error is not None and ends[1].error.code == 552
    assert out.endswith(b"221 2.0.0 Bye\r\n")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=12))
def test_events_do_not_depend_on_how_bytes_arrive(cuts: list[int]) -> None:
    # a pipelining client waits for the replies after each group: split within groups
    pieces = [piece for group in SESSION for piece in _split(group, cuts)]
    assert run_session(pieces, max_message_size=300) == REFERENCE


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=8))
def test_reader_splits_arbitrary_content_identically(content: bytes, cuts: list[int]) -> None:
    whole = content + b"\r\n.\r\n"

    def decode(pieces: list[bytes]) -> tuple[bytes, int, bool, int]:
        reader = DataReader(max_size=0)
        buf = bytearray()
        out = bytearray()
        consumed = 0
        for piece in pieces:
            buf += piece
            used = reader.feed(buf, out)
            consumed += used
            del buf[:used]
            if reader.done:
                break
        return bytes(out), reader.size, reader.done, consumed

    reference = decode([whole])
    assert reference[2]
    assert decode(_split(whole, cuts)) == reference
    assert reference[1] == len(reference[0]) or b"\0" in content
    # the data ends at the first CRLF.CRLF (a ".." line decodes to "." and does not)
    assert reference[3] == (b"\r\n" + whole).index(b"\r\n.\r\n") + 3


def test_memory_stays_bounded_for_a_50_mb_message() -> None:
    client = Client(max_message_size=0)
    client.ready_for_data()
    block = (b"a" * 76 + b"\r\n" + b"." * 10 + b"\n") * 700  # ~60 KB per read
    total = 0
    largest = 0
    chunks = 0
    while total < 50_000_000:
        client.conn.receive_data(block)
        while (event := client.conn.next_event()) is not ev.NEED_DATA:
            assert isinstance(event, ev.DataChunk)
            chunks += 1
            assert len(event.data) < 2 * len(block)
        largest = max(largest, client.conn.buffered)
        total += len(block)
    assert largest < 100
    client.conn.receive_data(b"end\r\n.\r\n")
    assert isinstance(client.conn.next_event(), ev.DataChunk)
    end = client.conn.next_event()
    assert isinstance(end, ev.DataEnd) and end.error is None
    assert end.size > 50_000_000
    assert chunks >= total // len(block)


@given(
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"\0", b"a", b"\r\n."]), max_size=40),
    st.integers(min_value=0, max_value=80),
)
def test_fast_special_scan_agrees_with_the_pattern(parts: list[bytes], pos: int) -> None:
    buf = b"".join(parts)
    pos = min(pos, len(buf))
    match = _SPECIAL.search(buf, pos)
    assert _first_special(buf, pos) == (-1 if match is None else match.start())
    assert _first_special(bytearray(buf), pos) == _first_special(buf, pos)

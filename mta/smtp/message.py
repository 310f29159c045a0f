"""What happens to message content between the SMTP server and the spool.

The server hands DATA content over as chunks of CRLF-terminated lines, already
dot-unstuffed and with bare CR / LF normalised.  :class:`MessageRewriter`
returns what to write to the spool, following OpenSMTPD (smtp_session.c
``smtp_tx_dataline`` and rfc5322.c):

* our ``Received:`` header first (``X-Spam: Yes`` before it for junk);
* headers copied as they came, except: ``Bcc:`` removed with its continuation
  lines; in ``To:`` / ``Cc:`` / ``From:`` every address without a domain gets
  ``@<hostname>``; with masquerading, the ``From:`` addresses become the
  envelope sender; for local submissions a missing ``Date:`` and
  ``Message-ID:`` are added at the end of the header block;
* the body copied untouched.

A header is a line that does not start with SP / TAB and contains ``:``; its
name is what precedes the colon (compared without case).  The first line that
is neither a header nor a continuation ends the header block and must be
empty; anything else makes the message not compliant (550).  A message that
ends inside its header block (no body, or nothing at all) is accepted as
OpenSMTPD accepts it.  100 ``Received:`` headers mean a routing loop (500).

Memory stays bounded: body chunks are returned as they are, and at most one
``To:`` / ``Cc:`` / ``From:`` header (up to :data:`MAX_HEADER`; beyond that it is
written unchanged) is held back at a time.
"""

from __future__ import annotations

import datetime as _dt
import enum

import attrs

from mta.envelope import Address
from mta.reply import Reply
from mta.smtp.dates import format_date
from mta.smtp.headers import rewrite_address_header

__all__ = [
    "MAX_HEADER",
    "MAX_HEADER_NAME",
    "MAX_HOPS",
    "MessageRewriter",
    "RewriteOptions",
    "Verdict",
]

MAX_HOPS = 100
"""``Received:`` headers that make a routing loop (OpenSMTPD ``MAX_HOPS_COUNT``)."""

MAX_HEADER = 1024 * 1024
"""An address header longer than this (bytes, continuation lines included) is
written unchanged."""

MAX_HEADER_NAME = 1022
"""Longest header name OpenSMTPD's parser takes (1 KiB buffer, NUL included);
a longer one makes the message not compliant."""


class Verdict(enum.Enum):
    """How the message stands: the server answers at the final dot."""

    OK = "ok"
    LOOP = "loop"
    NOT_COMPLIANT = "not-compliant"

    @property
    def reply(self) -> Reply | None:
        """OpenSMTPD's reply for a refused message; None for OK."""
        if self is Verdict.LOOP:
            return Reply.of(500, "5.4.6", "Routing loop detected: Loop detected")
        if self is Verdict.NOT_COMPLIANT:
            return Reply.of(
                550,
                "5.7.1",
                "Delivery not authorized, message refused: Message is not RFC 2822 compliant",
            )
        return None


def _check_random(instance: RewriteOptions, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value < 1 << 64:
        raise ValueError(f"message_id_random is a 64-bit value: {value!r}")


def _check_date(
    instance: RewriteOptions, attribute: attrs.Attribute[_dt.datetime | None], value: object
) -> None:
    if instance.add_missing and not isinstance(value, _dt.datetime):
        raise ValueError("add_missing needs the date of the Date: header")
    if isinstance(value, _dt.datetime) and value.utcoffset() is None:
        raise ValueError("the Date: header needs an aware datetime")


@attrs.frozen
class RewriteOptions:
    """What the rewriter needs to know about the transaction.

    ``received`` is the complete ``Received:`` header (see
    :func:`mta.smtp.received.received_header`); ``hostname`` the listener's
    hostname (qualifies bare addresses and ends the Message-ID);
    ``masquerade`` the envelope sender when ``From:`` is to be rewritten to it
    (authenticated session on a ``senders ... masquerade`` listener), else None;
    ``add_missing`` true for local submissions (socket, loopback listener, port
    587), with ``date`` and ``message_id_random`` (a random 64-bit value) used
    for the ``Date:`` and ``Message-ID:`` headers it adds; ``junk`` writes
    ``X-Spam: Yes`` first.
    """

    received: bytes
    hostname: str
    masquerade: Address | None = None
    add_missing: bool = False
    date: _dt.datetime | None = attrs.field(default=None, validator=_check_date)
    message_id_random: int = attrs.field(default=0, validator=_check_random)
    junk: bool = False


class _State(enum.Enum):
    HEADERS = 1
    BODY = 2
    FAILED = 3


class _Hold(enum.Enum):
    """What happens to the lines of the header being read."""

    NONE = 0  # not inside a header (start of the message)
    COPY = 1  # written as they come
    DROP = 2  # Bcc
    ADDRESS = 3  # To / Cc / From: held back, rewritten at its end


# Headers that get special treatment, by lowercased name.
_BCC, _ADDRESS, _FROM, _RECEIVED, _DATE, _MESSAGE_ID = range(6)
_SPECIAL = {
    b"bcc": _BCC,
    b"to": _ADDRESS,
    b"cc": _ADDRESS,
    b"from": _FROM,
    b"received": _RECEIVED,
    b"date": _DATE,
    b"message-id": _MESSAGE_ID,
}


class MessageRewriter:
    """Streams one message to the spool.  Not reusable: one per transaction.

    ``feed(chunk)`` returns the bytes to write now; ``finish()`` the last ones,
    after which :attr:`verdict` is final.  Once the verdict is not OK, both
    return ``b""`` (the server keeps draining DATA and answers at the dot).
    Chunks normally hold whole lines; a chunk that ends inside a header line
    is held until the line is complete.
    """

    def __init__(self, options: RewriteOptions) -> None:
        self._options = options
        self._hostname = options.hostname.encode("utf-8")
        masquerade = options.masquerade
        self._masquerade = (
            None if masquerade is None or masquerade.is_null else str(masquerade).encode("utf-8")
        )
        self._state = _State.HEADERS
        self._finished = False
        self._verdict = Verdict.OK
        self._started = False
        self._partial = b""  # an incomplete header line
        self._hold = _Hold.NONE
        self._held: list[bytes] = []  # the held address header, line by line, CRLF included
        self._held_size = 0
        self._held_from = False
        self._received = 0
        self._has_date = False
        self._has_message_id = False

    @property
    def verdict(self) -> Verdict:
        return self._verdict

    @property
    def received_count(self) -> int:
        """``Received:`` headers seen in the message (ours not counted)."""
        return self._received

    def feed(self, chunk: bytes) -> bytes:
        """Take the next chunk of content; return what to write to the spool now."""
        state = self._state
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if state is _State.BODY:
            return chunk
        if state is _State.FAILED:
            return b""
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        if self._partial:
            chunk = self._partial + chunk
            self._partial = b""
        if self._headers(chunk, out) is _State.FAILED:
            return b""
        return b"".join(out)

    def finish(self) -> bytes:
        """The message is complete: return the last bytes to write."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        if self._state is not _State.HEADERS:
            return b""
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        if self._partial:
            partial, self._partial = self._partial, b""
            state = self._headers(partial + b"\r\n", out)
            if state is _State.FAILED:
                return b""
            if state is _State.BODY:  # cannot happen: a partial line is never empty
                return b"".join(out)
        self._end_header(out)
        self._end_of_headers(out)
        return b"".join(out)

    # -- internals ---------------------------------------------------------

    def _start(self, out: list[bytes]) -> None:
        self._started = True
        if self._options.junk:
            out.append(b"X-Spam: Yes\r\n")
        out.append(self._options.received)

    def _fail(self, verdict: Verdict) -> None:
        self._state = _State.FAILED
        self._verdict = verdict
        self._held = []
        self._partial = b""

    def _headers(self, data: bytes, out: list[bytes]) -> _State:
        """Process the lines of ``data`` while in the header block; once the
        block ends, what follows is body and goes to ``out`` as it is.

        Lines copied verbatim are gathered into runs, written as one slice.
        Returns the state reached."""
        pos = 0
        size = len(data)
        find = data.find
        run = -1  # start of the current run of verbatim lines, or -1
        while pos < size:
            eol = find(b"\r\n", pos)
            if eol < 0:
                self._partial = data[pos:]
                break
            nxt = eol + 2
            first = data[pos]
            if first == 0x20 or first == 0x09:
                hold = self._hold
                if hold is _Hold.COPY:
                    if run < 0:
                        run = pos
                    pos = nxt
                    continue
                if hold is _Hold.ADDRESS:
                    self._continuation(data[pos:nxt], out)
                    pos = nxt
                    continue
                if hold is _Hold.DROP:
                    pos = nxt
                    continue
                colon = -1  # whitespace first in the message: not a header
            else:
                colon = find(b":", pos, eol)
            if colon >= 0:
                if colon - pos > MAX_HEADER_NAME:
                    self._fail(Verdict.NOT_COMPLIANT)
                    return self._state
                special = _SPECIAL.get(data[pos:colon].lower())
                if special is None:
                    if self._hold is _Hold.ADDRESS:
                        self._end_header(out)
                    self._hold = _Hold.COPY
                    if run < 0:
                        run = pos
                    pos = nxt
                    continue
                if run >= 0:
                    out.append(data[run:pos])
                    run = -1
                self._end_header(out)
                if not self._header_start(special, data[pos:nxt], out):
                    return self._state
                pos = nxt
                continue
            # neither a header nor a continuation: the end of the header block
            if run >= 0:
                out.append(data[run:pos])
                run = -1
            self._end_header(out)
            self._end_of_headers(out)
            if eol != pos:
                self._fail(Verdict.NOT_COMPLIANT)
                return self._state
            self._state = _State.BODY
            out.append(data[pos:])  # the empty line and the body
            return self._state
        if run >= 0:
            out.append(data[run:pos])
        return self._state

    def _header_start(self, special: int, line: bytes, out: list[bytes]) -> bool:
        if special == _BCC:
            self._hold = _Hold.DROP
            return True
        if special in (_ADDRESS, _FROM):
            self._hold = _Hold.ADDRESS
            self._held_from = special == _FROM
            self._held = [line]
            self._held_size = len(line)
            return True
        self._hold = _Hold.COPY
        if special == _RECEIVED:
            self._received += 1
            if self._received >= MAX_HOPS:
                self._fail(Verdict.LOOP)
                return False
        elif special == _DATE:
            self._has_date = True
        else:
            self._has_message_id = True
        out.append(line)
        return True

    def _continuation(self, line: bytes, out: list[bytes]) -> None:
        self._held.append(line)
        self._held_size += len(line)
        if self._held_size > MAX_HEADER:
            out.extend(self._held)
            self._held = []
            self._hold = _Hold.COPY

    def _end_header(self, out: list[bytes]) -> None:
        if self._hold is _Hold.ADDRESS:
            held = b"".join(self._held)
            self._held = []
            out.append(self._rewrite(held))
        self._hold = _Hold.NONE

    def _rewrite(self, header: bytes) -> bytes:
        colon = header.index(b":")
        value = header[colon + 1 : -2]
        masquerade = self._masquerade if self._held_from else None
        new = rewrite_address_header(value, self._hostname, masquerade)
        if new is value:
            return header
        return header[: colon + 1] + new + b"\r\n"

    def _end_of_headers(self, out: list[bytes]) -> None:
        options = self._options
        if not options.add_missing:
            return
        if not self._has_date:
            assert options.date is not None
            out.append(f"Date: {format_date(options.date)}\r\n".encode())
        if not self._has_message_id:
            out.append(
                f"Message-ID: <{options.message_id_random:016x}@{options.hostname}>\r\n".encode()
            )

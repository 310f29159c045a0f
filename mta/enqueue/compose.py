"""The second pass: the message as it is submitted (enqueue.c's DATA phase).

Before what the first pass kept, the headers it lacks are added: ``From:``
(``Full Name <sender>``), ``Date:``, ``Message-ID:``, and when a body line is
longer than RFC 5322 allows and the message has no transfer encoding of its
own, the MIME headers of a quoted-printable text body, whose lines are then
encoded (RFC 2045 6.7) so no line exceeds 76 characters.  A message without a
header block gets a blank line after the added headers.

:class:`Content` is the result: a prefix and a region of a file, read in
blocks, so a large message never sits in memory.  No clock here: the caller
passes the date and the Message-ID.
"""

from __future__ import annotations

import binascii
import datetime as _dt
import email.charset
import re
from collections.abc import Iterator
from typing import IO

import attrs

from mta.enqueue.reader import spool_file
from mta.enqueue.scan import InputScanner, ScanError
from mta.smtp.data import TEXT_LINE_MAX
from mta.smtp.dates import format_date

__all__ = ["BLOCK", "Content", "compose", "from_header", "needs_quoted_printable"]

BLOCK = 64 * 1024

_WIRE_LINE_MAX = TEXT_LINE_MAX - 2  # what the server takes, without the CRLF
_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_UTF8 = email.charset.Charset("utf-8")


@attrs.frozen(eq=False)
class Content:
    """The message: ``prefix``, then ``length`` bytes of ``file`` from ``offset``.

    Every line ends with CRLF; nothing is dot-stuffed.  ``owns_file``: the file
    was made for this content, and :meth:`close` (or ``with``) closes it."""

    prefix: bytes
    file: IO[bytes] | None = None
    offset: int = 0
    length: int = 0
    owns_file: bool = False

    def close(self) -> None:
        if self.owns_file and self.file is not None:
            self.file.close()

    def __enter__(self) -> Content:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        return len(self.prefix) + self.length

    def blocks(self, block: int = BLOCK) -> Iterator[bytes]:
        """The message in blocks of at most ``block`` bytes (blocking reads)."""
        if self.prefix:
            yield self.prefix
        if self.file is None or not self.length:
            return
        self.file.seek(self.offset)
        left = self.length
        while left:
            data = self.file.read(min(block, left))
            if not data:
                raise OSError(f"message file shorter than expected ({left} bytes missing)")
            left -= len(data)
            yield data

    def read_all(self) -> bytes:
        """The whole message in memory (for tests and small messages)."""
        return b"".join(self.blocks())


def from_header(name: str | None, address: str) -> bytes:
    """``From: Name <address>``; the name quoted or RFC 2047-encoded as it needs,
    control characters in it turned to spaces (``-F`` cannot add a header)."""
    if not name or not name.strip():
        return f"From: <{address}>\r\n".encode()
    name = _CONTROL.sub(" ", name).strip()
    if not name.isascii():
        display = _UTF8.header_encode(name)
    elif _PHRASE.fullmatch(name):
        display = name
    else:
        display = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"From: {display} <{address}>\r\n".encode()


def needs_quoted_printable(scan: InputScanner) -> bool:
    """Body lines too long for RFC 5322, and nothing says how the body is encoded
    (a multipart or message body cannot be re-encoded as a whole)."""
    if not scan.long_body_lines or "content-transfer-encoding" in scan.seen:
        return False
    return not scan.content_type.startswith((b"multipart/", b"message/"))


def _added_headers(
    scan: InputScanner,
    *,
    from_address: str,
    full_name: str | None,
    date: _dt.datetime,
    message_id: str,
    quoted_printable: bool,
) -> bytes:
    out: list[bytes] = []
    if "from" not in scan.seen:
        out.append(from_header(full_name, from_address))
    if "date" not in scan.seen:
        out.append(f"Date: {format_date(date)}\r\n".encode())
    if "message-id" not in scan.seen:
        out.append(f"Message-ID: {message_id}\r\n".encode())
    if quoted_printable:
        if "mime-version" not in scan.seen:
            out.append(b"MIME-Version: 1.0\r\n")
        if "content-type" not in scan.seen:
            out.append(b"Content-Type: text/plain; charset=unknown-8bit\r\n")
        if "content-disposition" not in scan.seen:
            out.append(b"Content-Disposition: inline\r\n")
        out.append(b"Content-Transfer-Encoding: quoted-printable\r\n")
    if not scan.has_headers:
        out.append(b"\r\n")
    return b"".join(out)


def _encode_body(kept: IO[bytes], body_offset: int, length: int) -> tuple[IO[bytes], int]:
    """A new file: the header block of ``kept`` as it is, then its body quoted-printable."""
    out = spool_file()
    try:
        kept.seek(0)
        left = body_offset
        while left:
            data = kept.read(min(BLOCK, left))
            if not data:
                raise OSError("message file shorter than expected")
            out.write(data)
            left -= len(data)
        size = body_offset
        while kept.tell() < length:
            line = kept.readline()
            if not line:
                raise OSError("message file shorter than expected")
            encoded = binascii.b2a_qp(line, istext=True)
            out.write(encoded)
            size += len(encoded)
        out.flush()
    except BaseException:
        out.close()
        raise
    return out, size


def compose(
    scan: InputScanner,
    kept: IO[bytes],
    *,
    from_address: str,
    full_name: str | None,
    date: _dt.datetime,
    message_id: str,
) -> Content:
    """The message to submit from the first pass's ``scan`` and what it ``kept``.

    ScanError when a line is too long for the server to take."""
    if scan.longest_header_line > _WIRE_LINE_MAX:
        raise ScanError(f"a header line is longer than {_WIRE_LINE_MAX} bytes")
    quoted_printable = needs_quoted_printable(scan)
    if not quoted_printable and scan.longest_body_line > _WIRE_LINE_MAX:
        raise ScanError(
            f"a line of the message is longer than {_WIRE_LINE_MAX} bytes and the body "
            "cannot be re-encoded"
        )
    prefix = _added_headers(
        scan,
        from_address=from_address,
        full_name=full_name,
        date=date,
        message_id=message_id,
        quoted_printable=quoted_printable,
    )
    if not quoted_printable:
        return Content(prefix, kept, 0, scan.size)
    encoded, size = _encode_body(kept, scan.body_offset, scan.size)
    return Content(prefix, encoded, 0, size, owns_file=True)

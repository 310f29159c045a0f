"""The original message as a notification returns it: streamed, never held whole.

:func:`returned` reads the spooled content chunk by chunk and yields it with
every line ending as CRLF (the SMTP server stores CRLF already; a bare CR or LF
from elsewhere becomes one), either whole or only its header block, in which
case it stops reading at the blank line that ends the headers.  A line that starts with the
notification's MIME boundary delimiter (``--`` + boundary) would end the part
early, so it gets a space in front (in the header block that makes it a
continuation line, which it could not have been a valid header anyway).  What
is kept between chunks is a few bytes, whatever the size of the message or of
its lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["returned"]

_EOL = re.compile(rb"\r\n|\r|\n")
_CRLF = b"\r\n"
_END_OF_HEADERS = b"\r\n\r\n"


def _crlf(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` with CRLF, bare CR and bare LF all written CRLF.  A CR that ends a
    chunk waits for the next one (it may be half of a CRLF)."""
    cr = False
    for chunk in chunks:
        if cr:
            chunk = b"\r" + chunk
            cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            cr = True
        pairs = chunk.count(_CRLF)
        if chunk.count(b"\r") != pairs or chunk.count(b"\n") != pairs:
            chunk = _EOL.sub(_CRLF, chunk)
        if chunk:
            yield chunk
    if cr:
        yield _CRLF


def returned(original: Iterable[bytes], *, boundary: bytes, headers_only: bool) -> Iterator[bytes]:
    """The content of the returned part: ``original`` (all of it, or its header
    block when ``headers_only``), CRLF line endings, always ending with CRLF
    unless empty."""
    delimiter = _CRLF + b"--" + boundary
    escaped = _CRLF + b" --" + boundary
    keep = max(len(delimiter), len(_END_OF_HEADERS)) - 1
    # The search runs on the content preceded by a CRLF that is never sent: it
    # makes the first line a line start like the others, and an empty header
    # block a CRLF CRLF.
    data = _CRLF
    skip = len(_CRLF)
    last = b""
    for chunk in _crlf(original):
        data += chunk
        end = data.find(_END_OF_HEADERS) if headers_only else -1
        if end >= 0:
            data = data[: end + len(_CRLF)]
            break
        data = data.replace(delimiter, escaped)
        cut = len(data) - keep
        if cut > skip:
            out, data = data[skip:cut], data[cut:]
            skip = 0
            last = out[-2:] if len(out) >= 2 else last[-1:] + out
            yield out
    data = data.replace(delimiter, escaped)[skip:]
    if data:
        last = data[-2:] if len(data) >= 2 else last[-1:] + data
        yield data
    if last and last != _CRLF:
        yield _CRLF

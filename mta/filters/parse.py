"""Parsing what a filter writes on its standard output: bytes in, in any chunks,
:mod:`mta.filters.messages` out, one line at a time, never more than
:data:`~mta.filters.protocol.MAX_LINE` bytes of an unfinished line kept.

- :func:`parse_line` turns one line (no newline) into a message or raises
  :class:`~mta.errors.FilterProtocolError`.
- :class:`FilterOutputParser`: :meth:`~FilterOutputParser.feed` bytes as they come,
  then call :meth:`~FilterOutputParser.next_message` until it returns ``None``
  (more bytes needed); :meth:`~FilterOutputParser.close` at end of file.  The first
  error is raised where the bad line stands, after every message before it, and
  again on any later call: a filter that broke the protocol is done.

A line ends with LF; a CR before it is dropped (OpenSMTPD keeps it, and then
rejects ``proceed\\r``).  Fields are split only as far as the grammar goes, so the
last one (a reply, a rewritten argument, a data line) may contain ``|``.  Session
ids and tokens must be 16 hex digits, as smtpd writes them.  Every field but a
data line must be UTF-8.  What OpenSMTPD refuses with ``fatalx`` is an error here:
an unknown message type, ``register|`` line, subsystem, event, phase or decision;
a parameter after ``proceed`` / ``junk`` or none after the others; a missing field.
``register|filter|`` takes the subsystem in any case (``strncasecmp`` in
``lka_filter_register_hook``), everything else is exact.
"""

from __future__ import annotations

import re
from typing import NoReturn

from mta.errors import FilterProtocolError
from mta.filters.messages import (
    FilterDataLine,
    FilterMessage,
    FilterReport,
    FilterResult,
    RegisterFilter,
    RegisterReady,
    RegisterReport,
)
from mta.filters.protocol import (
    MAX_LINE,
    Decision,
    FilterPhase,
    ReportEvent,
    Subsystem,
    Timestamp,
    parse_id,
)

__all__ = ["FilterOutputParser", "parse_line"]

_TIMESTAMP = re.compile(r"([0-9]{1,19})\.([0-9]{6})")
_DECISIONS = {decision.value: decision for decision in Decision}
_EVENTS = {event.value: event for event in ReportEvent}
_PHASES = {phase.value: phase for phase in FilterPhase}
_SUBSYSTEMS = {subsystem.value: subsystem for subsystem in Subsystem}


def _text(raw: bytes, line: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FilterProtocolError("filter line is not UTF-8", line) from None


def _ids(session: str, token: str, line: bytes) -> tuple[int, int]:
    session_id = parse_id(session)
    if session_id is None:
        raise FilterProtocolError("invalid session id (16 hex digits expected)", line)
    token_id = parse_id(token)
    if token_id is None:
        raise FilterProtocolError("invalid token (16 hex digits expected)", line)
    return session_id, token_id


def _register(text: str, line: bytes) -> FilterMessage:
    if text == "register|ready":
        return RegisterReady()
    parts = text.split("|", 3)
    if len(parts) != 4 or parts[1] not in ("report", "filter"):
        raise FilterProtocolError("invalid register line", line)
    _, stream, subsystem_name, name = parts
    if stream == "filter":
        if subsystem_name.lower() != Subsystem.SMTP_IN.value:
            raise FilterProtocolError("filters exist only for smtp-in", line)
        phase = _PHASES.get(name)
        if phase is None:
            raise FilterProtocolError("unknown filter phase", line)
        return RegisterFilter(phase)
    subsystem = _SUBSYSTEMS.get(subsystem_name)
    if subsystem is None:
        raise FilterProtocolError("unknown subsystem", line)
    if name == "*":
        return RegisterReport(subsystem, None)
    event = _EVENTS.get(name)
    if event is None:
        raise FilterProtocolError("unknown report event", line)
    return RegisterReport(subsystem, event)


def _result(text: str, line: bytes) -> FilterResult:
    parts = text.split("|", 4)
    if len(parts) < 4:
        raise FilterProtocolError("filter-result needs a session, a token and a decision", line)
    session, token = _ids(parts[1], parts[2], line)
    decision = _DECISIONS.get(parts[3])
    if decision is None:
        raise FilterProtocolError("unknown filter-result decision", line)
    parameter = parts[4] if len(parts) == 5 else None
    if decision.takes_parameter and parameter is None:
        raise FilterProtocolError(f"{decision.value} needs a parameter", line)
    if not decision.takes_parameter and parameter is not None:
        raise FilterProtocolError(f"unexpected parameter after {decision.value}", line)
    return FilterResult(session, token, decision, parameter)


def _dataline(line: bytes) -> FilterDataLine:
    parts = line.split(b"|", 3)
    if len(parts) < 4:
        raise FilterProtocolError("filter-dataline needs a session, a token and a line", line)
    key = (parts[1], parts[2])
    ids = _known_ids.get(key)
    if ids is None:
        ids = _ids(_text(parts[1], line), _text(parts[2], line), line)
        if len(_known_ids) >= _KNOWN_IDS:
            _known_ids.clear()
        _known_ids[key] = ids
    return FilterDataLine(ids[0], ids[1], parts[3])


# A message's data lines all carry the same session id and token: checked once
# per message, then looked up (bounded: cleared when full)
_KNOWN_IDS = 256
_known_ids: dict[tuple[bytes, bytes], tuple[int, int]] = {}


def _report(text: str, line: bytes) -> FilterReport:
    parts = text.split("|", 4)
    if len(parts) < 5:
        raise FilterProtocolError(
            "report needs a timestamp, a subsystem, a session and a message", line
        )
    stamp = _TIMESTAMP.fullmatch(parts[1])
    if stamp is None:
        raise FilterProtocolError("invalid report timestamp (sec.usec expected)", line)
    if parts[2] != Subsystem.SMTP_IN.value:
        raise FilterProtocolError("filter reports exist only for smtp-in", line)
    session = parse_id(parts[3])
    if session is None:
        raise FilterProtocolError("invalid session id (16 hex digits expected)", line)
    timestamp = Timestamp(int(stamp.group(1)), int(stamp.group(2)))
    return FilterReport(timestamp, Subsystem.SMTP_IN, session, parts[4])


def parse_line(line: bytes) -> FilterMessage:
    """One line a filter wrote, its newline removed."""
    kind = line.split(b"|", 1)[0]
    if kind == b"filter-dataline":
        return _dataline(line)
    if kind not in (b"register", b"filter-result", b"report"):
        raise FilterProtocolError("unknown filter message type", line)
    text = _text(line, line)
    if kind == b"register":
        return _register(text, line)
    if kind == b"filter-result":
        return _result(text, line)
    return _report(text, line)


class FilterOutputParser:
    """Splits a filter's output into lines and parses each (see the module doc).

    Linear in the bytes fed however they are cut: each byte is searched for a
    newline once."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._start = 0  # where the next line begins in _buffer
        self._tail = 0  # where the unfinished line begins: after the last LF in _buffer
        self._overflow = False  # the unfinished line passed max_line (and was cut)
        self._failure: FilterProtocolError | None = None

    def feed(self, data: bytes) -> None:
        """Add bytes read from the filter (any amount, cut anywhere)."""
        if self._overflow or self._failure is not None:
            return  # the error is raised by next_message; nothing more is kept
        newline = data.rfind(b"\n")
        if newline >= 0:
            self._tail = len(self._buffer) + newline + 1
        self._buffer += data
        if len(self._buffer) - self._tail > self.max_line + 1:  # + 1: a CR may end it
            # keep the lines before it and enough of the overlong one to quote
            del self._buffer[self._tail + self.max_line + 1 :]
            self._overflow = True

    def next_message(self) -> FilterMessage | None:
        """The next complete line's message, or None until more bytes are fed."""
        if self._failure is not None:
            raise self._failure
        if self._start >= self._tail:  # no complete line left
            if self._overflow:
                self._fail("line too long", bytes(self._buffer[self._start :]))
            del self._buffer[: self._start]
            self._tail -= self._start
            self._start = 0
            return None
        end = self._buffer.index(b"\n", self._start)
        line = bytes(self._buffer[self._start : end])
        self._start = end + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            self._fail("line too long", line)
        try:
            return parse_line(line)
        except FilterProtocolError as error:
            self._failure = error
            raise

    def close(self) -> None:
        """End of the filter's output: an unfinished line is an error (complete
        lines not yet taken stay available to :meth:`next_message`)."""
        if self._failure is not None:
            raise self._failure
        if self._overflow:
            self._fail("line too long", bytes(self._buffer[self._tail :]))
        if len(self._buffer) > self._tail:
            self._fail("output ends in the middle of a line", bytes(self._buffer[self._tail :]))

    def _fail(self, reason: str, line: bytes) -> NoReturn:
        self._failure = FilterProtocolError(reason, line)
        raise self._failure

"""The SMTP server state machine, sans-IO (h11 style): bytes in, events and reply
bytes out.  No sockets and no clock; :mod:`mta.server.session` drives it.

Loop of a driver::

    conn = ServerConnection(settings)
    conn.banner()
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            send(conn.data_to_send())
            if conn.closed: break
            conn.receive_data(read())          # b"" at end of file
        elif isinstance(event, ConnectionClosed):
            send(conn.data_to_send()); break
        elif isinstance(event, REQUESTS):
            conn.accept() / conn.accept_message(msgid) / conn.reject(reply)
        else: ...                               # DataChunk, TransactionReset

Commands and their checks follow OpenSMTPD's ``smtp_session.c`` (reference
section 3) with DESIGN.md's changes: RFC 2920 pipelining after EHLO (refused
before, as OpenSMTPD always does), SMTPUTF8, 452 / 552 / 555, the DATA end
policy of :mod:`mta.smtp.data`.
"""

from __future__ import annotations

import collections

from mta.reply import Reply
from mta.smtp import replies
from mta.smtp.commands import Commands
from mta.smtp.data import DataReader, LineTooLong
from mta.smtp.events import (
    NEED_DATA,
    REQUESTS,
    Ask,
    AuthCredentials,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    Hello,
    MailFrom,
    NeedData,
    RcptTo,
    StartTls,
)
from mta.smtp.params import MailParams
from mta.smtp.state import AUTH_STATES, SessionSettings, State

__all__ = ["COMMAND_LINE_MAX", "ServerConnection", "SessionSettings"]

MASKED = "********"

COMMAND_LINE_MAX = 2048
"""A command line (without its CRLF) must be shorter than this (OpenSMTPD's LINE_MAX)."""

_Request = Hello | StartTls | AuthCredentials | MailFrom | RcptTo | DataStart | DataEnd | Ask


_AUTH_STEPS = {
    State.AUTH_PLAIN: "AUTH PLAIN (...)",
    State.AUTH_USERNAME: "AUTH LOGIN (username)",
    State.AUTH_PASSWORD: "AUTH LOGIN (password)",
}
"""How a log names a line sent in answer to an AUTH prompt (OpenSMTPD's words)."""


def _masked(line: str) -> str:
    """A command line as a transcript shows it: an AUTH initial response masked."""
    if line[:4].upper() != "AUTH":
        return line
    words = line.split(" ", 2)
    if len(words) == 3 and words[0].upper() == "AUTH":
        return f"{words[0]} {words[1]} {MASKED}"
    return line


class ServerConnection(Commands):
    """One SMTP session's protocol state."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.secure = settings.secure
        self.authenticated = settings.local
        self.helo: str | None = None
        self.esmtp = False
        self._in = bytearray()
        self._start = 0  # where the unparsed bytes of _in begin
        self._out = bytearray()
        self._eof = False
        self._state = State.COMMAND
        self._pending: _Request | None = None
        self._queued: collections.deque[Event] = collections.deque()
        self._close_reason: str | None = None
        self._banner_sent = False
        self._tx: MailParams | None = None
        self._rcpts = 0
        self._mails = 0
        self._login_user = ""
        self._reader: DataReader | None = None
        # when a list: every command line (False: a reply line) is appended, for
        # filters' protocol-client / protocol-server reports; AUTH secrets masked
        self.transcript: list[tuple[bool, str]] | None = None
        # the verbs (RSET, NOOP, QUIT, HELP, WIZ) the driver sees first, as Ask
        self.ask: frozenset[str] = frozenset()
        self._refused = False  # refuse(): only QUIT is served
        # the command line being answered, as logs show it (AUTH secrets masked;
        # None: input that is no command, such as a line too long)
        self.command: str | None = ""
        # the 4xx and 5xx replies queued since the driver last emptied this list,
        # each with the command it answers: the driver logs them
        self.failures: list[tuple[str | None, Reply]] = []

    # -- the driver's side ---------------------------------------------------

    @property
    def closed(self) -> bool:
        """The session is over: send what is left in ``data_to_send()`` and close."""
        return self._close_reason is not None

    @property
    def pending(self) -> _Request | None:
        """The request waiting for ``accept()`` / ``reject()``, if any."""
        return self._pending

    @property
    def awaiting_tls(self) -> bool:
        """STARTTLS was accepted: run the handshake, then call ``tls_established()``."""
        return self._state is State.TLS

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    @property
    def buffered(self) -> int:
        """How many received bytes wait to be parsed (bounded by one read plus one line)."""
        return self._unread()

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` means the client closed its side."""
        if self.closed:
            return
        if data:
            self._in += data
        else:
            self._eof = True

    def data_to_send(self) -> bytes:
        """The replies queued so far (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def banner(self) -> None:
        """Queue the ``220`` greeting."""
        self._banner_sent = True
        self._send(replies.banner(self.settings.hostname))

    def refuse(self, reply: Reply) -> None:
        """Refuse the session in place of the banner (RFC 5321 3.1: a 554 greeting):
        from now on every command but QUIT gets a 503 (``reply.close`` closes now)."""
        self._refused = True
        self._send(reply)  # noted in ``failures``, with no command (OpenSMTPD: command="")
        if reply.close:
            self._close("rejected")

    def send_reply(self, reply: Reply) -> None:
        """Queue a reply of the driver's own (a 421 on timeout or shutdown): it
        answers no command, so it is not noted in ``failures``."""
        self._write(reply)
        if reply.close:
            self._close("rejected")

    def next_event(self) -> Event | NeedData:
        """The next event, or NEED_DATA.  Not while a request waits for a decision."""
        if self._pending is not None:
            raise RuntimeError(f"{type(self._pending).__name__} waits for accept() or reject()")
        if self._queued:
            return self._emit(self._queued.popleft())
        if self._close_reason is not None:
            return ConnectionClosed(self._close_reason)
        if self._state is State.TLS:
            raise RuntimeError("STARTTLS was accepted: call tls_established()")
        while True:
            if self._state is State.DATA:
                event = self._data_event()
            else:
                event = self._command_event()
            if event is NEED_DATA:
                if self._eof:
                    return self._close("disconnect")
                return NEED_DATA
            if event is not None:
                return self._emit(event)

    def accept(self) -> None:
        """Give the standard positive reply to the pending request."""
        request = self._take()
        if isinstance(request, Hello):
            self.helo = request.domain
            self.esmtp = request.verb == "EHLO"
            if self.esmtp:
                self._send(self._ehlo_reply(request.domain))
            else:
                self._send(replies.helo(self.settings.hostname, request.domain, self._peer))
        elif isinstance(request, StartTls):
            self._send(replies.TLS_READY)
            if self._unread():  # plaintext sent after STARTTLS (CVE-2011-0411 style injection)
                self._close("starttls-injection")
            else:
                self._state = State.TLS
        elif isinstance(request, AuthCredentials):
            self.authenticated = True
            self._send(replies.AUTH_OK)
        elif isinstance(request, MailFrom):
            self._tx = request.params
            self._rcpts = 0
            self._send(replies.MAIL_OK)
        elif isinstance(request, RcptTo):
            self._rcpts += 1
            self._send(replies.RCPT_OK)
        elif isinstance(request, DataStart):
            self._send(replies.DATA_GO_AHEAD)
            self._state = State.DATA
            self._reader = DataReader(self.settings.max_message_size)
        elif isinstance(request, Ask):
            event = self._run_command(request.verb, request.args)
            if event is not None:
                self._queued.append(event)
        else:
            self._pending = request
            raise RuntimeError("end of data is accepted with accept_message()")

    def accept_as(self, request: Hello | MailFrom | RcptTo) -> None:
        """Accept the pending request as ``request`` (the same command with other
        arguments: a filter rewrote it)."""
        if type(self._pending) is not type(request):
            raise RuntimeError(f"accept_as() answers a {type(request).__name__} only")
        self._pending = request
        self.accept()

    def accept_message(self, msgid: str) -> None:
        """Accept the message at the end of DATA: ``250 2.0.0 <msgid> Message accepted``."""
        if not isinstance(self._pending, DataEnd):
            raise RuntimeError("accept_message() answers DataEnd only")
        self._take()
        self._mails += 1
        self._reset_tx()
        self._send(replies.message_accepted(msgid))

    def reject(self, reply: Reply) -> None:
        """Refuse the pending request with ``reply`` (``reply.close`` ends the session)."""
        request = self._take()
        if isinstance(request, DataEnd):
            self._reset_tx()
        self._send(reply)
        if reply.close:
            self._close("rejected")

    def tls_established(self) -> None:
        """The driver finished the TLS handshake: back to the start (RFC 3207 4.2)."""
        if self._state is not State.TLS:
            raise RuntimeError("tls_established() without an accepted STARTTLS")
        self._state = State.COMMAND
        self.secure = True
        self.helo = None
        self.esmtp = False
        self.authenticated = self.settings.local
        self._reset_tx()
        self._in.clear()
        self._start = 0

    # -- internals -------------------------------------------------------------

    def _take(self) -> _Request:
        request = self._pending
        if request is None:
            raise RuntimeError("no request is waiting for a decision")
        self._pending = None
        return request

    def _emit(self, event: Event) -> Event:
        if isinstance(event, REQUESTS):
            self._pending = event
        return event

    # -- DATA and command lines -----------------------------------------------------

    def _data_event(self) -> Event | NeedData | None:
        reader = self._reader
        assert reader is not None
        self._compact()
        out = bytearray()
        try:
            used = reader.feed(self._in, out)
        except LineTooLong:
            self.command = None
            return self._close("line-too-long", replies.LINE_TOO_LONG)
        del self._in[:used]
        if reader.done:
            self._state = State.COMMAND
            self._reader = None
            end = DataEnd(reader.size, reader.error)
            if out:
                self._queued.append(end)
                return DataChunk(bytes(out))
            return end
        if out:
            return DataChunk(bytes(out))
        return NEED_DATA

    # -- commands ------------------------------------------------------------------

    def _command_event(self) -> Event | NeedData | None:
        buf = self._in
        start = self._start
        newline = buf.find(b"\n", start)
        if newline < 0:
            self._compact()
            if len(buf) > COMMAND_LINE_MAX:
                self.command = None
                return self._close("command-too-long", replies.COMMAND_TOO_LONG)
            return NEED_DATA
        raw = bytes(buf[start:newline])
        self._start = newline + 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) >= COMMAND_LINE_MAX or (self._start < len(buf) and not self.esmtp):
            self.command = None
            if len(raw) >= COMMAND_LINE_MAX:
                return self._close("command-too-long", replies.COMMAND_TOO_LONG)
            return self._close("pipelining", replies.PIPELINING_REFUSED)
        line = raw.decode("utf-8", "surrogateescape")
        state = self._state
        if state in AUTH_STATES:
            self.command = _AUTH_STEPS[state]
            if b"\r" in raw or b"\0" in raw:
                self._state = State.COMMAND
                self._send(replies.BAD_CHARACTERS)
                return None
            if self.transcript is not None:
                self.transcript.append((True, MASKED))
            return self._auth_continue(line.strip(" \t"))
        self.command = command = _masked(line)
        if b"\r" in raw or b"\0" in raw:
            self._send(replies.BAD_CHARACTERS)
            return None
        if self.transcript is not None:
            self.transcript.append((True, command))
        return self._command(line)

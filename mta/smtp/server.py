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
import enum
from collections.abc import Callable

import attrs

from mta.config.model import AuthMode, TlsMode
from mta.envelope import Address
from mta.reply import Reply
from mta.smtp import replies
from mta.smtp.address import PathError, parse_mailbox, split_path, valid_helo
from mta.smtp.data import DataReader, LineTooLong
from mta.smtp.events import (
    NEED_DATA,
    REQUESTS,
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
    TransactionReset,
)
from mta.smtp.params import (
    MailParams,
    has_smtputf8,
    parse_mail_params,
    parse_rcpt_params,
)
from mta.smtp.sasl import decode_field, decode_plain

__all__ = ["COMMAND_LINE_MAX", "ServerConnection", "SessionSettings"]

COMMAND_LINE_MAX = 2048
"""A command line (without its CRLF) must be shorter than this (OpenSMTPD's LINE_MAX)."""


@attrs.frozen
class SessionSettings:
    """What one session needs to know about its listener and limits (0 = no limit)."""

    hostname: str  # the name we announce
    peer: str  # the client's IP address as text, or "local"
    max_message_size: int
    max_rcpt: int
    max_mails: int
    tls: TlsMode = TlsMode.NONE  # the listener's TLS mode (NONE when it has no certificate)
    secure: bool = False  # TLS is already up (smtps)
    auth: AuthMode = AuthMode.NONE
    dsn: bool = True  # False with no-dsn
    local: bool = False  # the local socket: authenticated, no AUTH offered


class _State(enum.Enum):
    COMMAND = "command"
    AUTH_PLAIN = "auth-plain"  # waiting for the PLAIN response
    AUTH_USERNAME = "auth-username"
    AUTH_PASSWORD = "auth-password"
    DATA = "data"
    TLS = "tls"  # 220 sent; the driver runs the handshake
    CLOSED = "closed"


_AUTH_STATES = (_State.AUTH_PLAIN, _State.AUTH_USERNAME, _State.AUTH_PASSWORD)

_Request = Hello | StartTls | AuthCredentials | MailFrom | RcptTo | DataStart | DataEnd
_Handler = Callable[["ServerConnection", str, str | None], Event | None]


class ServerConnection:
    """One SMTP session's protocol state."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.secure = settings.secure
        self.authenticated = settings.local
        self.helo: str | None = None
        self.esmtp = False
        self._in = bytearray()
        self._out = bytearray()
        self._eof = False
        self._state = _State.COMMAND
        self._pending: _Request | None = None
        self._queued: collections.deque[Event] = collections.deque()
        self._close_reason: str | None = None
        self._banner_sent = False
        self._tx: MailParams | None = None
        self._rcpts = 0
        self._mails = 0
        self._login_user = ""
        self._reader: DataReader | None = None

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
    def in_transaction(self) -> bool:
        return self._tx is not None

    @property
    def buffered(self) -> int:
        """How many received bytes wait to be parsed (bounded by one read plus one line)."""
        return len(self._in)

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

    def send_reply(self, reply: Reply) -> None:
        """Queue a reply of the driver's own (a 421 on timeout or shutdown)."""
        self._send(reply)
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
        if self._state is _State.TLS:
            raise RuntimeError("STARTTLS was accepted: call tls_established()")
        while True:
            if self._state is _State.DATA:
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
            if self._in:  # plaintext sent after STARTTLS (CVE-2011-0411 style injection)
                self._close("starttls-injection")
            else:
                self._state = _State.TLS
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
            self._state = _State.DATA
            self._reader = DataReader(self.settings.max_message_size)
        else:
            self._pending = request
            raise RuntimeError("end of data is accepted with accept_message()")

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
        if self._state is not _State.TLS:
            raise RuntimeError("tls_established() without an accepted STARTTLS")
        self._state = _State.COMMAND
        self.secure = True
        self.helo = None
        self.esmtp = False
        self.authenticated = self.settings.local
        self._reset_tx()
        self._in.clear()

    # -- internals -------------------------------------------------------------

    @property
    def _peer(self) -> str:
        return self.settings.peer

    def _send(self, reply: Reply) -> None:
        self._out += reply.encode()

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

    def _close(self, reason: str, reply: Reply | None = None) -> ConnectionClosed:
        if reply is not None:
            self._send(reply)
        if self._close_reason is None:
            self._close_reason = reason
        self._state = _State.CLOSED
        self._in.clear()
        self._queued.clear()
        self._reader = None
        return ConnectionClosed(self._close_reason)

    def _reset_tx(self) -> None:
        self._tx = None
        self._rcpts = 0
        self._reader = None

    def _ehlo_reply(self, domain: str) -> Reply:
        settings = self.settings
        extensions = ["8BITMIME", "ENHANCEDSTATUSCODES", f"SIZE {settings.max_message_size}"]
        if settings.dsn:
            extensions.append("DSN")
        extensions += ["PIPELINING", "SMTPUTF8"]
        if self._advertise_tls:
            extensions.append("STARTTLS")
        if self._advertise_auth:
            extensions.append("AUTH PLAIN LOGIN")
        extensions.append("HELP")
        return replies.ehlo(settings.hostname, domain, self._peer, extensions)

    @property
    def _advertise_tls(self) -> bool:
        return self.settings.tls in (TlsMode.STARTTLS, TlsMode.REQUIRE) and not self.secure

    @property
    def _advertise_auth(self) -> bool:
        return (
            self.settings.auth is not AuthMode.NONE
            and self.secure
            and not self.authenticated
            and not self.settings.local
        )

    # -- DATA --------------------------------------------------------------------

    def _data_event(self) -> Event | NeedData | None:
        reader = self._reader
        assert reader is not None
        out = bytearray()
        try:
            used = reader.feed(self._in, out)
        except LineTooLong:
            return self._close("line-too-long", replies.LINE_TOO_LONG)
        del self._in[:used]
        if reader.done:
            self._state = _State.COMMAND
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
        newline = buf.find(b"\n")
        if newline < 0:
            if len(buf) > COMMAND_LINE_MAX:
                return self._close("command-too-long", replies.COMMAND_TOO_LONG)
            return NEED_DATA
        raw = bytes(buf[:newline])
        del buf[: newline + 1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) >= COMMAND_LINE_MAX:
            return self._close("command-too-long", replies.COMMAND_TOO_LONG)
        if buf and not self.esmtp:
            return self._close("pipelining", replies.PIPELINING_REFUSED)
        if b"\r" in raw or b"\0" in raw:
            if self._state in _AUTH_STATES:
                self._state = _State.COMMAND
            self._send(replies.BAD_CHARACTERS)
            return None
        line = raw.decode("utf-8", "surrogateescape")
        if self._state in _AUTH_STATES:
            return self._auth_continue(line.strip(" \t"))
        return self._command(line)

    def _command(self, line: str) -> Event | None:
        head = line[:10].lower()
        if head.startswith("mail from:"):
            verb, args = "MAIL", line[10:]
        elif head.startswith("rcpt to:"):
            verb, args = "RCPT", line[8:]
        else:
            verb, _, args = line.partition(" ")
            verb = verb.upper()
            if verb in ("MAIL", "RCPT"):
                self._send(replies.invalid_arguments(f"Syntax: {_SYNTAX[verb]}"))
                return None
        stripped = args.strip(" \t")
        handler = _COMMANDS.get(verb)
        if handler is None:
            self._send(replies.UNRECOGNIZED)
            return None
        return handler(self, verb, stripped or None)

    def _reply(self, reply: Reply) -> Event | None:
        """Answer a command by the state machine alone (no event)."""
        self._send(reply)
        return None

    def _hello(self, verb: str, args: str | None) -> Event | None:
        if not self._banner_sent:
            return self._reply(replies.NOT_ALLOWED)
        if self.helo is not None:
            return self._reply(replies.already_identified())
        if args is None:
            return self._reply(replies.hello_required(verb))
        if not valid_helo(args):
            return self._reply(replies.invalid_domain())
        return Hello(verb, args)

    def _starttls(self, verb: str, args: str | None) -> Event | None:
        if self.helo is None or self._tx is not None:
            return self._reply(replies.NOT_ALLOWED)
        if self.settings.tls not in (TlsMode.STARTTLS, TlsMode.REQUIRE):
            return self._reply(replies.NOT_SUPPORTED)
        if self.secure:
            return self._reply(replies.ALREADY_SECURE)
        if args is not None:
            return self._reply(replies.TLS_NO_PARAMETERS)
        return StartTls()

    def _auth(self, verb: str, args: str | None) -> Event | None:
        if self.helo is None or self._tx is not None:
            return self._reply(replies.NOT_ALLOWED)
        if self.authenticated:
            return self._reply(replies.already_authenticated())
        if not self._advertise_auth:
            return self._reply(replies.NOT_SUPPORTED)
        if args is None:
            return self._reply(replies.AUTH_NO_PARAMETERS)
        mechanism, _, initial = args.partition(" ")
        initial = initial.strip(" \t")
        if mechanism.upper() == "PLAIN":
            if not initial:
                self._state = _State.AUTH_PLAIN
                return self._reply(replies.AUTH_PROMPT_PLAIN)
            return self._auth_plain(initial)
        if mechanism.upper() == "LOGIN":
            if not initial:
                self._state = _State.AUTH_USERNAME
                return self._reply(replies.AUTH_PROMPT_USERNAME)
            return self._auth_username(initial)
        return self._reply(replies.auth_method(mechanism))

    def _auth_continue(self, line: str) -> Event | None:
        state = self._state
        self._state = _State.COMMAND
        if line == "*":
            return self._reply(replies.AUTH_CANCELLED)
        if state is _State.AUTH_PLAIN:
            return self._auth_plain(line)
        if state is _State.AUTH_USERNAME:
            return self._auth_username(line)
        password = decode_field(line)
        if password is None:
            return self._reply(replies.AUTH_SYNTAX)
        return AuthCredentials("LOGIN", self._login_user, password)

    def _auth_plain(self, response: str) -> Event | None:
        decoded = decode_plain(response)
        if decoded is None:
            return self._reply(replies.AUTH_SYNTAX)
        return AuthCredentials("PLAIN", *decoded)

    def _auth_username(self, response: str) -> Event | None:
        user = decode_field(response)
        if user is None:
            return self._reply(replies.AUTH_SYNTAX)
        self._login_user = user
        self._state = _State.AUTH_PASSWORD
        return self._reply(replies.AUTH_PROMPT_PASSWORD)

    def _path(
        self, args: str | None, *, mail: bool, smtputf8: bool | None
    ) -> tuple[Address, str] | Reply:
        syntax = replies.SENDER_SYNTAX if mail else replies.RECIPIENT_SYNTAX
        split = split_path(args) if args is not None else None
        if split is None:
            return syntax
        path, rest = split
        utf8 = has_smtputf8(rest) if smtputf8 is None else smtputf8
        address = parse_mailbox(path, null_ok=mail, hostname=self.settings.hostname, smtputf8=utf8)
        if address is PathError.SYNTAX:
            return syntax
        if address is PathError.NON_ASCII:
            return replies.UTF8_REQUIRED
        if address is PathError.BAD_UTF8:
            return replies.UTF8_INVALID
        assert isinstance(address, Address)
        return address, rest

    def _mail(self, verb: str, args: str | None) -> Event | None:
        settings = self.settings
        if self.helo is None or self._tx is not None:
            return self._reply(replies.NOT_ALLOWED)
        if settings.tls is TlsMode.REQUIRE and not self.secure:
            return self._reply(replies.MUST_STARTTLS)
        if settings.auth is AuthMode.REQUIRED and not self.authenticated:
            return self._reply(replies.MUST_AUTH)
        if settings.max_mails and self._mails >= settings.max_mails:
            return self._reply(replies.TOO_MANY_MAILS)
        parsed = self._path(args, mail=True, smtputf8=None)
        if isinstance(parsed, Reply):
            return self._reply(parsed)
        sender, rest = parsed
        params = parse_mail_params(rest, dsn=settings.dsn, max_size=settings.max_message_size)
        if isinstance(params, Reply):
            return self._reply(params)
        return MailFrom(sender, params)

    def _rcpt(self, verb: str, args: str | None) -> Event | None:
        settings = self.settings
        if self._tx is None:
            return self._reply(replies.NOT_ALLOWED)
        if settings.max_rcpt and self._rcpts >= settings.max_rcpt:
            return self._reply(replies.TOO_MANY_RECIPIENTS)
        parsed = self._path(args, mail=False, smtputf8=self._tx.smtputf8)
        if isinstance(parsed, Reply):
            return self._reply(parsed)
        rcpt, rest = parsed
        params = parse_rcpt_params(rest, dsn=settings.dsn)
        if isinstance(params, Reply):
            return self._reply(params)
        return RcptTo(rcpt, params)

    def _data(self, verb: str, args: str | None) -> Event | None:
        if self._in:  # RFC 2920: DATA ends a group; content before the 354 is an attack
            return self._close("pipelining", replies.DATA_PIPELINED)
        if args is not None:
            return self._reply(replies.NO_ARGUMENTS)
        if self._tx is None:
            return self._reply(replies.NOT_ALLOWED)
        if self._rcpts == 0:
            return self._reply(replies.NO_RECIPIENT)
        return DataStart()

    def _rset(self, verb: str, args: str | None) -> Event | None:
        if args is not None:
            return self._reply(replies.NO_ARGUMENTS)
        if self.helo is None:
            return self._reply(replies.NOT_ALLOWED)
        self._reset_tx()
        self._send(replies.RSET_OK)
        return TransactionReset()

    def _noop(self, verb: str, args: str | None) -> Event | None:
        return self._reply(replies.NOOP_OK)

    def _quit(self, verb: str, args: str | None) -> Event | None:
        if args is not None:
            return self._reply(replies.NO_ARGUMENTS)
        return self._close("quit", replies.BYE)

    def _fixed(self, verb: str, args: str | None) -> Event | None:
        """HELP and WIZ: no arguments, a fixed reply."""
        if args is not None:
            return self._reply(replies.NO_ARGUMENTS)
        return self._reply(replies.HELP if verb == "HELP" else replies.WIZ)

    def _verify(self, verb: str, args: str | None) -> Event | None:
        """VRFY / EXPN are disabled: RFC 5321 7.3 requires 252 then."""
        if args is None:
            return self._reply(replies.VRFY_ARGUMENT if verb == "VRFY" else replies.EXPN_ARGUMENT)
        return self._reply(replies.VRFY if verb == "VRFY" else replies.EXPN)


_SYNTAX = {"MAIL": "MAIL FROM:<address>", "RCPT": "RCPT TO:<address>"}

_COMMANDS: dict[str, _Handler] = {
    "HELO": ServerConnection._hello,
    "EHLO": ServerConnection._hello,
    "STARTTLS": ServerConnection._starttls,
    "AUTH": ServerConnection._auth,
    "MAIL": ServerConnection._mail,
    "RCPT": ServerConnection._rcpt,
    "DATA": ServerConnection._data,
    "RSET": ServerConnection._rset,
    "NOOP": ServerConnection._noop,
    "QUIT": ServerConnection._quit,
    "HELP": ServerConnection._fixed,
    "WIZ": ServerConnection._fixed,
    "VRFY": ServerConnection._verify,
    "EXPN": ServerConnection._verify,
}

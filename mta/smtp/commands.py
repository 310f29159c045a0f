"""The SMTP commands: argument checks and replies of OpenSMTPD's ``smtp_session.c``
(reference section 3), as a mixin of :class:`mta.smtp.server.ServerConnection`.

A handler answers by itself (and returns None) or returns the request event the
driver must decide on.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable

from mta.config.model import AuthMode, TlsMode
from mta.envelope import Address
from mta.reply import Reply
from mta.smtp import replies
from mta.smtp.address import PathError, parse_mailbox, split_path, valid_helo
from mta.smtp.data import DataReader
from mta.smtp.events import (
    Ask,
    AuthCredentials,
    ConnectionClosed,
    DataStart,
    Event,
    Hello,
    MailFrom,
    RcptTo,
    StartTls,
    TransactionReset,
)
from mta.smtp.params import MailParams, has_smtputf8, parse_mail_params, parse_rcpt_params
from mta.smtp.sasl import decode_field, decode_plain
from mta.smtp.state import SessionSettings, State

__all__ = ["Commands"]


@functools.lru_cache(maxsize=512)
def _encode(reply: Reply) -> bytes:
    """Replies repeat (the fixed ones above all): encode each once."""
    return reply.encode()


class Commands:
    """Command handlers; :class:`~mta.smtp.server.ServerConnection` owns the state."""

    settings: SessionSettings
    secure: bool
    authenticated: bool
    helo: str | None
    esmtp: bool
    _in: bytearray
    _start: int
    _out: bytearray
    _state: State
    _queued: collections.deque[Event]
    _close_reason: str | None
    _banner_sent: bool
    _tx: MailParams | None
    _rcpts: int
    _mails: int
    _login_user: str
    _reader: DataReader | None
    transcript: list[tuple[bool, str]] | None
    ask: frozenset[str]
    _refused: bool
    command: str | None
    failures: list[tuple[str | None, Reply]]

    @property
    def _peer(self) -> str:
        return self.settings.peer

    def _unread(self) -> int:
        """How many received bytes are not parsed yet."""
        return len(self._in) - self._start

    def _compact(self) -> None:
        """Drop the parsed bytes from the input buffer."""
        if self._start:
            del self._in[: self._start]
            self._start = 0

    def _send(self, reply: Reply) -> None:
        """Queue ``reply`` to the command being answered (a 4xx or 5xx one is
        also noted in ``failures``, for the driver's log)."""
        if reply.code >= 400:
            self.failures.append((self.command, reply))
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        encoded = _encode(reply)
        self._out += encoded
        if self.transcript is not None:
            lines = encoded.decode("utf-8", "surrogateescape").split("\r\n")[:-1]
            self.transcript += [(False, line) for line in lines]

    def _close(self, reason: str, reply: Reply | None = None) -> ConnectionClosed:
        if reply is not None:
            self._send(reply)
        if self._close_reason is None:
            self._close_reason = reason
        self._state = State.CLOSED
        self._in.clear()
        self._start = 0
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
    # -- commands ------------------------------------------------------------

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
        stripped = args.strip(" \t") or None
        if self._refused and verb != "QUIT":
            return self._reply(replies.NOT_ALLOWED)
        if verb in self.ask:
            return Ask(verb, stripped)
        return self._run_command(verb, stripped)

    def _run_command(self, verb: str, args: str | None) -> Event | None:
        handler = _COMMANDS.get(verb)
        if handler is None:
            self._send(replies.UNRECOGNIZED)
            return None
        return handler(self, verb, args)

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
                self._state = State.AUTH_PLAIN
                return self._reply(replies.AUTH_PROMPT_PLAIN)
            return self._auth_plain(initial)
        if mechanism.upper() == "LOGIN":
            if not initial:
                self._state = State.AUTH_USERNAME
                return self._reply(replies.AUTH_PROMPT_USERNAME)
            return self._auth_username(initial)
        return self._reply(replies.auth_method(mechanism))

    def _auth_continue(self, line: str) -> Event | None:
        state = self._state
        self._state = State.COMMAND
        if line == "*":
            return self._reply(replies.AUTH_CANCELLED)
        if state is State.AUTH_PLAIN:
            return self._auth_plain(line)
        if state is State.AUTH_USERNAME:
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
        self._state = State.AUTH_PASSWORD
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
        if self._unread():  # RFC 2920: DATA ends a group; content before the 354 is an attack
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

_COMMANDS: dict[str, Callable[[Commands, str, str | None], Event | None]] = {
    "HELO": Commands._hello,
    "EHLO": Commands._hello,
    "STARTTLS": Commands._starttls,
    "AUTH": Commands._auth,
    "MAIL": Commands._mail,
    "RCPT": Commands._rcpt,
    "DATA": Commands._data,
    "RSET": Commands._rset,
    "NOOP": Commands._noop,
    "QUIT": Commands._quit,
    "HELP": Commands._fixed,
    "WIZ": Commands._fixed,
    "VRFY": Commands._verify,
    "EXPN": Commands._verify,
}

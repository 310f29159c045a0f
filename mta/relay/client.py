"""The relay's SMTP / LMTP client, sans-IO: replies in as bytes, events out.

A :class:`Client` is one session with one remote host, sending the
transactions it was given (connection reuse: one after the other, RSET
between when one was left open), then QUIT.  A ``keepalive`` client does not
QUIT when it is through: it goes :attr:`~Client.idle`, and the driver either
gives it more with :meth:`~Client.add_transactions` (numbered after the
earlier ones) or ends it with :meth:`~Client.finish`.  It never touches a socket or a
clock; a driver feeds it with :meth:`Client.receive_data`,
:meth:`~Client.receive_eof`, :meth:`~Client.tls_established` and
:meth:`~Client.fail` (timeouts, I/O and handshake errors), streams content
through :meth:`~Client.content` / :meth:`~Client.end_content`, and handles the
:mod:`mta.relay.events` every call returns, in order.  :attr:`Client.step`
names what the client waits for, so the driver applies that step's RFC 5321
timeout (:mod:`mta.relay.timeouts`).

The session, as OpenSMTPD's ``mta_session.c`` runs it:

- The banner must be 2xx.  ``EHLO`` (``LHLO`` for LMTP); a 5xx falls back to
  ``HELO`` unless the session needs extensions (LMTP, credentials, TLS
  required and not yet on), a 4xx fails the session.
- ``STARTTLS`` when offered, unless the policy is ``NONE`` or TLS is already on
  (``SMTPS``).  ``OPPORTUNISTIC``: not offered or refused, the session goes on
  in plaintext.  ``REQUIRED``: either fails the session ("TLS required but not
  supported by remote host").  After the 220 the client emits
  :class:`~mta.relay.events.StartTls` and throws away whatever the server sent
  after that 220 (CVE-2011-0411 style injection); once the driver calls
  ``tls_established`` it forgets the extensions and says EHLO again.
  Certificate checking (``verify``) is the driver's.
- ``AUTH`` only over TLS ("Refuse to AUTH over insecure channel" otherwise):
  PLAIN (initial response ``\\0user\\0password``) if offered, else LOGIN.
  A refusal fails the session, temporarily (OpenSMTPD: an error of the route).
- Per transaction, before any command: larger than the remote's SIZE limit:
  5.3.4; 8-bit content and no 8BITMIME: 5.6.3 (no MIME downgrade); SMTPUTF8
  needed (flagged, or any non-ASCII address) and not offered: 5.6.7; all
  permanent failures of its recipients.  An address that cannot go on a
  command line (CR, LF, NUL) is refused for good too (5.1.7 / 5.1.3).
- ``MAIL FROM`` with ``SIZE=`` (when offered), ``BODY=8BITMIME``,
  ``SMTPUTF8``, and ``RET=`` / ``ENVID=`` only when the remote offers DSN;
  ``RCPT TO`` with ``NOTIFY=`` / ``ORCPT=`` likewise.  Without DSN, a success
  for a ``NOTIFY=SUCCESS`` recipient is flagged ``relayed_dsn``.
- With PIPELINING, MAIL, the RCPTs and DATA go in one write and replies are
  matched in order (RFC 2920); EHLO, STARTTLS and AUTH are never pipelined.
  Without it, one command per reply, and DATA is not sent when no recipient
  was accepted.  A 354 after every recipient was refused (pipelined) is
  answered by an empty message, whose reply is ignored.
- Per recipient: 2xx accepted, 4xx temporary, 5xx permanent failure.  The
  recipient-limit reply (452, or 552 saying "too many recipients", RFC 5321
  4.5.3.1.10) puts that recipient and, unpipelined, the ones not yet sent
  into a further transaction on the same session, provided this one got at
  least one recipient accepted (otherwise they fail temporarily).  At most
  ``rcpt_max`` (100) RCPTs go in one transaction in the first place.
- ``max_failures`` (``mta limit max-failures-per-session``, 25) recipients
  refused in a row end the session, as OpenSMTPD: unpipelined, the
  recipients not yet sent fail temporarily ("Too many consecutive errors,
  closing connection") and the accepted ones still get the message; when the
  transaction is over, the session QUITs and the later transactions fail
  temporarily too (a pipelined transaction is always let finish first).
- Content goes through :class:`~mta.relay.data.DataEncoder`: CRLF only,
  dot-stuffed, ending in ``CRLF.CRLF``.  8-bit content to a server without
  8BITMIME is never sent: the recipients fail with 5.6.3 and the connection
  is dropped before the final dot, so the server discards the transaction.
- The reply after the dot settles every accepted recipient; LMTP gives one
  reply per accepted recipient, in RCPT order (RFC 2033).
- A 421 at any point, a malformed reply (refused by the strict
  :class:`~mta.enqueue.smtp.ReplyParser`: one code per multi-line reply, at
  most ``reply_line_max`` octets a line and ``reply_lines_max`` lines; or text
  that is not printable ASCII), a reply nobody asked for, the connection
  closing early, TLS or AUTH refused: :class:`~mta.relay.events.SessionFailed`,
  a temporary failure of every recipient not yet settled, then
  :class:`~mta.relay.events.Close`.  Reply text reaches results only escaped
  and bounded (:func:`mta.log.visible`).

With ``reports=True`` the client also emits the ``smtp-out`` report events
of what it says and hears (:class:`~mta.relay.events.Report`, made by
:class:`~mta.relay.reports.ClientReports`) for a relay action's filters.

Left to the driver: connecting (and the next MX after a ``SessionFailed``),
the TLS handshake (SNI, ``verify``; OpenSMTPD retries in plaintext when an
opportunistic handshake fails), applying each step's timeout and calling
:meth:`Client.fail` when it expires, and reading the message content.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Callable, Sequence

import attrs

from mta.delivery.result import Outcome, Result
from mta.enqueue.smtp import ProtocolError, ReplyParser, command, mail_from, rcpt_to
from mta.envelope import DsnNotify, DsnRet
from mta.filters.events import ReportPayload
from mta.log import visible
from mta.relay.data import DataEncoder, has_8bit
from mta.relay.events import (
    Close,
    Event,
    RecipientResult,
    Report,
    Send,
    SendContent,
    SessionFailed,
    StartTls,
    TransactionDone,
)
from mta.relay.replies import (
    Extensions,
    check,
    result_of,
    tempfail_of,
    too_many_recipients,
)
from mta.relay.reports import ClientReports
from mta.relay.timeouts import Step
from mta.relay.transaction import Transaction
from mta.reply import Reply
from mta.smtp.params import encode_notify, encode_xtext
from mta.status import StatusCode

__all__ = ["Client", "ClientConfig", "Credentials", "TlsPolicy"]

QUIT = b"QUIT\r\n"
TOO_MANY_FAILURES = Result.tempfail("Too many consecutive errors, closing connection")


class TlsPolicy(enum.Enum):
    """How the session gets (or does without) TLS."""

    NONE = "none"  # smtp+notls://, lmtp://
    OPPORTUNISTIC = "opportunistic"  # smtp://: STARTTLS when offered
    REQUIRED = "required"  # smtp+tls://, or the action's ``tls``: STARTTLS or fail
    SMTPS = "smtps"  # smtps://: TLS from the first byte


@attrs.frozen
class Credentials:
    """``auth <table>`` credentials for the URL's ``label@``."""

    user: str
    password: str = attrs.field(repr=False)


def _check_helo(instance: ClientConfig, attribute: attrs.Attribute[str], value: str) -> None:
    if not value or any(char.isspace() or char == "\0" for char in value):
        raise ValueError(f"invalid HELO name {value!r}")


@attrs.frozen
class ClientConfig:
    """One session's settings; ``verify`` is for the driver (``no-verify``: False)."""

    helo: str = attrs.field(validator=_check_helo)
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    verify: bool = True
    lmtp: bool = False
    credentials: Credentials | None = None
    rcpt_max: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    max_failures: int = attrs.field(default=25, validator=attrs.validators.ge(0))
    reply_line_max: int = 1000
    reply_lines_max: int = 100


class _Kind(enum.Enum):
    """A command whose reply is awaited."""

    GREETING = enum.auto()
    EHLO = enum.auto()
    HELO = enum.auto()
    STARTTLS = enum.auto()
    AUTH_LOGIN = enum.auto()
    AUTH_USER = enum.auto()
    AUTH_FINAL = enum.auto()
    MAIL = enum.auto()
    RCPT = enum.auto()
    DATA = enum.auto()
    DOT = enum.auto()
    DOT_DISCARD = enum.auto()
    RSET = enum.auto()
    QUIT = enum.auto()


_STEP = {
    _Kind.GREETING: Step.GREETING,
    _Kind.EHLO: Step.HELLO,
    _Kind.HELO: Step.HELLO,
    _Kind.STARTTLS: Step.STARTTLS,
    _Kind.AUTH_LOGIN: Step.AUTH,
    _Kind.AUTH_USER: Step.AUTH,
    _Kind.AUTH_FINAL: Step.AUTH,
    _Kind.MAIL: Step.MAIL,
    _Kind.RCPT: Step.RCPT,
    _Kind.DATA: Step.DATA_INIT,
    _Kind.DOT: Step.DATA_TERM,
    _Kind.DOT_DISCARD: Step.DATA_TERM,
    _Kind.RSET: Step.RSET,
    _Kind.QUIT: Step.QUIT,
}


@attrs.frozen
class _Pending:
    kind: _Kind
    rcpt: int = -1  # the recipient a RCPT (or an LMTP final reply) is about


@attrs.define
class _Batch:
    """One transaction on the wire: some recipients of one of the messages."""

    tx: int
    rcpts: list[int]
    pipelined: bool = False
    mail_line: bytes = b""
    rcpt_lines: dict[int, bytes] = attrs.Factory(dict)
    sent: int = 0  # RCPTs sent so far, unpipelined
    mail_ok: bool = False
    accepted: list[int] = attrs.Factory(list)
    ever_accepted: bool = False
    deferred: list[int] = attrs.Factory(list)
    deferral: Reply | None = None
    completed: bool = False  # the reply after the dot came


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class Client:
    """One relay session; see the module docstring for the protocol it runs."""

    def __init__(
        self,
        config: ClientConfig,
        transactions: Sequence[Transaction],
        *,
        keepalive: bool = False,
        reports: bool = False,
    ) -> None:
        if any(not tx.recipients for tx in transactions):
            raise ValueError("a transaction needs at least one recipient")
        self.config = config
        self.keepalive = keepalive
        self.transactions = tuple(transactions)
        self._idle = False
        self._parser = self._new_parser()
        self._pending: deque[_Pending] = deque([_Pending(_Kind.GREETING)])
        self._out: list[Event] = []
        self._extensions = Extensions()
        self._secure = config.tls is TlsPolicy.SMTPS
        self._handshake = False
        self._encoder: DataEncoder | None = None
        self._closed = False
        self._settled: set[tuple[int, int]] = set()
        self._left = [len(tx.recipients) for tx in self.transactions]
        self._batches: deque[_Batch] = deque()
        self._failures = 0  # recipients refused in a row (max-failures-per-session)
        self._reports = ClientReports(self._emit if reports else None)
        self._queue(0)
        self._handlers: dict[_Kind, Callable[[Reply, int], None]] = {
            _Kind.GREETING: self._on_greeting,
            _Kind.EHLO: self._on_ehlo,
            _Kind.HELO: self._on_helo,
            _Kind.STARTTLS: self._on_starttls,
            _Kind.AUTH_LOGIN: self._on_auth_login,
            _Kind.AUTH_USER: self._on_auth_user,
            _Kind.AUTH_FINAL: self._on_auth_final,
            _Kind.MAIL: self._on_mail,
            _Kind.RCPT: self._on_rcpt,
            _Kind.DATA: self._on_data,
            _Kind.DOT: self._on_dot,
            _Kind.DOT_DISCARD: self._on_dot_discard,
            _Kind.RSET: self._on_rset,
            _Kind.QUIT: self._on_quit,
        }

    def _queue(self, first: int) -> None:
        """Batches for the transactions from index ``first`` on."""
        for index in range(first, len(self.transactions)):
            count = len(self.transactions[index].recipients)
            for start in range(0, count, self.config.rcpt_max):
                rcpts = list(range(start, min(start + self.config.rcpt_max, count)))
                self._batches.append(_Batch(index, rcpts))

    # -- connection reuse ---------------------------------------------------

    @property
    def idle(self) -> bool:
        """A ``keepalive`` client sent everything it had and waits for more."""
        return self._idle and not self._closed

    def add_transactions(self, transactions: Sequence[Transaction]) -> list[Event]:
        """More transactions for an :attr:`idle` client; they are numbered after
        the earlier ones (events name them so)."""
        if not self.idle:
            raise RuntimeError("add_transactions on a client that is not idle")
        if not transactions or any(not tx.recipients for tx in transactions):
            raise ValueError("a transaction needs at least one recipient")
        first = len(self.transactions)
        self.transactions += tuple(transactions)
        self._left.extend(len(tx.recipients) for tx in transactions)
        self._queue(first)
        self._idle = False
        self._next_batch()
        return self._flush()

    def finish(self) -> list[Event]:
        """End an :attr:`idle` client's session: QUIT."""
        if not self.idle:
            raise RuntimeError("finish on a client that is not idle")
        self._idle = False
        self._command(_Kind.QUIT, QUIT)
        return self._flush()

    # -- what the driver asks -----------------------------------------------

    @property
    def step(self) -> Step | None:
        """What the client waits for (None: nothing: the session is over, or
        the client is :attr:`idle`)."""
        if self._closed:
            return None
        if self._handshake:
            return Step.TLS_HANDSHAKE
        if self._encoder is not None:
            return Step.DATA_BLOCK
        return _STEP[self._pending[0].kind] if self._pending else None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def reports(self) -> bool:
        """The client emits :class:`~mta.relay.events.Report` events."""
        return self._reports.emit is not None

    @property
    def secure(self) -> bool:
        """TLS is on (SMTPS, or after a STARTTLS handshake)."""
        return self._secure

    @property
    def extensions(self) -> Extensions:
        """What the remote host offers (nothing before EHLO, after HELO)."""
        return self._extensions

    # -- input --------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the server; ignored while the TLS handshake is pending."""
        while data and not self._closed and not self._handshake:
            cut = data.find(b"\n") + 1 or len(data)
            piece, data = data[:cut], data[cut:]
            self._reports.received(piece)
            try:
                replies = self._parser.feed(piece)
            except ProtocolError as exc:
                self._fail(Result.tempfail(f"Malformed reply: {visible(str(exc), 200)}"))
                break
            for reply in replies:
                self._on_reply(reply)
        return self._flush()

    def receive_eof(self) -> list[Event]:
        """The server closed the connection."""
        if self._closed:
            return self._flush()
        if self._pending and self._pending[0].kind is _Kind.QUIT:
            self._close()
            return self._flush()
        reason = "Connection closed by remote host"
        if self._parser.pending:
            reason += " in the middle of a reply"
        elif self._encoder is not None or (
            self._pending and self._pending[0].kind in (_Kind.DOT, _Kind.DOT_DISCARD)
        ):
            reason += " during DATA"
        self._fail(Result.tempfail(reason))
        return self._flush()

    def tls_established(self) -> list[Event]:
        """The TLS handshake that :class:`StartTls` asked for succeeded."""
        if not self._handshake:
            raise RuntimeError("tls_established without a StartTls")
        self._handshake = False
        self._secure = True
        self._extensions = Extensions()
        self._hello()
        return self._flush()

    def fail(self, reason: str) -> list[Event]:
        """The driver gave up on the session (timeout, I/O or TLS handshake error)."""
        self._fail(Result.tempfail(visible(reason, 200)))
        return self._flush()

    def content(self, chunk: bytes) -> list[Event]:
        """A piece of the message after :class:`SendContent`: its DATA bytes to send."""
        if self._closed:
            return self._flush()
        if self._encoder is None:
            raise RuntimeError("content outside DATA")
        if not self._extensions.eightbitmime and has_8bit(chunk):
            batch = self._batches[0]
            refusal = Result.permfail(
                "Remote host does not support 8BITMIME and the message has 8-bit content",
                StatusCode(5, 6, 3),
            )
            for rcpt in batch.accepted:
                self._settle(batch.tx, rcpt, refusal)
            self._fail(Result.tempfail("Connection dropped during DATA (8-bit content)"))
            return self._flush()
        data = self._encoder.feed(chunk)
        self._reports.content(data)
        return [Send(data)] if data else []

    def end_content(self) -> list[Event]:
        """The whole message went through :meth:`content`: the final dot."""
        if self._closed:
            return self._flush()
        if self._encoder is None:
            raise RuntimeError("end_content outside DATA")
        tail = self._encoder.finish()
        self._send(tail)
        self._encoder = None
        self._reports.content(tail)
        self._reports.command(b".")
        batch = self._batches[0]
        if self.config.lmtp:
            self._pending.extend(_Pending(_Kind.DOT, rcpt) for rcpt in batch.accepted)
        else:
            self._pending.append(_Pending(_Kind.DOT))
        return self._flush()

    # -- replies ------------------------------------------------------------

    def _on_reply(self, reply: Reply) -> None:
        if self._closed or self._handshake:
            return
        malformed = check(reply)
        if malformed is not None:
            self._fail(Result.tempfail(malformed))
            return
        if not self._pending:
            if reply.code == 421:
                self._fail(tempfail_of(reply))
            else:
                self._fail(Result.tempfail("Remote host sent unexpected data"))
            return
        pending = self._pending.popleft()
        if reply.code == 421 and pending.kind is not _Kind.QUIT:
            self._fail(tempfail_of(reply))
            return
        self._handlers[pending.kind](reply, pending.rcpt)

    def _on_greeting(self, reply: Reply, _rcpt: int) -> None:
        if 200 <= reply.code < 300:
            self._reports.greeting()
            self._hello()
        else:
            self._fail(tempfail_of(reply, "Banner rejected: "), quit=True)

    def _hello(self) -> None:
        verb = "LHLO" if self.config.lmtp else "EHLO"
        self._command(_Kind.EHLO, command(verb, self.config.helo))
        self._reports.identify(verb, self.config.helo)

    def _on_ehlo(self, reply: Reply, _rcpt: int) -> None:
        if 200 <= reply.code < 300:
            self._extensions = Extensions.parse(reply)
            self._after_hello()
        elif reply.code >= 500 and not self._needs_esmtp():
            self._command(_Kind.HELO, command("HELO", self.config.helo))
            self._reports.identify("HELO", self.config.helo)
        else:
            verb = "LHLO" if self.config.lmtp else "EHLO"
            self._fail(tempfail_of(reply, f"{verb} rejected: "), quit=True)

    def _needs_esmtp(self) -> bool:
        return (
            self.config.lmtp
            or self.config.credentials is not None
            or (self.config.tls is TlsPolicy.REQUIRED and not self._secure)
        )

    def _on_helo(self, reply: Reply, _rcpt: int) -> None:
        if 200 <= reply.code < 300:
            self._extensions = Extensions()
            self._after_hello()
        else:
            self._fail(tempfail_of(reply, "HELO rejected: "), quit=True)

    def _after_hello(self) -> None:
        wants_tls = self.config.tls in (TlsPolicy.OPPORTUNISTIC, TlsPolicy.REQUIRED)
        if wants_tls and not self._secure:
            if self._extensions.starttls:
                self._command(_Kind.STARTTLS, command("STARTTLS"))
                return
            if self.config.tls is TlsPolicy.REQUIRED:
                reason = "TLS required but not supported by remote host"
                self._fail(Result.tempfail(reason), quit=True)
                return
        self._authenticate()

    def _on_starttls(self, reply: Reply, _rcpt: int) -> None:
        if 200 <= reply.code < 300:
            self._handshake = True
            self._parser = self._new_parser()  # what came after the 220 is not TLS
            self._out.append(StartTls())
        elif self.config.tls is TlsPolicy.REQUIRED:
            self._fail(tempfail_of(reply, "STARTTLS rejected: "), quit=True)
        else:
            self._authenticate()

    def _authenticate(self) -> None:
        credentials = self.config.credentials
        if credentials is None:
            self._next_batch()
        elif not self._secure:
            self._fail(Result.tempfail("Refuse to AUTH over insecure channel"), quit=True)
        elif "PLAIN" in self._extensions.auth:
            plain = _b64(f"\0{credentials.user}\0{credentials.password}")
            self._command(_Kind.AUTH_FINAL, command("AUTH", f"PLAIN {plain}"))
        elif "LOGIN" in self._extensions.auth:
            self._command(_Kind.AUTH_LOGIN, command("AUTH", "LOGIN"))
        else:
            self._fail(Result.tempfail("No supported AUTH mechanism"), quit=True)

    def _on_auth_login(self, reply: Reply, _rcpt: int) -> None:
        assert self.config.credentials is not None
        if reply.code == 334:
            user = command(_b64(self.config.credentials.user))
            self._command(_Kind.AUTH_USER, user, secret=True)
        else:
            self._auth_failed(reply)

    def _on_auth_user(self, reply: Reply, _rcpt: int) -> None:
        assert self.config.credentials is not None
        if reply.code == 334:
            password = command(_b64(self.config.credentials.password))
            self._command(_Kind.AUTH_FINAL, password, secret=True)
        else:
            self._auth_failed(reply)

    def _on_auth_final(self, reply: Reply, _rcpt: int) -> None:
        if 200 <= reply.code < 300:
            self._reports.auth(self.config.credentials, ok=True)
            self._next_batch()
        else:
            self._auth_failed(reply)

    def _auth_failed(self, reply: Reply) -> None:
        self._reports.auth(self.config.credentials, ok=False)
        self._fail(tempfail_of(reply, "AUTH rejected: "), quit=True)

    # -- transactions -------------------------------------------------------

    def _next_batch(self) -> None:
        while self._batches:
            batch = self._batches[0]
            if self._prepare(batch):
                self._start(batch)
                return
            self._batches.popleft()
        if self.keepalive:
            self._idle = True
        else:
            self._command(_Kind.QUIT, QUIT)

    def _prepare(self, batch: _Batch) -> bool:
        """Build the batch's command lines, or refuse its recipients (False)."""
        tx = self.transactions[batch.tx]
        ext = self._extensions
        addresses = [tx.sender] + [tx.recipients[rcpt].address for rcpt in batch.rcpts]
        utf8 = tx.smtputf8 or not all(address.isascii() for address in addresses)
        refusal: Result | None = None
        if ext.size and tx.size is not None and tx.size > ext.size:
            refusal = Result.permfail(
                f"Message is too large for remote host ({tx.size} > {ext.size} octets)",
                StatusCode(5, 3, 4),
            )
        elif tx.eight_bit and not ext.eightbitmime:
            refusal = Result.permfail("Remote host does not support 8BITMIME", StatusCode(5, 6, 3))
        elif utf8 and not ext.smtputf8:
            refusal = Result.permfail("Remote host does not support SMTPUTF8", StatusCode(5, 6, 7))
        params: list[str] = []
        if ext.size is not None and tx.size is not None:
            params.append(f"SIZE={tx.size}")
        if tx.eight_bit:
            params.append("BODY=8BITMIME")
        if utf8:
            params.append("SMTPUTF8")
        if ext.dsn and tx.ret is not DsnRet.NONE:
            params.append(f"RET={tx.ret.value}")
        if ext.dsn and tx.envid:
            params.append(f"ENVID={encode_xtext(tx.envid)}")
        if refusal is None:
            try:
                batch.mail_line = mail_from(tx.sender, params)
            except ValueError:
                refusal = Result.permfail("Invalid sender address", StatusCode(5, 1, 7))
        if refusal is not None:
            for rcpt in batch.rcpts:
                self._settle(batch.tx, rcpt, refusal)
            return False
        for rcpt in list(batch.rcpts):
            recipient = tx.recipients[rcpt]
            rcpt_params: list[str] = []
            notify = encode_notify(recipient.notify)
            if ext.dsn and notify is not None:
                rcpt_params.append(f"NOTIFY={notify}")
            kind, semi, address = recipient.orcpt.partition(";")
            if ext.dsn and semi and kind and address:
                rcpt_params.append(f"ORCPT={kind};{encode_xtext(address)}")
            try:
                batch.rcpt_lines[rcpt] = rcpt_to(recipient.address, rcpt_params)
            except ValueError:
                batch.rcpts.remove(rcpt)
                self._settle(
                    batch.tx,
                    rcpt,
                    Result.permfail("Invalid recipient address", StatusCode(5, 1, 3)),
                )
        return bool(batch.rcpts)

    def _start(self, batch: _Batch) -> None:
        batch.pipelined = self._extensions.pipelining
        lines = [batch.mail_line]
        self._pending.append(_Pending(_Kind.MAIL))
        if batch.pipelined:
            for rcpt in batch.rcpts:
                lines.append(batch.rcpt_lines[rcpt])
                self._pending.append(_Pending(_Kind.RCPT, rcpt))
            lines.append(command("DATA"))
            self._pending.append(_Pending(_Kind.DATA))
            batch.sent = len(batch.rcpts)
        self._send(b"".join(lines))
        self._reports.commands(b"".join(lines))

    def _on_mail(self, reply: Reply, _rcpt: int) -> None:
        batch = self._batches[0]
        if 200 <= reply.code < 300:
            batch.mail_ok = True
            self._reports.mail(self.transactions[batch.tx])
            if not batch.pipelined:
                self._send_rcpt(batch)
            return
        result = result_of(reply)
        for rcpt in batch.rcpts:
            self._settle(batch.tx, rcpt, result)
        if not batch.pipelined:
            self._finish(batch)  # otherwise the replies to RCPT and DATA are still to come

    def _send_rcpt(self, batch: _Batch) -> None:
        rcpt = batch.rcpts[batch.sent]
        batch.sent += 1
        self._command(_Kind.RCPT, batch.rcpt_lines[rcpt], rcpt)
        self._reports.envelope(self.transactions[batch.tx], rcpt)

    def _on_rcpt(self, reply: Reply, rcpt: int) -> None:
        batch = self._batches[0]
        if not batch.mail_ok:
            return  # MAIL was refused: this recipient has its result already
        self._reports.rcpt(self.transactions[batch.tx], rcpt, reply.code, pipelined=batch.pipelined)
        if 200 <= reply.code < 300:
            batch.accepted.append(rcpt)
            batch.ever_accepted = True
            self._failures = 0
        elif too_many_recipients(reply):
            batch.deferred.append(rcpt)
            batch.deferral = batch.deferral or reply
        else:
            self._settle(batch.tx, rcpt, result_of(reply))
            self._failures += 1
        if batch.pipelined:
            return
        if batch.sent < len(batch.rcpts) and self._too_many_failures():
            for unsent in batch.rcpts[batch.sent :]:
                self._settle(batch.tx, unsent, TOO_MANY_FAILURES)
            batch.sent = len(batch.rcpts)
        if batch.sent < len(batch.rcpts):
            if not batch.deferred:
                self._send_rcpt(batch)
                return
            batch.deferred.extend(batch.rcpts[batch.sent :])
            batch.sent = len(batch.rcpts)
        if batch.accepted:
            self._command(_Kind.DATA, command("DATA"))
        else:
            self._finish(batch)

    def _on_data(self, reply: Reply, _rcpt: int) -> None:
        batch = self._batches[0]
        if batch.mail_ok:  # a refused MAIL was not reported
            self._reports.data(self.transactions[batch.tx], reply.code)
        if reply.code == 354:
            if batch.accepted:
                self._encoder = DataEncoder()
                self._out.append(SendContent(batch.tx))
            else:  # pipelined, every recipient refused, and still 354: send nothing
                self._command(_Kind.DOT_DISCARD, b".\r\n")
            return
        if reply.code < 400:
            self._fail(Result.tempfail(f"Unexpected reply to DATA: {visible(reply.text, 200)}"))
            return
        result = result_of(reply)
        for rcpt in batch.accepted:
            self._settle(batch.tx, rcpt, result)
        self._finish(batch)

    def _on_dot(self, reply: Reply, rcpt: int) -> None:
        batch = self._batches[0]
        self._reports.end(self.transactions[batch.tx], reply.code)
        result = result_of(reply)
        if rcpt < 0:  # SMTP: one reply for the message
            for accepted in batch.accepted:
                self._settle(batch.tx, accepted, result)
        else:  # LMTP: one reply per accepted recipient, in RCPT order
            self._settle(batch.tx, rcpt, result)
            if self._pending and self._pending[0].kind is _Kind.DOT:
                return
        batch.completed = True
        self._finish(batch)

    def _on_dot_discard(self, reply: Reply, _rcpt: int) -> None:
        batch = self._batches[0]
        if batch.mail_ok:
            self._reports.discard(self.transactions[batch.tx])
        batch.mail_ok = True  # whatever the server made of it, RSET starts afresh
        self._finish(batch)

    def _finish(self, batch: _Batch) -> None:
        """The batch is over: queue its deferred recipients, RSET if it is left open."""
        self._batches.popleft()
        if batch.deferred:
            if batch.ever_accepted:
                self._batches.appendleft(_Batch(batch.tx, batch.deferred))
            else:
                assert batch.deferral is not None
                result = tempfail_of(batch.deferral)
                for rcpt in batch.deferred:
                    self._settle(batch.tx, rcpt, result)
        if self._too_many_failures():
            self._fail(TOO_MANY_FAILURES, quit=True)
        elif batch.mail_ok and not batch.completed:
            self._command(_Kind.RSET, command("RSET"))
        else:
            self._next_batch()

    def _too_many_failures(self) -> bool:
        limit = self.config.max_failures
        return limit > 0 and self._failures >= limit

    def _on_rset(self, reply: Reply, _rcpt: int) -> None:
        if 200 <= reply.code < 300:
            self._next_batch()
        else:
            self._fail(tempfail_of(reply, "RSET rejected: "), quit=True)

    def _on_quit(self, reply: Reply, _rcpt: int) -> None:
        self._close()

    # -- bookkeeping --------------------------------------------------------

    def _new_parser(self) -> ReplyParser:
        return ReplyParser(
            line_max=self.config.reply_line_max, lines_max=self.config.reply_lines_max
        )

    def _send(self, data: bytes) -> None:
        self._out.append(Send(data))

    def _command(self, kind: _Kind, line: bytes, rcpt: int = -1, *, secret: bool = False) -> None:
        self._send(line)
        self._pending.append(_Pending(kind, rcpt))
        self._reports.command(line, secret=secret)

    def _emit(self, payload: ReportPayload) -> None:
        self._out.append(Report(payload))

    def _settle(self, tx: int, rcpt: int, result: Result) -> None:
        if (tx, rcpt) in self._settled:
            return
        self._settled.add((tx, rcpt))
        relayed = (
            result.outcome is Outcome.OK
            and not self._extensions.dsn
            and DsnNotify.SUCCESS in self.transactions[tx].recipients[rcpt].notify
        )
        self._out.append(RecipientResult(tx, rcpt, result, relayed))
        self._left[tx] -= 1
        if not self._left[tx]:
            self._out.append(TransactionDone(tx))

    def _fail(self, result: Result, *, quit: bool = False) -> None:
        """End the session: ``result`` for everyone still waiting, QUIT if polite."""
        if self._closed:
            return
        unsettled = tuple(
            (tx, rcpt)
            for tx, transaction in enumerate(self.transactions)
            for rcpt in range(len(transaction.recipients))
            if (tx, rcpt) not in self._settled
        )
        self._settled.update(unsettled)
        self._out.append(SessionFailed(result, unsettled))
        if quit and self._encoder is None:
            self._send(QUIT)
            self._reports.command(QUIT)
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._handshake = False
        self._encoder = None
        self._pending.clear()
        self._out.append(Close())

    def _flush(self) -> list[Event]:
        out, self._out = self._out, []
        return out

"""What a relay session tells a relay action's filters, sans-IO: the
``smtp-out`` report events, as OpenSMTPD's ``mta_session.c`` emits them.

OpenSMTPD filters nothing outbound: a ``filter`` on a relay action only gets
report events of the relay sessions (``mta_report_*``), never a filter
request.  :class:`ClientReports` is how :class:`~mta.relay.client.Client`
(made with ``reports=True``) turns what it sends and receives into those
events; it hands each to ``emit`` (the client makes it a
:class:`~mta.relay.events.Report` event; without ``emit`` it does
nothing).  The driver adds the events it alone knows of (``link-connect``,
``link-tls``, ``timeout``, ``link-disconnect``: :mod:`mta.relay.session`)
and delivers them all (:mod:`mta.filters.outbound`).

When, and with what, as ``mta_session.c`` (6.8 and 7.x alike):

- ``protocol-client``: every command line the client writes (``mta_send``),
  the final ``.`` and ``QUIT`` included, the message's lines not; ``AUTH
  PLAIN <secret>`` as ``AUTH PLAIN ********``, the user name and password of
  AUTH LOGIN as ``********``.  mta sends MAIL, RCPT and DATA in one write to
  a PIPELINING server (OpenSMTPD never pipelines): one event per line still.
- ``protocol-server``: every line the server sends, without its CRLF, a
  multi-line reply one event a line (``mta_io``, before the line is parsed).
- ``link-greeting``: after a 2xx banner, its first word when it is a domain
  (``valid_domainpart``), else empty.
- ``link-identify``: ``EHLO|name``, ``HELO|name`` or ``LHLO|name`` as the
  greeting is sent (again after STARTTLS).
- ``link-auth``: ``pass`` or ``fail`` with the user name, as AUTH ends.
- ``tx-begin`` and ``tx-mail|ok`` when MAIL is accepted; a refused MAIL is
  not reported (OpenSMTPD flushes the task first).
- ``tx-envelope|msgid|evpid`` as each RCPT is written (pipelined: when its
  reply is read, since the transaction has not begun when it is written),
  then ``tx-rcpt|msgid|ok|address`` (``tempfail`` on 4xx, ``permfail`` on
  5xx) with its reply.  A refused recipient is preceded by ``tx-rollback``
  and ``tx-reset``, and the transaction goes on: OpenSMTPD does this (a
  quirk of ``mta_response``), and filters written against it see the same.
- ``tx-data|msgid|ok`` on 354 (any 2xx or 3xx), otherwise ``tempfail`` /
  ``permfail`` followed by ``tx-rollback`` and ``tx-reset``.
- After the final dot: ``tx-commit|msgid|size`` (``size``: the octets of the
  message as written, CRLF line ends and dot-stuffing included, the final
  ``.`` not) and ``tx-reset`` on 2xx, else ``tx-rollback`` and ``tx-reset``;
  with LMTP, once per recipient's reply, as OpenSMTPD.
- A message nobody accepted, pipelined, ends with its empty DATA: then
  ``tx-rollback`` and ``tx-reset`` (OpenSMTPD never pipelines, so never
  sends such a DATA).

Message and envelope ids are the queue's (``%08x``, ``%016x``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mta.filters.events import (
    LinkAuth,
    LinkGreeting,
    LinkIdentify,
    ProtocolClient,
    ProtocolServer,
    ReportPayload,
    TxBegin,
    TxCommit,
    TxData,
    TxEnvelope,
    TxMail,
    TxRcpt,
    TxReset,
    TxRollback,
)
from mta.filters.protocol import AuthResult, TxResult
from mta.relay.transaction import Transaction
from mta.tables.relayhost import valid_domainpart

if TYPE_CHECKING:
    from mta.relay.client import Credentials

__all__ = ["ClientReports", "tx_result"]

_TERMINATOR = len(b".\r\n")


def _text(line: bytes) -> str:
    return line.decode("utf-8", "surrogateescape")


def tx_result(code: int) -> TxResult:
    """A reply code as ``tx-*`` reports say it: 2xx and 3xx ``ok``, 4xx
    ``tempfail``, else ``permfail``."""
    if code < 400:
        return TxResult.OK
    return TxResult.TEMPFAIL if code < 500 else TxResult.PERMFAIL


class ClientReports:
    """The report events of one client session, handed to ``emit`` in order
    (None: the session is not reported, and nothing is done)."""

    def __init__(self, emit: Callable[[ReportPayload], None] | None) -> None:
        self.emit = emit
        self._partial = b""  # a server line not yet ended
        self._first = ""  # the first line of the last reply begun
        self._in_reply = False  # a multi-line reply is being read
        self._size = 0  # octets of the message's content written so far

    # -- the wire ----------------------------------------------------------------

    def command(self, line: bytes, *, secret: bool = False) -> None:
        """A command line written (with or without its CRLF); ``secret``: an
        AUTH LOGIN user name or password."""
        if self.emit is None:
            return
        if secret:
            self.emit(ProtocolClient.masked())
            return
        self.emit(ProtocolClient.of_command(_text(line.rstrip(b"\r\n"))))

    def commands(self, data: bytes) -> None:
        """Several command lines written at once (pipelined)."""
        if self.emit is None:
            return
        for line in data.split(b"\r\n"):
            if line:
                self.command(line)

    def received(self, piece: bytes) -> None:
        """Bytes from the server, fed as the client parses them: each line,
        once ended, is a ``protocol-server`` event."""
        if self.emit is None:
            return
        self._partial += piece
        while (end := self._partial.find(b"\n")) >= 0:
            line, self._partial = self._partial[:end], self._partial[end + 1 :]
            text = _text(line.removesuffix(b"\r"))
            if not self._in_reply:
                self._first = text
            self._in_reply = text[3:4] == "-"
            self.emit(ProtocolServer(text))

    def content(self, data: bytes) -> None:
        """Octets of the message written (``end`` with the final dot's write)."""
        self._size += len(data)

    # -- the session -------------------------------------------------------------

    def _report(self, *payloads: ReportPayload) -> None:
        if self.emit is not None:
            for payload in payloads:
                self.emit(payload)

    def greeting(self) -> None:
        """The banner was 2xx: its first word, if a domain."""
        if self.emit is None:
            return
        word = self._first[4:].split(" ", 1)[0] if len(self._first) > 4 else ""
        self._report(LinkGreeting(word if word and valid_domainpart(word) else ""))

    def identify(self, method: str, name: str) -> None:
        self._report(LinkIdentify(method, name))

    def auth(self, credentials: Credentials | None, *, ok: bool) -> None:
        """AUTH as ``credentials`` succeeded (``ok``) or failed."""
        if credentials is not None:
            self._report(LinkAuth(credentials.user, AuthResult.PASS if ok else AuthResult.FAIL))

    # -- transactions ------------------------------------------------------------

    def mail(self, tx: Transaction) -> None:
        """MAIL was accepted: the transaction begins."""
        self._report(TxBegin(tx.msgid), TxMail(tx.msgid, TxResult.OK, tx.sender))

    def envelope(self, tx: Transaction, rcpt: int) -> None:
        """A RCPT was written (unpipelined)."""
        self._report(TxEnvelope(tx.msgid, tx.recipients[rcpt].evpid))

    def rcpt(self, tx: Transaction, rcpt: int, code: int, *, pipelined: bool) -> None:
        """The reply to a RCPT (``pipelined``: its ``tx-envelope`` comes now)."""
        if pipelined:
            self.envelope(tx, rcpt)
        if not 200 <= code < 300:
            self._rollback(tx)
        if code // 100 in (2, 4, 5):  # OpenSMTPD reports no other
            self._report(TxRcpt(tx.msgid, tx_result(code), tx.recipients[rcpt].address))

    def data(self, tx: Transaction, code: int) -> None:
        """The reply to DATA."""
        self._report(TxData(tx.msgid, tx_result(code)))
        self._size = 0
        if code >= 400:
            self._rollback(tx)

    def end(self, tx: Transaction, code: int) -> None:
        """A reply after the final dot (LMTP: one per recipient)."""
        if 200 <= code < 300:
            size = max(self._size - _TERMINATOR, 0)
            self._report(TxCommit(tx.msgid, size), TxReset(tx.msgid))
        else:
            self._rollback(tx)

    def discard(self, tx: Transaction) -> None:
        """The empty DATA of a transaction nobody accepted is over."""
        self._rollback(tx)

    def _rollback(self, tx: Transaction) -> None:
        self._report(TxRollback(tx.msgid), TxReset(tx.msgid))

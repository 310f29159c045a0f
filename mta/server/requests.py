"""What an SMTP session does for each request of the sans-IO state machine.

:class:`Requests` is the half of :class:`~mta.server.session.Session` that
answers the request events (:mod:`mta.smtp.events`) once the session runs:
HELO/EHLO, STARTTLS, AUTH, and the mail transaction (MAIL, RCPT, DATA, the
message as it streams in, its end), each with the phase of the session's
filters (:mod:`mta.server.filtering`) first, the work of
:mod:`mta.server.transaction` then, and the reports the filters subscribed to.
A test server's injected faults (:mod:`mta.testing.faults`, ``services.faults``)
come before all that, at connect, MAIL, RCPT, DATA and the end of DATA.
The other half (:mod:`mta.server.session`) runs the session: before the
banner, the command loop and its deadlines.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Sequence

import attrs
import trio

from mta.auth.check import AuthResult, authenticate
from mta.errors import FilterError, SpoolFull, TableError, TemporaryFailure
from mta.filters.datalines import DataLinePipe
from mta.filters.events import (
    LinkAuth,
    LinkIdentify,
    LinkTLS,
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
from mta.filters.protocol import AuthResult as ReportedAuth
from mta.filters.protocol import FilterPhase, TxResult
from mta.log import get_logger, visible
from mta.reply import Reply
from mta.server.client import Client
from mta.server.filtering import FILTER_TEMPFAIL, PROCEED, Outcome, SessionFilters
from mta.server.services import Endpoint, Services
from mta.server.transaction import (
    SPOOL_FULL,
    TEMPFAIL,
    Committed,
    MailTransaction,
    rewritten_path,
    sender_allowed,
)
from mta.smtp import events as ev
from mta.smtp import replies
from mta.smtp.address import valid_helo
from mta.smtp.server import ServerConnection

__all__ = [
    "ASKED_PHASES",
    "AUTH_FAILED",
    "AUTH_TEMPFAIL",
    "SENDER_REJECTED",
    "Requests",
    "SessionClosed",
]

log = get_logger("smtp")

AUTH_FAILED = Reply.of(535, "5.7.8", "Authentication failed")
AUTH_TEMPFAIL = Reply.of(454, "4.7.0", "Temporary authentication failure")
SENDER_REJECTED = Reply.of(530, "5.7.0", "Sender rejected")

ASKED_PHASES = {
    "RSET": FilterPhase.RSET,
    "NOOP": FilterPhase.NOOP,
    "QUIT": FilterPhase.QUIT,
    "HELP": FilterPhase.HELP,
    "WIZ": FilterPhase.WIZ,
}
"""The commands the state machine answers alone, unless filters have their phase."""


def _no_arguments(outcome: Outcome) -> Reply | None:
    """The refusal of a filter's rewrite of a command that takes no argument
    (DATA, the end of DATA, RSET, NOOP, QUIT, HELP, WIZ): OpenSMTPD runs the
    command's check on the new parameter (``smtp_check_noparam``), which
    answers 500 and does not run it.  At the end of DATA mta then rolls the
    transaction back, as for a reject; 6.8 leaves the session waiting forever."""
    return replies.NO_ARGUMENTS if outcome.value is not None else None


class SessionClosed(Exception):
    """The connection cannot go on (a failed STARTTLS handshake, a fault
    that disconnects)."""


class Requests(abc.ABC):
    """The request handlers of a session (see the module docstring); the
    session provides the attributes and the I/O methods declared here."""

    id: int
    services: Services
    endpoint: Endpoint
    client: Client
    conn: ServerConnection | None
    tx: MailTransaction | None
    filters: SessionFilters | None
    junk: bool
    reason: str
    _nursery: trio.Nursery | None
    _pipe: DataLinePipe | None

    @abc.abstractmethod
    async def _flush(self) -> bool:
        """Send the replies queued so far (and report them)."""

    @abc.abstractmethod
    async def _transcribe(self) -> None:
        """Report the protocol lines since the last report."""

    @abc.abstractmethod
    async def _start_tls(self) -> bool:
        """The TLS handshake on the session's stream; False when it failed."""

    async def _handle(self, event: object) -> None:
        conn = self.conn
        assert conn is not None
        if conn.transcript:
            await self._transcribe()
        if isinstance(event, ev.DataChunk):
            await self._write(event.data)
        elif isinstance(event, ev.Hello):
            await self._hello(event)
        elif isinstance(event, ev.MailFrom):
            await self._mail(event)
        elif isinstance(event, ev.RcptTo):
            await self._rcpt(event)
        elif isinstance(event, ev.DataStart):
            await self._data_start()
        elif isinstance(event, ev.DataEnd):
            await self._data_end(event)
        elif isinstance(event, ev.TransactionReset):
            await self._abort_tx()
        elif isinstance(event, ev.StartTls):
            await self._starttls()
        elif isinstance(event, ev.AuthCredentials):
            await self._auth(event)
        elif isinstance(event, ev.Ask):
            await self._asked(event)

    async def _faulted(self, at: str, rcpts: Sequence[str] = ()) -> bool:
        """The test server's fault at ``at`` (:mod:`mta.testing.faults`; call
        only when ``services.faults`` is set): its delay, then its reply to the
        pending command (at ``connect``: in place of the banner) or the end of
        the session; True when the fault answered, so the command is not run."""
        conn, faults = self.conn, self.services.faults
        assert conn is not None and faults is not None
        fault = faults.take(at, rcpts)
        if fault is None:
            return False
        if fault.delay:
            await trio.sleep(fault.delay)
        reply = fault.smtp_reply
        if reply is not None:
            if at == "connect":
                conn.refuse(reply)
            else:
                conn.reject(reply)
            return True
        if fault.disconnect:
            self.reason = "fault"
            raise SessionClosed
        return False

    def _spool_failed(self, exc: Exception) -> None:
        log.warning("%016x smtp spool failure: %s", self.id, visible(str(exc)))

    async def _filter(self, phase: FilterPhase, param: str) -> Outcome:
        """What the session's filters say of ``phase`` (no filters: proceed)."""
        if self.filters is None:
            return PROCEED
        outcome = await self.filters.command(phase, param)
        if outcome.junk:  # the transaction, or the whole session before one
            if self.tx is not None:
                self.tx.junk = True
            else:
                self.junk = True
        return outcome

    async def _report_tls(self) -> None:
        tls = self.client.tls
        if tls is not None:
            await self._report(LinkTLS(tls.version, tls.cipher, tls.bits))

    async def _report(self, payload: ReportPayload) -> None:
        if self.filters is not None:
            await self.filters.report(payload)

    async def _hello(self, event: ev.Hello) -> None:
        conn = self.conn
        assert conn is not None
        verb = event.verb.upper()
        phase = FilterPhase.EHLO if verb == "EHLO" else FilterPhase.HELO
        outcome = await self._filter(phase, event.domain)
        if outcome.refused is not None:
            conn.reject(outcome.refused)
            return
        domain = outcome.value or event.domain
        if not valid_helo(domain):
            conn.reject(replies.invalid_domain())
            return
        self.client.helo = domain
        self.client.esmtp = verb == "EHLO"
        await self._abort_tx()
        await self._report(LinkIdentify(verb, domain))
        conn.accept_as(attrs.evolve(event, domain=domain))  # greeted by its new name

    # -- STARTTLS and AUTH ---------------------------------------------------

    async def _asked(self, event: ev.Ask) -> None:
        """RSET, NOOP, QUIT, HELP or WIZ, which the filters see first."""
        conn = self.conn
        assert conn is not None
        outcome = await self._filter(ASKED_PHASES[event.verb], event.args or "")
        refused = outcome.refused or _no_arguments(outcome)
        if refused is not None:
            conn.reject(refused)
            return
        conn.accept()

    async def _starttls(self) -> None:
        conn = self.conn
        assert conn is not None
        outcome = await self._filter(FilterPhase.STARTTLS, "")
        if outcome.refused is not None:
            conn.reject(outcome.refused)
            return
        conn.accept()
        await self._flush()
        if conn.closed:
            return
        if not await self._start_tls():
            raise SessionClosed
        conn.tls_established()
        await self._report_tls()

    async def _auth(self, event: ev.AuthCredentials) -> None:
        conn = self.conn
        assert conn is not None
        outcome = await self._filter(FilterPhase.AUTH, event.mechanism)
        if outcome.refused is not None:
            conn.reject(outcome.refused)
            return
        result = await authenticate(self.endpoint.auth_table, event.username, event.password)
        user = visible(event.username)
        if self.filters is not None:
            reported = {
                AuthResult.OK: ReportedAuth.PASS,
                AuthResult.FAIL: ReportedAuth.FAIL,
            }.get(result, ReportedAuth.ERROR)
            await self._report(LinkAuth(event.username, reported))
        if result is AuthResult.OK:
            log.info("%016x smtp authentication user=%s result=ok", self.id, user)
            self.client.auth_user = event.username
            conn.accept()
        elif result is AuthResult.FAIL:
            log.info("%016x smtp authentication user=%s result=permfail", self.id, user)
            await trio.sleep(secrets.randbelow(1_000_000) / 1e6)
            conn.reject(AUTH_FAILED)
        else:
            log.info("%016x smtp authentication user=%s result=tempfail", self.id, user)
            conn.reject(AUTH_TEMPFAIL)

    # -- the transaction -----------------------------------------------------

    async def _mail(self, event: ev.MailFrom) -> None:
        conn = self.conn
        assert conn is not None
        if self.services.faults is not None and await self._faulted("mail"):
            return
        outcome = await self._filter(FilterPhase.MAIL_FROM, str(event.sender))
        if outcome.refused is not None:
            conn.reject(outcome.refused)
            return
        if outcome.value is not None:
            sender = rewritten_path(outcome.value, null_ok=True, hostname=self.client.smtpname)
            if sender is None:
                conn.reject(replies.SENDER_SYNTAX)
                return
            event = attrs.evolve(event, sender=sender)
        try:
            allowed = await sender_allowed(self.services, self.endpoint, self.client, event.sender)
        except TableError as exc:
            log.warning("%016x smtp senders lookup failed: %s", self.id, visible(str(exc)))
            conn.reject(TEMPFAIL)
            return
        if not allowed:
            conn.reject(SENDER_REJECTED)
            return
        self.tx = MailTransaction(
            self.services, self.endpoint, self.client, event, session_id=self.id
        )
        self.tx.junk = self.junk  # junk at connect, helo or mail-from: the whole session
        if self.filters is not None:
            try:
                await self.tx.begin()
            except TemporaryFailure as exc:
                self._spool_failed(exc)
                self.tx = None
                conn.reject(TEMPFAIL)
                return
            await self._report(TxBegin(self.tx.msgid))
            await self._report(TxMail(self.tx.msgid, TxResult.OK, str(event.sender)))
        conn.accept()

    async def _rcpt(self, event: ev.RcptTo) -> None:
        conn = self.conn
        tx = self.tx
        assert conn is not None and tx is not None
        if self.services.faults is not None and await self._faulted("rcpt", (str(event.rcpt),)):
            return
        outcome = await self._filter(FilterPhase.RCPT_TO, str(event.rcpt))
        refused = outcome.refused
        if refused is None:
            if outcome.value is not None:
                rcpt = rewritten_path(outcome.value, null_ok=False, hostname=self.client.smtpname)
                if rcpt is None:
                    conn.reject(replies.RECIPIENT_SYNTAX)
                    return
                event = attrs.evolve(event, rcpt=rcpt)
            refused = await tx.add_recipient(event)
        if refused is not None:
            if tx.msgid:
                result = TxResult.TEMPFAIL if refused.temporary else TxResult.PERMFAIL
                await self._report(TxRcpt(tx.msgid, result, str(event.rcpt)))
            conn.reject(refused)
            return
        if tx.msgid:
            await self._report(TxRcpt(tx.msgid, TxResult.OK, str(event.rcpt)))
        conn.accept()

    async def _data_start(self) -> None:
        conn = self.conn
        tx = self.tx
        assert conn is not None and tx is not None
        if self.services.faults is not None and await self._faulted(
            "data", [str(rcpt) for rcpt in tx.rcpts]
        ):
            return
        outcome = await self._filter(FilterPhase.DATA, "")
        refused = outcome.refused or _no_arguments(outcome)
        if refused is not None:
            conn.reject(refused)
            return
        try:
            await tx.start_data()
        except TemporaryFailure as exc:  # SpoolFull and other spool failures
            self._spool_failed(exc)
            await tx.abort()
            conn.reject(SPOOL_FULL if isinstance(exc, SpoolFull) else TEMPFAIL)
            return
        if self.filters is not None:
            stages = self.filters.data_stages()
            if stages is None:
                await tx.abort()
                conn.reject(FILTER_TEMPFAIL)
                return
            if stages:
                if self._nursery is None:
                    # a filter process registered after the session began (no task
                    # for its data-line stage): refused as a filter failure
                    log.warning("%016x smtp filter failed: data-line filters unavailable", self.id)
                    await tx.abort()
                    conn.reject(FILTER_TEMPFAIL)
                    return
                self._pipe = DataLinePipe(self.id, stages, tx.store)
                await self._pipe.start(self._nursery)
            await self._report(TxData(tx.msgid, TxResult.OK))
        conn.accept()

    async def _write(self, data: bytes) -> None:
        tx = self.tx
        if tx is None:
            return
        if self._pipe is None:
            tx.write(data)
            return
        try:
            await self._pipe.feed(tx.rewrite(data))
        except FilterError as exc:
            tx.write_error = exc

    async def _data_end(self, event: ev.DataEnd) -> None:
        conn = self.conn
        tx = self.tx
        assert conn is not None
        if tx is None:
            conn.reject(TEMPFAIL)
            return
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            try:
                await pipe.feed(tx.rewrite_end())
                await pipe.finish()
            except FilterError as exc:
                log.warning("%016x smtp filter failed: %s", self.id, visible(str(exc)))
                pipe.close()
                await tx.abort()
                self.tx = None
                conn.reject(FILTER_TEMPFAIL)
                return
        if self.services.faults is not None and await self._faulted(
            "commit", [str(rcpt) for rcpt in tx.rcpts]
        ):
            if tx.msgid:
                await self._report(TxRollback(tx.msgid))
            await tx.abort()  # nothing is queued
            self.tx = None
            return
        if event.error is None:
            committing = await self._filter(FilterPhase.COMMIT, "")
            refused = committing.refused or _no_arguments(committing)
            if refused is not None:
                if tx.msgid:
                    await self._report(TxRollback(tx.msgid))
                await tx.abort()
                self.tx = None
                conn.reject(refused)
                return
        outcome = await tx.commit(event)
        if not isinstance(outcome, Committed):
            if tx.failure is not None:
                self._spool_failed(tx.failure)
            if tx.msgid:
                await self._report(TxRollback(tx.msgid))
            self.tx = None
            conn.reject(outcome)
            return
        log.info(
            "%016x smtp message msgid=%s size=%d nrcpt=%d proto=%s",
            self.id,
            outcome.msgid,
            event.size,
            outcome.rcpts,
            "ESMTP" if self.client.esmtp else "SMTP",
        )
        for env in outcome.envelopes:
            log.info(
                "%016x smtp envelope evpid=%016x from=<%s> to=<%s>",
                self.id,
                env.id,
                visible(str(env.sender)),
                visible(str(env.rcpt)),
            )
        if self.filters is not None:
            for env in outcome.envelopes:
                await self._report(TxEnvelope(env.msgid, env.id))
            await self._report(TxCommit(int(outcome.msgid, 16), event.size))
        self.tx = None
        conn.accept_message(outcome.msgid)

    async def _abort_tx(self) -> None:
        tx, self.tx = self.tx, None
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if tx is not None:
            if tx.msgid and self.filters is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self.filters.report(TxReset(tx.msgid))
            await tx.abort()

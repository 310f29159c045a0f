"""One mail transaction of an SMTP session: MAIL FROM to the end of DATA.

:class:`MailTransaction` holds what a transaction gathers and carries out the
steps that need the outside world, each answering with the reply for the
client (None when the step succeeded and the sans-IO server says the usual):

- :func:`sender_allowed` (``senders <table>``) before the transaction begins;
- :meth:`MailTransaction.add_recipient`: the ``match`` rules at RCPT;
- :meth:`MailTransaction.start_data`: a spool transaction, the ``Received:``
  header and the message rewriter (:mod:`mta.smtp.message`);
- :meth:`MailTransaction.write`: the message as it streams in;
- :meth:`MailTransaction.commit`: the checks of the whole message, then the
  envelopes committed to the spool (durable before the 250);
- :meth:`MailTransaction.abort`: nothing half-written is left.

What the session knows of its client (:class:`~mta.server.client.Client`) comes in from the
session, which logs the outcome of each step.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import random
import time

import attrs
import trio

from mta.envelope import Address, Envelope, EnvelopeFlag
from mta.errors import SpoolFull, TemporaryFailure
from mta.filters.builtin import JUNK_HEADER
from mta.log import get_logger
from mta.reply import Reply
from mta.rules.expand import Delivery
from mta.rules.rejection import RecipientRejected
from mta.rules.ruleset import MatchContext
from mta.server.client import Client
from mta.server.services import Endpoint, Services
from mta.smtp import events as ev
from mta.smtp.address import parse_mailbox, split_path
from mta.smtp.message import MessageRewriter, RewriteOptions, Verdict
from mta.smtp.received import ReceivedInfo, TlsDetails, received_header
from mta.spool.transaction import Transaction
from mta.spool.writer import MessageWriter
from mta.tables.lookups import lookup_mailaddrmap
from mta.tables.mailaddr import mailaddr_match, parse_mailaddr

__all__ = [
    "NOT_COMPLIANT",
    "SPOOL_FULL",
    "TEMPFAIL",
    "Committed",
    "MailTransaction",
    "rewritten_path",
    "sender_allowed",
]

log = get_logger("smtp")

_ids = random.Random(os.urandom(32))  # Message-ID parts: unique, not secret

TEMPFAIL = Reply.of(451, "4.3.0", "Temporary failure")
SPOOL_FULL = Reply.of(452, "4.3.1", "Insufficient system storage")
NOT_COMPLIANT = Reply.of(
    550, "5.7.1", "Delivery not authorized, message refused: Message is not RFC 2822 compliant"
)


@attrs.frozen
class Committed:
    """A transaction committed to the spool."""

    msgid: str  # %08x
    envelopes: list[Envelope]
    rcpts: int


@functools.lru_cache(maxsize=1024)
def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def rewritten_path(value: str, *, null_ok: bool, hostname: str) -> Address | None:
    """A MAIL FROM / RCPT TO address a filter rewrote: ``<address>`` as the
    command takes it (``smtp_mailaddr``), else None."""
    split = split_path(value.strip())
    if split is None or split[1]:
        return None
    found = parse_mailbox(split[0], null_ok=null_ok, hostname=hostname, smtputf8=True)
    return found if isinstance(found, Address) else None


async def sender_allowed(
    services: Services, endpoint: Endpoint, client: Client, sender: Address
) -> bool:
    """``senders <table>``: an authenticated user may only use the addresses
    the table maps them to.  TableError when the lookup fails (try again)."""
    table = endpoint.senders
    user = client.auth_user
    if table is None or user is None or endpoint.is_socket:
        return True
    # a helper-backed table may take its time: never on the event loop
    allowed = await services.tables.call(table, lambda: lookup_mailaddrmap(table, user))
    if allowed is None:
        return False
    candidate = parse_mailaddr(str(sender)) if not sender.is_null else None
    if candidate is None:
        return False
    return any(mailaddr_match(candidate, entry) for entry in allowed.addresses)


class MailTransaction:
    """The current mail transaction of a session; see the module docstring."""

    def __init__(
        self,
        services: Services,
        endpoint: Endpoint,
        client: Client,
        mail: ev.MailFrom,
        *,
        session_id: int = 0,
    ) -> None:
        self.session_id = session_id
        self.services = services
        self.endpoint = endpoint
        self.client = client
        self.sender = mail.sender
        self.mail = mail
        self.deliveries: list[tuple[Address, ev.RcptTo, Delivery]] = []
        self.rcpts: list[Address] = []
        self.spool: Transaction | None = None
        self.writer: MessageWriter | None = None
        self.rewriter: MessageRewriter | None = None
        self.write_error: Exception | None = None
        self.failure: Exception | None = None  # why the spool refused the message, for the log
        self.started = 0.0
        self.junk = False  # a filter said junk: X-Spam: Yes heads the message
        self.msgid = 0  # known from begin() on
        self._content_done = False  # the rewriter's end was taken (a data-line pipe)

    @property
    def in_data(self) -> bool:
        """True between the 354 and the end of the message."""
        return self.rewriter is not None

    def match_context(self) -> MatchContext:
        """What the ``match`` rules see of this transaction."""
        ep, client = self.endpoint, self.client
        return MatchContext(
            socket=ep.is_socket,
            local=ep.is_socket or _is_loopback(client.peer),
            src="local" if ep.is_socket else client.peer,
            rdns=client.rdns,
            helo=client.helo,
            tag=ep.tag,
            auth_user=client.auth_user,
            sender=self.sender,
            tls=client.tls is not None,
        )

    async def add_recipient(self, event: ev.RcptTo) -> Reply | None:
        """Run the rules for ``event``'s recipient; the refusal, or None (added)."""
        try:
            deliveries = await self.services.resolver.resolve(self.match_context(), event.rcpt)
        except RecipientRejected as exc:
            return exc.reply
        except TemporaryFailure:
            return Reply.of(451, "4.3.0", f"Temporary failure: <{event.rcpt}>")
        for delivery in deliveries:
            self.deliveries.append((event.rcpt, event, delivery))
        self.rcpts.append(event.rcpt)
        return None

    async def begin(self) -> int:
        """The spool transaction, and so the message id, now (filtered sessions
        report it from MAIL FROM on); TemporaryFailure from the spool."""
        if self.spool is None:
            self.spool = await self.services.spool.begin()
            self.msgid = self.spool.msgid
        return self.msgid

    async def start_data(self) -> None:
        """Open the spool transaction's message and the rewriter.
        TemporaryFailure (the spool's) propagates, for the session to log."""
        await self.begin()
        assert self.spool is not None
        self.writer = await self.spool.open_message()
        self.started = trio.current_time()
        now = datetime.datetime.now().astimezone()
        client, endpoint = self.client, self.endpoint
        tls = client.tls
        received = received_header(
            ReceivedInfo(
                helo=client.helo,
                rdns=client.rdns,
                peer=client.peer,
                mask_src=endpoint.mask_src,
                smtpname=client.smtpname,
                esmtp=client.esmtp,
                tls=TlsDetails(tls.version, tls.cipher, tls.bits) if tls else None,
                verified=bool(tls and tls.verified),
                # local enqueue sessions count as authenticated (OpenSMTPD: ESMTPA)
                authenticated=client.auth_user is not None or endpoint.is_socket,
                received_auth=bool(endpoint.listener and endpoint.listener.received_auth),
                username=client.auth_user or "",
                msgid=self.spool.msgid,
                rcpt=self.rcpts[0] if len(self.rcpts) == 1 else None,
                date=now,
            )
        )
        listener = endpoint.listener
        masquerade = (
            listener is not None
            and listener.masquerade
            and client.auth_user is not None
            and not self.sender.is_null
        )
        if self.junk:
            # smtp_message_begin: the first line of the message, before Received:
            received = JUNK_HEADER.encode("ascii") + b"\r\n" + received
        self.rewriter = MessageRewriter(
            RewriteOptions(
                received=received,
                hostname=client.smtpname,
                masquerade=self.sender if masquerade else None,
                add_missing=endpoint.local
                or (listener is not None and listener.effective_port == 587),
                date=now,
                message_id_random=_ids.getrandbits(64),
            )
        )

    def write(self, data: bytes) -> None:
        """Content as it arrives (a write error is kept for :meth:`commit`)."""
        if self.rewriter is None or self.writer is None or self.write_error:
            return
        try:
            self.writer.write(self.rewriter.feed(data))
        except (OSError, TemporaryFailure) as exc:
            self.write_error = exc

    def rewrite(self, data: bytes) -> bytes:
        r"""Content as it arrives, as it is to be stored (the headers added,
        line ends normalised): for a data-line pipe, which :meth:`store`\ s it."""
        return self.rewriter.feed(data) if self.rewriter is not None else b""

    def rewrite_end(self) -> bytes:
        """The end of the rewritten content (then :meth:`commit` takes none)."""
        self._content_done = True
        return self.rewriter.finish() if self.rewriter is not None else b""

    def store(self, data: bytes) -> None:
        """Content to the spool as it is (the output of the data-line filters)."""
        if self.writer is None or self.write_error:
            return
        try:
            self.writer.write(data)
        except (OSError, TemporaryFailure) as exc:
            self.write_error = exc

    async def commit(self, event: ev.DataEnd) -> Reply | Committed:
        """The end of the message: its checks, then the envelopes committed; the
        reply refusing it (the transaction is aborted then), or what was committed."""
        spool, rewriter, writer = self.spool, self.rewriter, self.writer
        if spool is None or rewriter is None or writer is None:
            return TEMPFAIL
        if event.error is not None:
            await self.abort()
            return event.error
        try:
            if self.write_error is None and not self._content_done:
                writer.write(rewriter.finish())
        except (OSError, TemporaryFailure) as exc:
            self.write_error = exc
        verdict = rewriter.verdict
        if verdict is not Verdict.OK:
            if verdict is Verdict.LOOP:
                log.warning("%016x smtp loop detected", self.session_id)
            await self.abort()
            return verdict.reply or NOT_COMPLIANT
        if self.write_error is not None:
            full = isinstance(self.write_error, SpoolFull)
            self.failure = self.write_error
            await self.abort()
            return SPOOL_FULL if full else TEMPFAIL
        envelopes = self.envelopes(spool.msgid, spool.new_ids(len(self.deliveries)))
        try:
            committed = await spool.commit(envelopes)
        except TemporaryFailure as exc:  # SpoolFull and other spool failures
            self.failure = exc
            await self.abort()
            return SPOOL_FULL if isinstance(exc, SpoolFull) else TEMPFAIL
        self.spool = None
        if self.services.queue is not None:
            self.services.queue.committed(committed)
        return Committed(f"{spool.msgid:08x}", committed, len(self.rcpts))

    def envelopes(self, msgid: int, ids: list[int]) -> list[Envelope]:
        """The envelopes of the transaction's recipients."""
        now = int(time.time())
        client, endpoint = self.client, self.endpoint
        flags = EnvelopeFlag.NONE
        if client.auth_user is not None or endpoint.is_socket:
            flags |= EnvelopeFlag.AUTHENTICATED
        mail = self.mail
        result = []
        for (rcpt, rcpt_event, delivery), evpid in zip(self.deliveries, ids, strict=True):
            result.append(
                Envelope(
                    msgid=msgid,
                    id=evpid,
                    kind=delivery.kind,
                    dispatcher=delivery.action,
                    smtpname=client.smtpname,
                    helo=client.helo,
                    hostname=client.rdns or "<unknown>",
                    sockaddr=client.peer,
                    sender=self.sender,
                    rcpt=rcpt,
                    dest=delivery.dest,
                    ctime=now,
                    tag=endpoint.tag or "",
                    username=client.auth_user or "",
                    flags=flags | EnvelopeFlag.INTERNAL if delivery.internal else flags,
                    node=delivery.node,
                    mda_user=delivery.mda_user or "",
                    mda_exec=delivery.mda_exec or "",
                    mda_subaddress=delivery.mda_subaddress or "",
                    dsn_notify=rcpt_event.params.notify,
                    dsn_ret=mail.params.ret,
                    dsn_envid=mail.params.envid or "",
                    dsn_orcpt=rcpt_event.params.orcpt or "",
                    body=mail.params.body,
                    smtputf8=mail.params.smtputf8,
                )
            )
        return result

    async def abort(self) -> None:
        """Remove what the spool holds of this transaction (shielded: it runs on
        the way out of a cancelled session too)."""
        if self.spool is not None:
            spool_tx, self.spool = self.spool, None
            with trio.CancelScope(shield=True):
                try:
                    await spool_tx.abort()
                except Exception as exc:
                    log.warning(
                        "%016x smtp could not remove a transaction: %s", self.session_id, exc
                    )
        self.writer = None
        self.rewriter = None

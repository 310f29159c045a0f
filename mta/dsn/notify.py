"""Sending delivery status notifications: new messages in the queue, from ``<>``.

The queue runner asks for a notice (failed, delayed, delivered) about one
envelope; if the envelope's sender wants one (:func:`~mta.dsn.compose.wanted`:
never to ``<>``, never about a notification, ``NOTIFY`` honoured), the report
is composed with the original message (headers, or all of it for a failure
with ``RET=FULL``) and committed to the spool as a new message, whose
recipient — the original sender — goes through the ``match`` rules like mail
from the local socket: the notification is then delivered or relayed like any
other message.  Its envelopes carry the BOUNCE flag, so a notification that
fails in turn is dropped, never bounced.

A sender the rules refuse gets no notification (logged); a spool or lookup
failure raises, and the runner keeps the original envelope to try again.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import attrs
import trio

from mta import threads
from mta.dsn.compose import ReportType, compose, report_for, wanted
from mta.envelope import NULL_ADDRESS, Envelope, EnvelopeFlag
from mta.log import get_logger, visible
from mta.rules.expand import Resolver
from mta.rules.rejection import RecipientRejected
from mta.rules.ruleset import MatchContext
from mta.scheduler.runner import Notice
from mta.spool.spool import Spool
from mta.spool.store import stream_chunks

__all__ = ["SpoolNotifier"]

log = get_logger("queue")

_TYPES = {
    "failed": ReportType.FAILED,
    "delayed": ReportType.DELAYED,
    "delivered": ReportType.DELIVERED,
    "relayed": ReportType.RELAYED,
}


class SpoolNotifier:
    """Commits notices to ``spool``; ``committed`` gets the new envelopes."""

    def __init__(
        self,
        spool: Spool,
        resolver: Resolver,
        committed: Callable[[list[Envelope]], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.resolver = resolver
        self.committed = committed
        self.clock = clock
        self._random = random.Random(os.urandom(32))

    async def notify(self, notice: Notice) -> None:
        envelope = notice.envelope
        kind = _TYPES[notice.kind]
        if EnvelopeFlag.BOUNCE in envelope.flags or not wanted(envelope, kind):
            return
        if notice.result is not None and notice.kind not in ("delivered", "relayed"):
            result = notice.result
            envelope = attrs.evolve(envelope, errorline=result.text, esc=result.esc)
        report = report_for(
            kind,
            [envelope],
            now=int(self.clock()),
            message_id_random=self._random.getrandbits(64),
            boundary_random=self._random.getrandbits(64),
            delay=notice.delay,
            ttl=notice.ttl,
        )
        ctx = MatchContext(socket=True, src="local", sender=NULL_ADDRESS, local=True)
        try:
            deliveries = await self.resolver.resolve(ctx, envelope.sender)
        except RecipientRejected as exc:
            log.warning(
                "queue: no %s notice for evpid=%016x: <%s> refused: %s",
                notice.kind,
                envelope.id,
                visible(str(envelope.sender)),
                exc.reply.text,
            )
            return
        txn = await self.spool.begin()
        try:
            writer = await txn.open_message()
            original = await self.spool.open_message(envelope.msgid)
            try:

                def write_report() -> None:
                    for chunk in compose(report, stream_chunks(original)):
                        writer.write(chunk)

                await threads.run_sync(write_report)
            finally:
                original.close()
            now = int(self.clock())
            bounce = [
                Envelope(
                    msgid=txn.msgid,
                    kind=delivery.kind,
                    dispatcher=delivery.action,
                    smtpname=envelope.smtpname,
                    helo=envelope.smtpname,
                    hostname="localhost",
                    sockaddr="local",
                    sender=NULL_ADDRESS,
                    rcpt=envelope.sender,
                    dest=delivery.dest,
                    ctime=now,
                    flags=EnvelopeFlag.BOUNCE
                    | (EnvelopeFlag.INTERNAL if delivery.internal else EnvelopeFlag.NONE),
                    node=delivery.node,
                    mda_user=delivery.mda_user,
                    mda_exec=delivery.mda_exec,
                    mda_subaddress=delivery.mda_subaddress,
                    smtputf8=envelope.smtputf8,
                )
                for delivery in deliveries
            ]
            committed = await txn.commit(bounce)
        except BaseException:
            with trio.CancelScope(shield=True):
                await txn.abort()
            raise
        log.info(
            "queue: %s notice msgid=%08x for evpid=%016x to <%s>",
            notice.kind,
            txn.msgid,
            envelope.id,
            visible(str(envelope.sender)),
        )
        self.committed(committed)

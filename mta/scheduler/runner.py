"""The queue runner: the trio side of the scheduler.

At start it reads every envelope of the spool into the :class:`Scheduler`;
afterwards sessions hand it each committed envelope (:meth:`QueueRunner.committed`).
It then loops: ask the scheduler what is due, start a task for each, sleep
until the next try or until something changes.  A task loads the envelope,
has it delivered (the ``deliver`` callable: local delivery, and relaying once
it exists), and records the outcome in the spool before telling the scheduler,
so a crash at any point repeats a delivery at worst, never loses one:

- delivered: a success notice if ``NOTIFY=SUCCESS`` asked for one (for a
  relayed envelope: a "relayed" notice, and only when the remote host did not
  offer DSN -- otherwise it sends the notice itself), then the envelope is
  deleted;
- temporary failure: the envelope is rewritten durably with its error and
  retry count; when a ``bounce warn-interval`` is reached a delay notice goes
  out and the envelope records it;
- permanent failure, or the envelope expired: a failure notice, then the
  envelope is deleted;
- removed by the operator: deleted, no notice;
- the message failed its checks (:class:`~mta.errors.CorruptMessage`, raised
  by a delivery, a relay attempt or a notice that opened it): the message
  moves to ``corrupt/`` whole (logged with its msgid and the reason), every
  envelope of it leaves the schedule, and no notice is sent -- a bounce would
  quote content that cannot be trusted, and the mail is not lost: the
  operator finds it in ``corrupt/``.  Envelopes of it that were in flight end
  the same way when their outcome comes back, whatever it is.

Notices are new messages, committed before the envelope they report on is
deleted or rewritten (:class:`Notifier`).  The line logged for an attempt
(``result=Ok``...) follows its record, so a delivery logged done is not
queued any more.  Local deliveries run at most ``mda limit max-session`` at a
time, and ``max-session-per-user`` per user, each from its start until its
outcome is recorded: a crash repeats at most that many deliveries.
Times are Unix seconds from ``clock``; waiting uses trio's clock, so tests
can run days in milliseconds.
Relay envelopes go to the ``relay`` callable (:class:`~mta.relay.agent.RelayAgent`
in the daemon); without one they wait (the ``mta`` work stays paused).

Costs, for ``n`` queued envelopes (see :mod:`mta.scheduler.core` for the
scheduler's own): loading the queue at start is O(n log n); a commit of ``k``
envelopes O(k log n); a pass of the loop O(log n) per envelope it starts
plus O(1); the end of a task O(log n) plus, for a quarantined message, O(k log
k) in its ``k`` envelopes; :meth:`QueueRunner.settle` O(1) per task that ends
while it waits.  Nothing walks the queue but loading it.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from mta.config.model import Config
from mta.delivery.result import ESC_DELIVERY_TIME_EXPIRED, Outcome, Result
from mta.envelope import DsnNotify, Envelope, EnvelopeKind
from mta.errors import CorruptMessage, SpoolError, SpoolNotFound, TemporaryFailure
from mta.log import get_logger, visible
from mta.scheduler.core import Due, Scheduler, Task

if TYPE_CHECKING:
    from mta.spool.recovery import Queued

__all__ = [
    "Deliver",
    "Notice",
    "Notifier",
    "QueueRunner",
    "QueueStore",
    "duration_text",
    "envelope_ttl",
]

log = get_logger("queue")

FRESH_MAX = 10000  # committed envelopes kept in memory for their first try

Deliver = Callable[[Envelope], Awaitable[Result]]


def duration_text(seconds: float) -> str:
    """OpenSMTPD's ``duration_to_text``: ``0s``, ``1m5s``, ``2d3h``..."""
    t = int(seconds)
    if t == 0:
        return "0s"
    sign = "-" if t < 0 else ""
    t = abs(t)
    parts = []
    units = ((t // 86400, "d"), (t // 3600 % 24, "h"), (t // 60 % 60, "m"), (t % 60, "s"))
    for value, unit in units:
        if value:
            parts.append(f"{value}{unit}")
    return sign + "".join(parts)


def envelope_ttl(config: Config, envelope: Envelope | Queued) -> int:
    """How long ``envelope`` may stay queued: its own ttl, else its action's,
    else ``queue ttl``."""
    if envelope.ttl:
        return envelope.ttl
    action = config.actions.get(envelope.dispatcher)
    if action is not None and action.ttl:
        return action.ttl
    return config.queue.ttl


@attrs.frozen
class Notice:
    """A delivery status notification to send about ``envelope``."""

    envelope: Envelope
    kind: str  # failed, delayed, delivered, relayed
    result: Result | None = None  # the failure or success being reported
    delay: int = 0  # for delayed: the warn interval reached
    ttl: int = 0  # for delayed: how long the message stays queued


class QueueStore(Protocol):
    """What the runner needs of the spool (:class:`~mta.spool.spool.Spool` has it)."""

    async def queued(self) -> list[Queued]: ...

    async def load_envelope(self, evpid: int) -> Envelope: ...

    async def update_envelope(self, envelope: Envelope) -> None: ...

    async def delete_envelope(self, evpid: int) -> bool: ...

    async def quarantine(self, msgid: int, reason: str) -> str: ...


class Notifier(Protocol):
    async def notify(self, notice: Notice) -> None:
        """Commit the notice as a new message (or decide none is due).  Raises
        :class:`~mta.errors.TemporaryFailure` (the spool, a lookup) when it
        could not be committed."""


class _NoNotices:
    async def notify(self, notice: Notice) -> None:
        del notice


@attrs.define
class RunnerStats:
    """Counters for tests and ``mtactl show stats``."""

    delivered: int = 0
    tempfailed: int = 0
    permfailed: int = 0
    expired: int = 0
    removed: int = 0
    notices: int = 0
    quarantined: int = 0  # messages moved to corrupt/


class QueueRunner:
    """Runs the queue of one spool for one configuration."""

    def __init__(
        self,
        config: Config,
        spool: QueueStore,
        deliver: Deliver,
        *,
        relay: Deliver | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.spool = spool
        self.deliver = deliver
        self.relay = relay
        self.notifier: Notifier = notifier if notifier is not None else _NoNotices()
        self.clock = clock
        limits = config.scheduler
        self.scheduler = Scheduler(
            max_inflight=limits.max_inflight,
            max_schedule=limits.max_schedule,
            warn_intervals=config.bounce_warn,
        )
        self.scheduler.mta_paused = relay is None
        self.stats = RunnerStats()
        # mda limit max-session / max-session-per-user: local deliveries at once
        self._mda_slots = trio.CapacityLimiter(config.mda.max_session)
        self._user_slots: dict[str, trio.CapacityLimiter] = {}
        self._wake = trio.Event()
        self._draining = False
        self._drained = trio.Event()
        self._fresh: dict[int, Envelope] = {}  # committed, not tried yet
        self._task_seq = 0  # tasks started so far
        # the sequence numbers of the tasks in flight, oldest first (an
        # OrderedDict finds its first key at once, even after many deletions)
        self._running: OrderedDict[int, None] = OrderedDict()
        self._task_done = trio.Event()
        # messages moved to corrupt/ while envelopes of theirs were in flight
        self._quarantined: set[int] = set()

    def reconfigure(self, config: Config) -> None:
        """Schedule by ``config`` from now on (a reload): its scheduler and
        ``mda`` limits, its warning delays, and the ttl of envelopes queued
        from now on (those already scheduled keep their expiry)."""
        self.config = config
        limits = config.scheduler
        self.scheduler.set_limits(limits.max_inflight, limits.max_schedule, config.bounce_warn)
        self._mda_slots.total_tokens = config.mda.max_session
        self.poke()

    async def settle(self) -> None:
        """Return once every task in flight now has ended (those started later
        are not waited for): a reload's old tables are no longer in use then."""
        mark = self._task_seq
        while self._running and next(iter(self._running)) <= mark:
            if self._task_done.is_set():
                self._task_done = trio.Event()
            await self._task_done.wait()

    # -- feeding -------------------------------------------------------------

    def _insert(self, envelope: Envelope | Queued) -> None:
        if envelope.id in self.scheduler:
            return
        self.scheduler.insert(
            envelope.id,
            envelope.kind,
            ctime=envelope.ctime,
            ttl=envelope_ttl(self.config, envelope),
            retry=envelope.retry,
            last_bounce=envelope.last_bounce,
        )

    def committed(self, envelopes: list[Envelope]) -> None:
        """New envelopes are in the queue: schedule them (their first try is now).
        Their first try uses these copies instead of reading them back (the
        runner is the only one to rewrite an envelope, after a try), unless
        their kind of work is paused: a paused queue keeps nothing in memory
        but its schedule, and the first try reads the envelope."""
        scheduler = self.scheduler
        for envelope in envelopes:
            if envelope.kind is EnvelopeKind.MTA:
                paused = scheduler.mta_paused
            else:
                paused = scheduler.mda_paused
            if not paused and envelope.id not in scheduler and len(self._fresh) < FRESH_MAX:
                self._fresh[envelope.id] = envelope
            self._insert(envelope)
        self.poke()

    def poke(self) -> None:
        """Something changed: look at the schedule again now."""
        self._wake.set()

    def schedule_now(self, evpids: Iterable[int]) -> int:
        """Try these envelopes now (those waiting for a retry); how many will be."""
        count = self.scheduler.schedule_now(evpids, self.clock())
        self.poke()
        return count

    async def drain(self) -> None:
        """Start nothing new and wait until every task in flight has recorded
        its outcome (the daemon stops: a delivery cut off half-way would be
        repeated after the restart)."""
        self._draining = True
        self.poke()
        await self._drained.wait()

    # -- the loop --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the queue, then serve it until cancelled or drained (:meth:`drain`)."""
        for queued in await self.spool.queued():
            self._insert(queued)
        waiting = self.scheduler.count(EnvelopeKind.MTA)
        log.info("queue: %d envelope(s) scheduled", len(self.scheduler))
        if self.relay is None and waiting:
            log.warning("queue: no relay agent: %d envelope(s) wait", waiting)
        task_status.started()
        try:
            await self._serve()
        finally:
            self._drained.set()

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery:
            while not self._draining:
                self._wake = trio.Event()
                now = self.clock()
                for due in self.scheduler.batch(now):
                    nursery.start_soon(self._run_task, due)
                wakeup = self.scheduler.next_wakeup(now)
                if wakeup is not None and wakeup <= now:
                    await trio.lowlevel.checkpoint()
                    continue
                delay = math.inf if wakeup is None else wakeup - now
                with trio.move_on_after(delay):
                    await self._wake.wait()

    async def _run_task(self, due: Due) -> None:
        self._task_seq += 1
        seq = self._task_seq
        self._running[seq] = None
        try:
            await self._task(due)
        finally:
            del self._running[seq]
            self._task_done.set()
            self.poke()

    async def _task(self, due: Due) -> None:
        scheduler = self.scheduler
        try:
            envelope = self._fresh.pop(due.evpid, None) or await self.spool.load_envelope(due.evpid)
        except SpoolNotFound:
            scheduler.done(due.evpid)  # removed meanwhile (mtactl, or another way)
            return
        except SpoolError as exc:
            log.warning("queue: cannot load envelope evpid=%016x: %s", due.evpid, exc)
            scheduler.held(due.evpid, self.clock(), 60)
            return
        if due.task is Task.REMOVE:
            await self._delete(envelope)
            self._log(envelope, "Remove", "Removed by administrator")
            self.stats.removed += 1
            scheduler.done(due.evpid)
            return
        try:
            await self._attempt(due, envelope)
        except CorruptMessage as exc:
            await self._corrupt(envelope, exc)

    async def _attempt(self, due: Due, envelope: Envelope) -> None:
        """Expire, deliver or relay ``envelope`` and record the outcome; raises
        :class:`CorruptMessage` when its message fails its checks."""
        scheduler = self.scheduler
        if envelope.msgid in self._quarantined:
            self._forget(envelope)
            return
        if due.task is Task.EXPIRE:
            result = Result.permfail("Envelope expired", ESC_DELIVERY_TIME_EXPIRED)
            if await self._notified(Notice(envelope, "failed", result)):
                await self._delete(envelope)
                self._log(envelope, "Expire", "Envelope expired")
                self.stats.expired += 1
                scheduler.done(due.evpid)
            else:
                scheduler.held(due.evpid, self.clock(), 60)
            return
        agent = self.relay if due.task is Task.TRANSFER else self.deliver
        if agent is None:  # relaying went away (cannot happen while paused)
            scheduler.held(due.evpid, self.clock(), 60)
            return
        if due.task is Task.DELIVER:
            await self._limited(agent, envelope)
        else:
            await self._deliver_and_record(agent, envelope)

    async def _deliver_and_record(self, agent: Deliver, envelope: Envelope) -> None:
        """Have ``envelope`` delivered by ``agent`` and record the outcome; raises
        :class:`CorruptMessage` when its message fails its checks."""
        try:
            result = await agent(envelope)
        except CorruptMessage:
            raise
        except Exception as exc:  # a bug in a delivery method must not lose mail
            log.exception("queue: delivery of evpid=%016x failed", envelope.id)
            result = Result.tempfail(f"internal error: {exc!r}")
        if envelope.msgid in self._quarantined:  # by another envelope's attempt meanwhile
            self._forget(envelope)
            return
        await self._outcome(envelope, result)

    async def _limited(self, agent: Deliver, envelope: Envelope) -> None:
        """A local delivery within the ``mda limit`` sessions, in total and per
        user.  The session lasts until the outcome is recorded: a delivery done
        but not yet recorded is one a crash would repeat, so there are never
        more of those than ``max-session``."""
        user = envelope.mda_user or envelope.dest.local.lower()
        slots = self._user_slots.get(user)
        if slots is None:
            slots = self._user_slots[user] = trio.CapacityLimiter(
                self.config.mda.max_session_per_user
            )
        try:
            async with slots, self._mda_slots:
                await self._deliver_and_record(agent, envelope)
        finally:
            if slots.borrowed_tokens == 0 and not slots.statistics().tasks_waiting:
                self._user_slots.pop(user, None)

    async def _outcome(self, envelope: Envelope, attempt: Result) -> None:
        """Record the outcome of an attempt in the spool, then log the attempt:
        a delivery logged ``result=Ok`` is no longer queued (a crash cannot
        repeat it), as OpenSMTPD logs after telling its queue."""
        scheduler = self.scheduler
        evpid = envelope.id
        result = attempt
        if result.outcome is Outcome.OK:
            if DsnNotify.SUCCESS in envelope.dsn_notify:
                if result.relayed is None:
                    await self._notified(Notice(envelope, "delivered", result))
                elif result.relayed.notify_success:
                    await self._notified(Notice(envelope, "relayed", result))
            await self._delete(envelope)
            self._log_delivery(envelope, attempt)
            self.stats.delivered += 1
            scheduler.done(evpid)
            return
        if result.outcome is Outcome.PERMFAIL:
            if await self._notified(Notice(envelope, "failed", result)):
                await self._delete(envelope)
                self._log_delivery(envelope, attempt)
                self.stats.permfailed += 1
                scheduler.done(evpid)
                return
            result = Result.tempfail(result.text, result.esc)  # retried, never lost
        now = self.clock()
        changed = attrs.evolve(
            envelope,
            retry=envelope.retry + 1,
            last_try=int(now),
            errorline=result.text,
            esc=result.esc,  # 4.x.x, with the subject and detail as reported
        )
        try:
            await self.spool.update_envelope(changed)
        except SpoolNotFound:
            self._log_delivery(envelope, attempt)
            scheduler.done(evpid)
            return
        except SpoolError as exc:
            log.warning("queue: cannot update envelope evpid=%016x: %s", evpid, exc)
        self._log_delivery(envelope, attempt)
        self.stats.tempfailed += 1
        warn = scheduler.tempfail(evpid, now)
        if warn is None:
            return
        ttl = envelope_ttl(self.config, envelope)
        if await self._notified(Notice(changed, "delayed", result, delay=warn, ttl=ttl)):
            last_bounce = scheduler.warned(evpid, warn)
            try:
                await self.spool.update_envelope(attrs.evolve(changed, last_bounce=last_bounce))
            except SpoolError as exc:
                log.warning("queue: cannot update envelope evpid=%016x: %s", evpid, exc)

    async def _notified(self, notice: Notice) -> bool:
        """Send ``notice``; False when it could not be committed (retry later)."""
        try:
            await self.notifier.notify(notice)
        except CorruptMessage:
            raise  # the message it would quote failed its checks
        except TemporaryFailure as exc:  # the spool, or a lookup of the rules
            log.warning(
                "queue: cannot send a %s notice for evpid=%016x: %s",
                notice.kind,
                notice.envelope.id,
                exc,
            )
            return False
        self.stats.notices += 1
        return True

    async def _corrupt(self, envelope: Envelope, exc: CorruptMessage) -> None:
        """``envelope``'s message failed its checks: move it to ``corrupt/``, drop
        its envelopes from the schedule, send no notice (see the module docstring)."""
        msgid = envelope.msgid
        if msgid not in self._quarantined:
            self._quarantined.add(msgid)
            scheduled = len(self.scheduler.envelopes_of(msgid))
            try:
                await self.spool.quarantine(msgid, str(exc))  # logs where it went
            except SpoolNotFound:
                pass  # gone from the queue meanwhile: nothing left to deliver either
            except SpoolError as error:  # kept in the queue: tried (and refused) again later
                self._quarantined.discard(msgid)
                log.warning("queue: cannot quarantine msgid=%08x: %s", msgid, error)
                entry = self.scheduler.get(envelope.id)
                if entry is not None and entry.inflight:
                    self.scheduler.held(envelope.id, self.clock(), 60)
                return
            dropped = self.scheduler.discard(self.scheduler.envelopes_of(msgid))
            for evpid in dropped:
                self._fresh.pop(evpid, None)
            self.stats.quarantined += 1
            log.warning(
                "queue: quarantine msgid=%08x evpid=%016x envelopes=%d reason=%s "
                "(no delivery, no notice)",
                msgid,
                envelope.id,
                scheduled,
                visible(str(exc), 300),
            )
        self._forget(envelope)

    def _forget(self, envelope: Envelope) -> None:
        """Take an envelope of a quarantined message out of the schedule."""
        entry = self.scheduler.get(envelope.id)
        if entry is not None and entry.inflight:
            self.scheduler.done(envelope.id)
        else:
            self.scheduler.discard([envelope.id])
        if not self.scheduler.envelopes_of(envelope.msgid):
            self._quarantined.discard(envelope.msgid)

    async def _delete(self, envelope: Envelope) -> None:
        try:
            await self.spool.delete_envelope(envelope.id)
        except SpoolNotFound:
            pass
        except SpoolError as exc:  # delivered: a duplicate later is the worst case
            log.warning("queue: cannot delete envelope evpid=%016x: %s", envelope.id, exc)

    def _log_delivery(self, envelope: Envelope, result: Result) -> None:
        """OpenSMTPD's ``mda_log`` / ``mta_log`` line for one attempt."""
        if envelope.kind is EnvelopeKind.MTA:
            self._log_relay(envelope, result)
            return
        rcpt = "" if envelope.rcpt == envelope.dest else f"rcpt=<{visible(str(envelope.rcpt))}> "
        user = f"user={visible(envelope.mda_user or envelope.dest.local)} "
        log.info(
            "%016x mda delivery evpid=%016x from=<%s> to=<%s> %s%sdelay=%s result=%s stat=%s",
            envelope.id,
            envelope.id,
            visible(str(envelope.sender)),
            visible(str(envelope.dest)),
            rcpt,
            user,
            duration_text(self.clock() - envelope.ctime),
            result.outcome.value,
            visible(result.text, 400),
        )

    def _log_relay(self, envelope: Envelope, result: Result) -> None:
        """OpenSMTPD's ``mta_log`` line: where the envelope went, and how."""
        via = result.relayed
        log.info(
            '%016x mta delivery evpid=%016x from=<%s> to=<%s> rcpt=<%s> source="%s" '
            'relay="%s" delay=%s result=%s stat="%s"',
            envelope.id,
            envelope.id,
            visible(str(envelope.sender)),
            visible(str(envelope.dest)),
            visible(str(envelope.rcpt)),
            visible(via.source if via is not None else ""),
            visible(via.relay if via is not None else ""),
            duration_text(self.clock() - envelope.ctime),
            result.outcome.value,
            visible(result.text, 400).replace('"', "'"),
        )

    def _log(self, envelope: Envelope, prefix: str, status: str) -> None:
        """OpenSMTPD's ``queue_log`` line."""
        rcpt = "-" if envelope.rcpt == envelope.dest else str(envelope.rcpt)
        log.info(
            "%s: %s for %016x: from=<%s>, to=<%s>, rcpt=<%s>, delay=%s, stat=%s",
            "relay" if envelope.kind is EnvelopeKind.MTA else "delivery",
            prefix,
            envelope.id,
            visible(str(envelope.sender)),
            visible(str(envelope.dest)),
            visible(rcpt),
            duration_text(self.clock() - envelope.ctime),
            status,
        )

"""The scheduler, sans-IO: which envelope to try when, as OpenSMTPD's ramqueue.

It holds every queued envelope in memory (what the runner read from the spool
at start, then each commit) and answers, for a time ``now`` passed in, what is
due: deliveries, relays and expiries, in batches bounded by
``scheduler limit max-schedule`` and ``max-inflight``.  Time never comes from
a clock here, so tests drive it with plain numbers.

Retry times are OpenSMTPD's (``scheduler_next``): the next try after ``ctime``
is ``ctime + base * step**2`` for the smallest ``step`` (counting from the
envelope's retry count) that lies in the future, with ``base`` 400 s for
relaying and 10 s for local delivery (and bounces).  An envelope expires at
``ctime + ttl``.  After a temporary failure the scheduler says whether a
delay notice is due: the first ``bounce warn-interval`` ``w`` (up to four) such
that the next try is at or after ``ctime + w`` and no notice was sent for that
point yet.

Envelope states: *pending* (waiting for its time), *inflight* (handed out,
until the runner reports the outcome), *suspended* (``mtactl pause envelope``:
kept, never handed out).  ``mda`` and ``mta`` work can be paused as a whole.
An envelope removed or expired while inflight is dealt with when its outcome
comes back.  When a message goes to ``corrupt/``, :meth:`Scheduler.discard`
forgets its pending envelopes at once.

Pending envelopes wait in one :class:`_Lane` per kind of work (relaying; local
delivery and bounces), each a heap by due time.  While a lane is paused only
expiry can make its envelopes due, so the lane then also keeps a heap by
expiry time: a paused queue of any length costs nothing per batch.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Sequence

import attrs

from mta.envelope import EnvelopeKind

__all__ = [
    "BACKOFF_DELIVERY",
    "BACKOFF_TRANSFER",
    "Due",
    "Entry",
    "Scheduler",
    "Task",
    "next_try",
]

BACKOFF_TRANSFER = 400  # relaying (OpenSMTPD BACKOFF_TRANSFER)
BACKOFF_DELIVERY = 10  # local delivery and bounces (BACKOFF_DELIVERY)
MAX_WARNINGS = 4


def _base(kind: EnvelopeKind) -> int:
    return BACKOFF_TRANSFER if kind is EnvelopeKind.MTA else BACKOFF_DELIVERY


def next_try(ctime: int, kind: EnvelopeKind, retry: int, now: float) -> int:
    """The first ``ctime + base * step**2`` after ``now`` with ``step >= retry``."""
    base = _base(kind)
    step = retry
    if ctime + base * step * step <= now:
        # solve instead of counting: the smallest step with ctime + base*step² > now
        step = max(step, int(((now - ctime) / base) ** 0.5))
        while ctime + base * step * step <= now:
            step += 1
    return ctime + base * step * step


class Task(enum.Enum):
    """What the runner must do with an envelope the scheduler hands out."""

    DELIVER = "deliver"  # local delivery (mda)
    TRANSFER = "transfer"  # relay (mta)
    EXPIRE = "expire"  # ttl reached: bounce it and remove it
    REMOVE = "remove"  # removed by the operator: delete it


class _State(enum.Enum):
    PENDING = "pending"
    INFLIGHT = "inflight"


@attrs.define(eq=False)
class Entry:
    """The scheduler's view of one envelope."""

    evpid: int
    kind: EnvelopeKind
    ctime: int
    expire: int
    retry: int = 0
    last_bounce: int = 0
    sched: int = 0  # next try; while inflight, when the try began
    state: _State = _State.PENDING
    suspended: bool = False
    removed: bool = False  # by the operator, while inflight
    generation: int = 0  # bumped at every (re)queueing: stale heap items are skipped

    @property
    def inflight(self) -> bool:
        return self.state is _State.INFLIGHT


@attrs.frozen
class Due:
    """One envelope handed out by :meth:`Scheduler.batch`."""

    evpid: int
    task: Task


_Item = tuple[int, int, int]  # (time, evpid, generation): stale once the generation moved on


class _Lane:
    """The pending envelopes of one kind of work: by due time, and while the
    lane is paused, by expiry time too (built when the pause is first seen)."""

    __slots__ = ("due", "expiry")

    def __init__(self) -> None:
        self.due: list[_Item] = []  # (min(sched, expire), evpid, generation)
        self.expiry: list[_Item] | None = None  # (expire, evpid, generation), paused only

    def push(self, entry: Entry) -> None:
        heapq.heappush(self.due, (min(entry.sched, entry.expire), entry.evpid, entry.generation))
        if self.expiry is not None:
            heapq.heappush(self.expiry, (entry.expire, entry.evpid, entry.generation))

    def heap(self, paused: bool, entries: dict[int, Entry]) -> list[_Item]:
        """The heap that says what is due next: by due time, or while paused by expiry."""
        if not paused:
            self.expiry = None
            return self.due
        if self.expiry is None:
            live = (_live(entries, item) for item in self.due)
            self.expiry = [(e.expire, e.evpid, e.generation) for e in live if e is not None]
            heapq.heapify(self.expiry)
        return self.expiry


def _live(entries: dict[int, Entry], item: _Item) -> Entry | None:
    """The pending, unsuspended entry ``item`` stands for, or None when it is stale."""
    entry = entries.get(item[1])
    if (
        entry is None
        or entry.generation != item[2]
        or entry.state is not _State.PENDING
        or entry.suspended
    ):
        return None
    return entry


class Scheduler:
    """Every queued envelope and when to try it next."""

    def __init__(
        self,
        *,
        max_inflight: int = 5000,
        max_schedule: int = 10,
        warn_intervals: Sequence[int] = (4 * 3600,),
    ) -> None:
        self.set_limits(max_inflight, max_schedule, warn_intervals)
        self.mda_paused = False
        self.mta_paused = False
        self._entries: dict[int, Entry] = {}
        self._mta = _Lane()  # relaying
        self._mda = _Lane()  # local delivery and bounces
        self._now_due: list[Due] = []  # operator removals waiting for a batch
        self._inflight = 0

    def set_limits(
        self, max_inflight: int, max_schedule: int, warn_intervals: Sequence[int]
    ) -> None:
        """The limits of ``scheduler max-inflight`` / ``max-schedule`` and the
        ``bounce warn-interval`` delays (at start, and again at a reload)."""
        self.max_inflight = max_inflight
        self.max_schedule = max_schedule
        self.warn_intervals = tuple(sorted(w for w in warn_intervals if w > 0))[:MAX_WARNINGS]

    # -- contents ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, evpid: object) -> bool:
        return evpid in self._entries

    @property
    def inflight(self) -> int:
        return self._inflight

    def get(self, evpid: int) -> Entry | None:
        return self._entries.get(evpid)

    def entries(self) -> list[Entry]:
        """Every envelope, in id order."""
        return [self._entries[evpid] for evpid in sorted(self._entries)]

    def envelopes_of(self, msgid: int) -> list[int]:
        return sorted(evpid for evpid in self._entries if evpid >> 32 == msgid)

    # -- feeding -------------------------------------------------------------

    def insert(
        self,
        evpid: int,
        kind: EnvelopeKind,
        *,
        ctime: int,
        ttl: int,
        retry: int = 0,
        last_bounce: int = 0,
    ) -> Entry:
        """A committed envelope (or one found in the queue at start) to schedule.
        Its first try is at ``ctime + base * retry**2`` (at once when new)."""
        if evpid in self._entries:
            raise ValueError(f"envelope {evpid:016x} is already scheduled")
        base = _base(kind)
        entry = Entry(
            evpid,
            kind,
            ctime,
            ctime + ttl,
            retry=retry,
            last_bounce=last_bounce,
            sched=ctime + base * retry * retry,
        )
        self._entries[evpid] = entry
        self._push(entry)
        return entry

    def _push(self, entry: Entry) -> None:
        entry.generation += 1
        entry.state = _State.PENDING
        if not entry.suspended:
            (self._mta if entry.kind is EnvelopeKind.MTA else self._mda).push(entry)

    # -- handing work out ----------------------------------------------------

    def _heaps(self) -> list[tuple[list[_Item], Task | None]]:
        """Each lane's heap of what is due next, with the task its items get
        (None: expiry only, the lane is paused)."""
        entries = self._entries
        return [
            (self._mta.heap(self.mta_paused, entries), None if self.mta_paused else Task.TRANSFER),
            (self._mda.heap(self.mda_paused, entries), None if self.mda_paused else Task.DELIVER),
        ]

    def _top(self, heap: list[_Item]) -> _Item | None:
        """The first live item of ``heap`` (stale ones above it are dropped)."""
        entries = self._entries
        while heap:
            if _live(entries, heap[0]) is not None:
                return heap[0]
            heapq.heappop(heap)
        return None

    def batch(self, now: float) -> list[Due]:
        """What is due at ``now`` (at most ``max_schedule`` items, never more
        inflight than ``max_inflight``); each one is inflight until its outcome."""
        out: list[Due] = []
        while self._now_due and len(out) < self.max_schedule:
            out.append(self._now_due.pop(0))
        heaps = self._heaps()
        while len(out) < self.max_schedule and self._inflight < self.max_inflight:
            best: tuple[_Item, list[_Item], Task | None] | None = None
            for heap, task in heaps:
                top = self._top(heap)
                if top is not None and top[0] <= now and (best is None or top < best[0]):
                    best = (top, heap, task)
            if best is None:
                break
            item, heap, task = best
            heapq.heappop(heap)
            entry = self._entries[item[1]]
            if task is None or entry.expire <= now:
                task = Task.EXPIRE
            entry.state = _State.INFLIGHT
            entry.sched = int(now)
            self._inflight += 1
            out.append(Due(entry.evpid, task))
        return out

    def next_wakeup(self, now: float) -> float | None:
        """When :meth:`batch` may next have work (``now`` if it has some now), or
        None when nothing is waiting (all delivered, inflight or suspended).
        Paused work wakes nobody until it expires or is resumed."""
        if self._now_due:
            return now
        if self._inflight >= self.max_inflight:
            return None  # an outcome must come back first
        best: int | None = None
        for heap, _task in self._heaps():
            top = self._top(heap)
            if top is not None and (best is None or top[0] < best):
                best = top[0]
        return None if best is None else max(now, best)

    # -- outcomes ------------------------------------------------------------

    def _finish(self, evpid: int) -> Entry:
        entry = self._entries.get(evpid)
        if entry is None or entry.state is not _State.INFLIGHT:
            raise ValueError(f"envelope {evpid:016x} is not inflight")
        self._inflight -= 1
        return entry

    def done(self, evpid: int) -> None:
        """Delivered, permanently failed (bounced), expired or removed: forget it."""
        self._finish(evpid)
        del self._entries[evpid]

    def tempfail(self, evpid: int, now: float) -> int | None:
        """A temporary failure: the envelope's retry count goes up and it waits for
        its next try.  Returns the warn interval a delay notice is due for (the
        runner sends it and then calls :meth:`warned`), or None."""
        entry = self._finish(evpid)
        if entry.removed:
            entry.state = _State.INFLIGHT
            self._inflight += 1
            self._now_due.append(Due(evpid, Task.REMOVE))
            return None
        entry.retry += 1
        entry.sched = next_try(entry.ctime, entry.kind, entry.retry, now)
        self._push(entry)
        for warn in self.warn_intervals:
            point = entry.ctime + warn
            if entry.sched >= point and entry.last_bounce < point:
                return warn
        return None

    def warned(self, evpid: int, warn: int) -> int:
        """The delay notice for ``warn`` was sent; returns the new ``last_bounce``
        (the runner stores it in the envelope)."""
        entry = self._entries[evpid]
        entry.last_bounce = entry.ctime + warn
        return entry.last_bounce

    def held(self, evpid: int, now: float, delay: float) -> None:
        """The envelope could not be started (a limit was reached): back to
        pending, due again ``delay`` seconds from now, its retry count unchanged."""
        entry = self._finish(evpid)
        entry.sched = int(now + delay)
        self._push(entry)

    # -- the operator (mtactl) -----------------------------------------------

    def schedule_now(self, evpids: Iterable[int], now: float) -> int:
        """Try these envelopes at once (``mtactl schedule``); returns how many."""
        count = 0
        for evpid in evpids:
            entry = self._entries.get(evpid)
            if entry is None or entry.state is not _State.PENDING or entry.suspended:
                continue
            entry.sched = int(now)
            self._push(entry)
            count += 1
        return count

    def remove(self, evpids: Iterable[int]) -> int:
        """Remove these envelopes (``mtactl remove``): pending ones are handed out
        as REMOVE by the next batch; inflight ones once their outcome is known."""
        count = 0
        for evpid in evpids:
            entry = self._entries.get(evpid)
            if entry is None or entry.removed:
                continue
            entry.removed = True
            count += 1
            if entry.state is _State.PENDING:
                entry.generation += 1  # out of the heap
                entry.state = _State.INFLIGHT
                self._inflight += 1
                self._now_due.append(Due(evpid, Task.REMOVE))
        return count

    def discard(self, evpids: Iterable[int]) -> list[int]:
        """Forget these envelopes if they are pending (their message went to
        ``corrupt/``); returns those forgotten.  An inflight one is left for its
        outcome to end."""
        gone = []
        for evpid in evpids:
            entry = self._entries.get(evpid)
            if entry is None or entry.state is not _State.PENDING:
                continue
            del self._entries[evpid]  # its heap item is stale now
            gone.append(evpid)
        return gone

    def suspend(self, evpids: Iterable[int]) -> int:
        """Keep these envelopes but never hand them out (``mtactl pause envelope``)."""
        count = 0
        for evpid in evpids:
            entry = self._entries.get(evpid)
            if entry is None or entry.suspended or entry.removed:
                continue
            entry.suspended = True
            entry.generation += 1
            count += 1
        return count

    def resume(self, evpids: Iterable[int]) -> int:
        """Undo :meth:`suspend` (``mtactl resume envelope``)."""
        count = 0
        for evpid in evpids:
            entry = self._entries.get(evpid)
            if entry is None or not entry.suspended:
                continue
            entry.suspended = False
            if entry.state is _State.PENDING:
                self._push(entry)
            count += 1
        return count

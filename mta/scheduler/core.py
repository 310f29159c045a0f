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
delivery and bounces), each with two heaps: by due time (what it hands out
next) and by expiry time (what it hands out next while paused, when only
expiry makes work due).  Both are kept up to date, so pausing or resuming a
lane is O(1) and a paused queue of any length costs nothing per batch.  An
envelope leaving a lane leaves its heap items behind as stale (skipped at the
top); a heap is rebuilt when its stale items outnumber its live ones.

Costs, for ``n`` queued envelopes and ``k`` envelopes of one message (the
heap operations are amortized over the stale items they drop):

- :meth:`Scheduler.insert`, :meth:`~Scheduler.tempfail`, :meth:`~Scheduler.held`,
  :meth:`~Scheduler.warned`: O(log n); :meth:`~Scheduler.done`: O(k).
- :meth:`~Scheduler.batch`: O(log n) per envelope handed out, O(1) when
  nothing is due; :meth:`~Scheduler.next_wakeup`: O(1).
- ``mda_paused`` / ``mta_paused``: O(1) to change.
- :meth:`~Scheduler.schedule_now`, :meth:`~Scheduler.remove`,
  :meth:`~Scheduler.suspend`, :meth:`~Scheduler.resume`: O(log n) per
  envelope named; :meth:`~Scheduler.discard`: O(k + log n) per envelope.
- :meth:`~Scheduler.envelopes_of`: O(k log k); ``len``, ``in``,
  :meth:`~Scheduler.get`, :attr:`~Scheduler.inflight`,
  :attr:`~Scheduler.suspended`, :meth:`~Scheduler.count`: O(1).
- :meth:`~Scheduler.entries` (``mtactl show queue``, ``all``): O(n log n).
- Memory: one :class:`Entry`, one id in its message's list and up to two
  items in each of its lane's heaps per envelope.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
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
    # new at every (re)queueing, from one counter (an id queued again after it
    # went gets a new one too): heap items of an older generation are stale
    generation: int = 0

    @property
    def inflight(self) -> bool:
        return self.state is _State.INFLIGHT


@attrs.frozen
class Due:
    """One envelope handed out by :meth:`Scheduler.batch`."""

    evpid: int
    task: Task


_Item = tuple[int, int, int]  # (time, evpid, generation): stale once the generation moved on
COMPACT_MIN = 64  # a heap with fewer stale items than this is never rebuilt


class _Lane:
    """The pending, unsuspended envelopes of one kind of work, in two heaps:
    by due time (what an unpaused lane hands out next) and by expiry time
    (what a paused one hands out next).  Each such envelope has one live item
    in each heap; an item whose envelope left the lane (handed out, suspended,
    removed, rescheduled) is stale and dropped when it reaches the top, or
    when stale items outnumber live ones (:meth:`compact`)."""

    __slots__ = ("due", "expiry", "live")

    def __init__(self) -> None:
        self.due: list[_Item] = []  # (min(sched, expire), evpid, generation)
        self.expiry: list[_Item] = []  # (expire, evpid, generation)
        self.live = 0  # envelopes with a live item in each heap

    def push(self, entry: Entry) -> None:
        """``entry`` (its generation just bumped) enters the lane: O(log n)."""
        evpid, generation, expire = entry.evpid, entry.generation, entry.expire
        heapq.heappush(self.due, (min(entry.sched, expire), evpid, generation))
        heapq.heappush(self.expiry, (expire, evpid, generation))
        self.live += 1

    def left(self, entries: dict[int, Entry]) -> None:
        """An envelope left the lane, its items still in the heaps."""
        self.live -= 1
        if len(self.expiry) > 2 * self.live + COMPACT_MIN:
            self.expiry = self._rebuilt(self.expiry, entries)
        if len(self.due) > 2 * self.live + COMPACT_MIN:
            self.due = self._rebuilt(self.due, entries)

    @staticmethod
    def _rebuilt(heap: list[_Item], entries: dict[int, Entry]) -> list[_Item]:
        """``heap`` without its stale items: O(n), at most once per n/2 envelopes
        leaving the lane, so O(1) amortized each."""
        live = [item for item in heap if _live(entries, item) is not None]
        heapq.heapify(live)
        return live

    def heap(self, paused: bool) -> list[_Item]:
        """The heap that says what is due next: by due time, or while paused by expiry."""
        return self.expiry if paused else self.due


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
        self.mda_paused = False  # O(1) to change: each lane keeps both its heaps
        self.mta_paused = False
        self._entries: dict[int, Entry] = {}
        self._by_msgid: dict[int, list[int]] = {}  # msgid -> its envelopes' ids
        self._kinds: dict[EnvelopeKind, int] = dict.fromkeys(EnvelopeKind, 0)
        self._mta = _Lane()  # relaying
        self._mda = _Lane()  # local delivery and bounces
        self._now_due: deque[Due] = deque()  # operator removals waiting for a batch
        self._inflight = 0
        self._suspended = 0
        self._generation = 0  # the last generation given (see Entry.generation)

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

    @property
    def suspended(self) -> int:
        """How many envelopes are suspended (``mtactl pause envelope``)."""
        return self._suspended

    def count(self, kind: EnvelopeKind) -> int:
        """How many envelopes of ``kind`` are queued."""
        return self._kinds[kind]

    def get(self, evpid: int) -> Entry | None:
        return self._entries.get(evpid)

    def entries(self) -> list[Entry]:
        """Every envelope, in id order (O(n log n): for listing them all)."""
        return [self._entries[evpid] for evpid in sorted(self._entries)]

    def envelopes_of(self, msgid: int) -> list[int]:
        """The envelopes of message ``msgid``, in id order."""
        return sorted(self._by_msgid.get(msgid, ()))

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
            sched=ctime + base * retry * retry if retry else ctime,  # one int object
        )
        self._entries[evpid] = entry
        siblings = self._by_msgid.get(evpid >> 32)
        if siblings is None:
            self._by_msgid[evpid >> 32] = [evpid]
        else:
            siblings.append(evpid)
        self._kinds[kind] += 1
        self._push(entry)
        return entry

    def _forget(self, entry: Entry) -> None:
        """Drop ``entry`` (not in a lane any more) from every index."""
        evpid = entry.evpid
        del self._entries[evpid]
        siblings = self._by_msgid[evpid >> 32]
        siblings.remove(evpid)  # O(envelopes of the message)
        if not siblings:
            del self._by_msgid[evpid >> 32]
        self._kinds[entry.kind] -= 1
        if entry.suspended:
            self._suspended -= 1

    def _lane(self, entry: Entry) -> _Lane:
        return self._mta if entry.kind is EnvelopeKind.MTA else self._mda

    def _push(self, entry: Entry) -> None:
        """``entry`` is pending now; in its lane unless suspended."""
        self._generation += 1
        entry.generation = self._generation
        entry.state = _State.PENDING
        if not entry.suspended:
            self._lane(entry).push(entry)

    def _leave(self, entry: Entry) -> None:
        """``entry``, pending and not suspended, leaves its lane (its heap items go stale)."""
        self._generation += 1
        entry.generation = self._generation
        self._lane(entry).left(self._entries)

    # -- handing work out ----------------------------------------------------

    def _heaps(self) -> list[tuple[_Lane, list[_Item], Task | None]]:
        """Each lane, its heap of what is due next and the task its items get
        (None: expiry only, the lane is paused)."""
        return [
            (
                self._mta,
                self._mta.heap(self.mta_paused),
                None if self.mta_paused else Task.TRANSFER,
            ),
            (self._mda, self._mda.heap(self.mda_paused), None if self.mda_paused else Task.DELIVER),
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
            out.append(self._now_due.popleft())
        heaps = self._heaps()
        while len(out) < self.max_schedule and self._inflight < self.max_inflight:
            best: tuple[_Item, _Lane, list[_Item], Task | None] | None = None
            for lane, heap, task in heaps:
                top = self._top(heap)
                if top is not None and top[0] <= now and (best is None or top < best[0]):
                    best = (top, lane, heap, task)
            if best is None:
                break
            item, lane, heap, task = best
            heapq.heappop(heap)
            entry = self._entries[item[1]]
            if task is None or entry.expire <= now:
                task = Task.EXPIRE
            entry.state = _State.INFLIGHT
            entry.sched = int(now)
            lane.left(self._entries)  # its item in the other heap is stale now
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
        for _lane, heap, _task in self._heaps():
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
        self._forget(self._finish(evpid))

    def tempfail(self, evpid: int, now: float) -> int | None:
        """A temporary failure: the envelope's retry count goes up and it waits for
        its next try.  Returns the warn interval a delay notice is due for (the
        runner sends it and then calls :meth:`warned`), or None."""
        entry = self._finish(evpid)
        if self._removal(entry):
            return None
        entry.retry += 1
        entry.sched = next_try(entry.ctime, entry.kind, entry.retry, now)
        self._push(entry)
        for warn in self.warn_intervals:
            point = entry.ctime + warn
            if entry.sched >= point and entry.last_bounce < point:
                return warn
        return None

    def _removal(self, entry: Entry) -> bool:
        """If ``entry`` (just finished) was removed meanwhile, queue its removal."""
        if not entry.removed:
            return False
        self._inflight += 1
        self._now_due.append(Due(entry.evpid, Task.REMOVE))
        return True

    def warned(self, evpid: int, warn: int) -> int:
        """The delay notice for ``warn`` was sent; returns the new ``last_bounce``
        (the runner stores it in the envelope)."""
        entry = self._entries[evpid]
        entry.last_bounce = entry.ctime + warn
        return entry.last_bounce

    def held(self, evpid: int, now: float, delay: float) -> None:
        """The envelope could not be started (a limit was reached): back to
        pending, due again ``delay`` seconds from now, its retry count unchanged.
        One removed by the operator meanwhile is handed out as REMOVE instead."""
        entry = self._finish(evpid)
        if self._removal(entry):
            return
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
            self._leave(entry)
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
                if not entry.suspended:
                    self._leave(entry)
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
            if not entry.suspended:
                self._leave(entry)
            self._forget(entry)
            gone.append(evpid)
        return gone

    def suspend(self, evpids: Iterable[int]) -> int:
        """Keep these envelopes but never hand them out (``mtactl pause envelope``)."""
        count = 0
        for evpid in evpids:
            entry = self._entries.get(evpid)
            if entry is None or entry.suspended or entry.removed:
                continue
            if entry.state is _State.PENDING:
                self._leave(entry)
            entry.suspended = True
            self._suspended += 1
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
            self._suspended -= 1
            if entry.state is _State.PENDING:
                self._push(entry)
            count += 1
        return count

    def check(self) -> None:
        """Assert the indexes agree with the entries and no heap holds more than
        twice its live items plus :data:`COMPACT_MIN` (O(n): for tests)."""
        entries = self._entries
        assert sum(len(ids) for ids in self._by_msgid.values()) == len(entries)
        assert all(entries[e].evpid >> 32 == m for m, ids in self._by_msgid.items() for e in ids)
        assert self._suspended == sum(1 for e in entries.values() if e.suspended)
        assert self._kinds == {
            k: sum(1 for e in entries.values() if e.kind is k) for k in EnvelopeKind
        }
        inflight = sum(1 for e in entries.values() if e.state is _State.INFLIGHT)
        assert self._inflight == inflight
        for lane, mta in ((self._mta, True), (self._mda, False)):
            members = {
                e.evpid
                for e in entries.values()
                if (e.kind is EnvelopeKind.MTA) is mta
                and e.state is _State.PENDING
                and not e.suspended
            }
            assert lane.live == len(members)
            for heap in (lane.due, lane.expiry):
                live = [item[1] for item in heap if _live(entries, item) is not None]
                assert sorted(live) == sorted(members)
                assert len(heap) <= 2 * lane.live + COMPACT_MIN

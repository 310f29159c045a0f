"""The scheduler against a model that is obviously right and slow: random sequences
of insert, batch, outcomes (ok, tempfail, permfail, held), pause and resume per
kind, the operator's schedule / remove / suspend / resume, discard and time
passing give the same answers from both, and the scheduler's indexes and heaps
stay consistent and bounded (:meth:`Scheduler.check`) after every step.

The model keeps a plain dict of envelopes and scans all of them for every
answer; it shares nothing with the scheduler but its public types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mta.envelope import EnvelopeKind
from mta.scheduler import core
from mta.scheduler.core import BACKOFF_DELIVERY, BACKOFF_TRANSFER, Due, Entry, Scheduler, Task

T0 = 1_700_000_000
_COMPACT_MIN = core.COMPACT_MIN
KINDS = st.sampled_from(list(EnvelopeKind))
MSGIDS = st.integers(1, 6)


def _ladder(ctime: int, kind: EnvelopeKind, retry: int, now: float) -> int:
    """The next retry, counted step by step."""
    base = BACKOFF_TRANSFER if kind is EnvelopeKind.MTA else BACKOFF_DELIVERY
    step = retry
    while ctime + base * step * step <= now:
        step += 1
    return ctime + base * step * step


@attrs.define
class _Envelope:
    kind: EnvelopeKind
    ctime: int
    expire: int
    retry: int
    last_bounce: int
    sched: int
    inflight: bool = False
    suspended: bool = False
    removed: bool = False


class _Model:
    """What the scheduler should answer, by scanning everything."""

    def __init__(self, max_inflight: int, max_schedule: int, warns: tuple[int, ...]) -> None:
        self.max_inflight = max_inflight
        self.max_schedule = max_schedule
        self.warns = warns
        self.paused = {EnvelopeKind.MTA: False, EnvelopeKind.MDA: False}
        self.envelopes: dict[int, _Envelope] = {}
        self.removals: list[int] = []

    def _paused(self, kind: EnvelopeKind) -> bool:
        return self.paused[EnvelopeKind.MTA if kind is EnvelopeKind.MTA else EnvelopeKind.MDA]

    def _key(self, e: _Envelope) -> int:
        return e.expire if self._paused(e.kind) else min(e.sched, e.expire)

    def _waiting(self) -> list[tuple[int, int]]:
        return sorted(
            (self._key(e), evpid)
            for evpid, e in self.envelopes.items()
            if not e.inflight and not e.suspended
        )

    def inflight(self) -> int:
        return sum(1 for e in self.envelopes.values() if e.inflight)

    def batch(self, now: int) -> list[Due]:
        out = [Due(evpid, Task.REMOVE) for evpid in self.removals[: self.max_schedule]]
        del self.removals[: self.max_schedule]
        for key, evpid in self._waiting():
            if len(out) >= self.max_schedule or self.inflight() >= self.max_inflight:
                break
            if key > now:
                break
            e = self.envelopes[evpid]
            if self._paused(e.kind) or e.expire <= now:
                task = Task.EXPIRE
            else:
                task = Task.TRANSFER if e.kind is EnvelopeKind.MTA else Task.DELIVER
            e.inflight = True
            e.sched = now
            out.append(Due(evpid, task))
        return out

    def next_wakeup(self, now: int) -> float | None:
        if self.removals:
            return now
        if self.inflight() >= self.max_inflight:
            return None
        waiting = self._waiting()
        return max(now, waiting[0][0]) if waiting else None

    def tempfail(self, evpid: int, now: int) -> int | None:
        e = self.envelopes[evpid]
        if e.removed:
            self.removals.append(evpid)
            return None
        e.inflight = False
        e.retry += 1
        e.sched = _ladder(e.ctime, e.kind, e.retry, now)
        for warn in self.warns:
            if e.sched >= e.ctime + warn and e.last_bounce < e.ctime + warn:
                return warn
        return None

    def held(self, evpid: int, now: int, delay: int) -> None:
        e = self.envelopes[evpid]
        if e.removed:
            self.removals.append(evpid)
            return
        e.inflight = False
        e.sched = now + delay

    def schedule_now(self, evpids: list[int], now: int) -> int:
        count = 0
        for evpid in evpids:
            e = self.envelopes.get(evpid)
            if e is not None and not e.inflight and not e.suspended:
                e.sched = now
                count += 1
        return count

    def remove(self, evpids: list[int]) -> int:
        count = 0
        for evpid in evpids:
            e = self.envelopes.get(evpid)
            if e is None or e.removed:
                continue
            e.removed = True
            count += 1
            if not e.inflight:
                e.inflight = True
                self.removals.append(evpid)
        return count

    def discard(self, evpids: list[int]) -> list[int]:
        gone = [evpid for evpid in evpids if evpid in self.envelopes]
        gone = [evpid for evpid in gone if not self.envelopes[evpid].inflight]
        for evpid in gone:
            del self.envelopes[evpid]
        return gone

    def suspend(self, evpids: list[int], suspended: bool) -> int:
        count = 0
        for evpid in evpids:
            e = self.envelopes.get(evpid)
            if e is None or e.suspended == suspended or (suspended and e.removed):
                continue
            e.suspended = suspended
            count += 1
        return count

    def envelopes_of(self, msgid: int) -> list[int]:
        return sorted(evpid for evpid in self.envelopes if evpid >> 32 == msgid)


class SchedulerAgainstModel(RuleBasedStateMachine):
    """Each rule does the same to both and compares what they answer."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.scheduler = Scheduler()
        self.model = _Model(1, 1, ())

    @initialize(
        max_inflight=st.integers(1, 8),
        max_schedule=st.integers(1, 5),
        warns=st.lists(st.integers(1, 20000), max_size=3),
        compact_min=st.sampled_from([0, 1, 3, core.COMPACT_MIN]),
    )
    def limits(
        self, max_inflight: int, max_schedule: int, warns: list[int], compact_min: int
    ) -> None:
        # a small queue rebuilds its heaps too when the threshold is low
        core.COMPACT_MIN = compact_min
        self.scheduler.set_limits(max_inflight, max_schedule, warns)
        self.model = _Model(max_inflight, max_schedule, self.scheduler.warn_intervals)

    def teardown(self) -> None:
        core.COMPACT_MIN = _COMPACT_MIN

    def _some(self, data: st.DataObject) -> list[int]:
        """Envelope ids to name: known ones and unknown ones."""
        known = sorted(self.model.envelopes)
        pool = st.sampled_from(known) if known else st.nothing()
        return data.draw(st.lists(pool | st.integers(1 << 32, 7 << 32), max_size=4))

    @rule(
        msgid=MSGIDS,
        low=st.integers(1, 12),
        kind=KINDS,
        age=st.integers(0, 20000),
        ttl=st.integers(1, 40000),
        retry=st.integers(0, 4),
        last_bounce=st.integers(0, 1),
    )
    def insert(
        self,
        msgid: int,
        low: int,
        kind: EnvelopeKind,
        age: int,
        ttl: int,
        retry: int,
        last_bounce: int,
    ) -> None:
        evpid = msgid << 32 | low
        if evpid in self.model.envelopes:
            assert evpid in self.scheduler
            return
        ctime = self.now - age
        bounce = ctime + 1 if last_bounce else 0
        self.scheduler.insert(evpid, kind, ctime=ctime, ttl=ttl, retry=retry, last_bounce=bounce)
        base = BACKOFF_TRANSFER if kind is EnvelopeKind.MTA else BACKOFF_DELIVERY
        sched = ctime + base * retry * retry
        self.model.envelopes[evpid] = _Envelope(kind, ctime, ctime + ttl, retry, bounce, sched)

    @rule(seconds=st.sampled_from([0, 1, 9, 10, 60, 400, 1600, 3600, 20000]))
    def advance(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def batch(self) -> None:
        assert self.scheduler.batch(self.now) == self.model.batch(self.now)

    @rule()
    def next_wakeup(self) -> None:
        assert self.scheduler.next_wakeup(self.now) == self.model.next_wakeup(self.now)

    def _inflight(self) -> list[int]:
        return sorted(evpid for evpid, e in self.model.envelopes.items() if e.inflight)

    @precondition(lambda self: any(e.inflight for e in self.model.envelopes.values()))
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "permfail", "tempfail", "held"]))
    def complete(self, data: st.DataObject, outcome: str) -> None:
        evpid = data.draw(st.sampled_from(self._inflight()))
        if evpid in self.model.removals:  # handed out only by a later batch
            return
        if outcome in ("ok", "permfail"):  # both end it (a bounce was sent for permfail)
            self.scheduler.done(evpid)
            del self.model.envelopes[evpid]
        elif outcome == "tempfail":
            warn = self.scheduler.tempfail(evpid, self.now)
            assert warn == self.model.tempfail(evpid, self.now)
            if warn is not None:
                stamp = self.scheduler.warned(evpid, warn)
                self.model.envelopes[evpid].last_bounce = stamp
        else:
            self.scheduler.held(evpid, self.now, 60)
            self.model.held(evpid, self.now, 60)

    @rule(kind=st.sampled_from([EnvelopeKind.MTA, EnvelopeKind.MDA]), paused=st.booleans())
    def pause(self, kind: EnvelopeKind, paused: bool) -> None:
        if kind is EnvelopeKind.MTA:
            self.scheduler.mta_paused = paused
        else:
            self.scheduler.mda_paused = paused
        self.model.paused[kind] = paused

    @rule(data=st.data())
    def schedule_now(self, data: st.DataObject) -> None:
        evpids = self._some(data)
        assert self.scheduler.schedule_now(evpids, self.now) == self.model.schedule_now(
            evpids, self.now
        )

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        evpids = self._some(data)
        assert self.scheduler.remove(evpids) == self.model.remove(evpids)

    @rule(data=st.data(), suspend=st.booleans())
    def suspend(self, data: st.DataObject, suspend: bool) -> None:
        evpids = self._some(data)
        counted = self.scheduler.suspend(evpids) if suspend else self.scheduler.resume(evpids)
        assert counted == self.model.suspend(evpids, suspend)

    @rule(msgid=MSGIDS)
    def discard(self, msgid: int) -> None:
        evpids = self.scheduler.envelopes_of(msgid)
        assert evpids == self.model.envelopes_of(msgid)
        assert self.scheduler.discard(evpids) == self.model.discard(evpids)

    @invariant()
    def agree(self) -> None:
        scheduler, model = self.scheduler, self.model
        scheduler.check()
        assert len(scheduler) == len(model.envelopes)
        assert scheduler.inflight == model.inflight()
        assert scheduler.suspended == sum(e.suspended for e in model.envelopes.values())
        for kind in EnvelopeKind:
            assert scheduler.count(kind) == sum(e.kind is kind for e in model.envelopes.values())
        for entry in scheduler.entries():
            e = model.envelopes[entry.evpid]
            assert (entry.inflight, entry.suspended, entry.retry) == (
                e.inflight,
                e.suspended,
                e.retry,
            )
            assert (entry.expire, entry.last_bounce) == (e.expire, e.last_bounce)
            if not e.inflight:
                assert entry.sched == e.sched


TestSchedulerAgainstModel = SchedulerAgainstModel.TestCase
TestSchedulerAgainstModel.settings = settings(max_examples=300, stateful_step_count=60)


class _CountingDict(dict[int, Entry]):
    """The scheduler's envelopes, counting the look-ups made in them."""

    looked_up = 0

    def get(self, key: int, default: Any = None) -> Any:
        self.looked_up += 1
        return super().get(key, default)

    def __getitem__(self, key: int) -> Entry:
        self.looked_up += 1
        return super().__getitem__(key)


def _lookups_per_step(size: int) -> list[int]:
    """How many envelopes each step of a fixed sequence looks at, with ``size``
    envelopes queued: half local ones due but paused, half relayed ones
    waiting for their retry."""
    s = Scheduler(max_schedule=5)
    for n in range(size // 2):
        s.insert((n + 1) << 32 | 1, EnvelopeKind.MTA, ctime=T0, ttl=4 * 86400)
    while batch := s.batch(T0):
        for due in batch:
            s.tempfail(due.evpid, T0)
    s.mda_paused = True
    for n in range(size // 2):
        s.insert((n + 1) << 32 | 2, EnvelopeKind.MDA, ctime=T0, ttl=4 * 86400)
    counting = _CountingDict(s._entries)
    s._entries = counting
    new = (size + 1) << 32 | 1

    def deliver(now: int) -> None:
        for due in s.batch(now):
            s.done(due.evpid)

    steps: list[Callable[[], object]] = [
        lambda: s.batch(T0 + 1),
        lambda: s.next_wakeup(T0 + 1),
        lambda: s.insert(new, EnvelopeKind.MDA, ctime=T0 + 1, ttl=86400),
        lambda: s.schedule_now([1 << 32 | 1], T0 + 1),
        lambda: [s.tempfail(d.evpid, T0 + 2) for d in s.batch(T0 + 2)],
        lambda: s.suspend([2 << 32 | 1, 3 << 32 | 2]),
        lambda: s.resume([2 << 32 | 1, 3 << 32 | 2]),
        lambda: s.remove([4 << 32 | 1, 5 << 32 | 2]),
        lambda: s.envelopes_of(6),
        lambda: setattr(s, "mda_paused", False),
        lambda: deliver(T0 + 3),
        lambda: s.next_wakeup(T0 + 3),
        lambda: setattr(s, "mda_paused", True),
        lambda: s.discard([7 << 32 | 1, 7 << 32 | 2]),
        lambda: s.batch(T0 + 4),
        lambda: s.next_wakeup(T0 + 4),
    ]
    counts = []
    for step in steps:
        before = counting.looked_up
        step()
        counts.append(counting.looked_up - before)
    s.check()
    return counts


def test_the_work_of_each_operation_does_not_grow_with_the_queue() -> None:
    # not timed: the envelopes each step looks at are the same for 200 and 20,000
    small, large = _lookups_per_step(200), _lookups_per_step(20_000)
    assert small == large
    assert max(large) <= 4 * 5  # a batch of 5: a few look-ups each

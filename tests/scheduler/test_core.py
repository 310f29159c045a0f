"""The scheduler core, with time passed in: retry ladder, expiry, warnings, limits,
pause, the operator's schedule / remove / suspend, and discarding a quarantined
message's envelopes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.envelope import EnvelopeKind
from mta.scheduler.core import (
    BACKOFF_DELIVERY,
    BACKOFF_TRANSFER,
    Due,
    Scheduler,
    Task,
    next_try,
)

MDA, MTA = EnvelopeKind.MDA, EnvelopeKind.MTA
DAY = 86400
T0 = 1_700_000_000


def evp(msgid: int, n: int = 1) -> int:
    return msgid << 32 | n


def test_relay_retry_ladder_is_opensmtpds() -> None:
    # ~0, 6m40s, 26m40s, 1h, 1h46m40s, 2h46m40s, 4h ... counted from the creation
    times = []
    now = T0
    for retry in range(1, 8):
        now = next_try(T0, MTA, retry, now)
        times.append(now - T0)
    assert times == [400, 1600, 3600, 6400, 10000, 14400, 19600]
    assert [next_try(T0, MDA, r, T0) - T0 for r in (1, 2, 3, 4)] == [10, 40, 90, 160]


@given(st.integers(0, 50), st.integers(0, 10 * DAY), st.sampled_from([MDA, MTA]))
def test_next_try_is_the_first_ladder_step_in_the_future(
    retry: int, elapsed: int, kind: EnvelopeKind
) -> None:
    now = T0 + elapsed
    got = next_try(T0, kind, retry, now)
    base = BACKOFF_TRANSFER if kind is MTA else BACKOFF_DELIVERY
    step = retry
    while T0 + base * step * step <= now:
        step += 1
    assert got == T0 + base * step * step > now


def test_new_envelopes_are_due_at_once_then_retried_on_the_ladder() -> None:
    s = Scheduler()
    s.insert(evp(1), MDA, ctime=T0, ttl=4 * DAY)
    s.insert(evp(2), MTA, ctime=T0, ttl=4 * DAY)
    assert s.next_wakeup(T0) == T0
    assert sorted(s.batch(T0), key=lambda d: d.evpid) == [
        Due(evp(1), Task.DELIVER),
        Due(evp(2), Task.TRANSFER),
    ]
    assert s.inflight == 2 and s.batch(T0) == []
    assert s.next_wakeup(T0) is None  # everything is inflight
    assert s.tempfail(evp(1), T0 + 1) is None
    assert s.tempfail(evp(2), T0 + 1) is None
    assert s.next_wakeup(T0 + 1) == T0 + 10  # local: 10 s; relay: 400 s
    assert s.batch(T0 + 9) == []
    assert s.batch(T0 + 10) == [Due(evp(1), Task.DELIVER)]
    s.done(evp(1))
    assert s.next_wakeup(T0 + 10) == T0 + 400
    assert s.batch(T0 + 400) == [Due(evp(2), Task.TRANSFER)]
    s.done(evp(2))
    assert len(s) == 0 and s.next_wakeup(T0 + 400) is None


def test_an_entry_tells_whether_it_is_inflight_and_since_when() -> None:
    s = Scheduler()
    s.insert(evp(1), MDA, ctime=T0, ttl=4 * DAY)

    def state() -> tuple[bool, int]:
        (entry,) = s.entries()
        return entry.inflight, entry.sched

    assert state() == (False, T0)
    assert s.batch(T0 + 3) == [Due(evp(1), Task.DELIVER)]
    assert state() == (True, T0 + 3)  # the try began then
    s.tempfail(evp(1), T0 + 5)
    assert state() == (False, T0 + 10)


def test_a_restart_schedules_from_the_stored_retry_count() -> None:
    s = Scheduler()
    s.insert(evp(1), MTA, ctime=T0, ttl=4 * DAY, retry=3)
    assert s.next_wakeup(T0) == T0 + 3600  # ctime + 400 * 3²
    s.insert(evp(2), MTA, ctime=T0 - DAY, ttl=4 * DAY, retry=3)
    assert s.batch(T0) == [Due(evp(2), Task.TRANSFER)]  # long overdue: at once


def test_expiry_at_ctime_plus_ttl_even_while_waiting_for_a_retry() -> None:
    s = Scheduler()
    s.insert(evp(1), MTA, ctime=T0, ttl=1000)
    assert s.batch(T0) == [Due(evp(1), Task.TRANSFER)]
    s.tempfail(evp(1), T0)  # next try at T0+400
    s.batch(T0 + 400)
    s.tempfail(evp(1), T0 + 400)  # next try at T0+1600, after the expiry
    assert s.next_wakeup(T0 + 400) == T0 + 1000
    assert s.batch(T0 + 999) == []
    assert s.batch(T0 + 1000) == [Due(evp(1), Task.EXPIRE)]
    s.done(evp(1))
    assert len(s) == 0


def test_delay_warnings_once_per_interval_up_to_four() -> None:
    s = Scheduler(warn_intervals=[3600, 60, 600, 7200, 99999])
    assert s.warn_intervals == (60, 600, 3600, 7200)
    s.insert(evp(1), MDA, ctime=T0, ttl=4 * DAY)
    warned = []
    now = T0
    while len(s) and now < T0 + 3 * 3600:
        for due in s.batch(now):
            warn = s.tempfail(due.evpid, now)
            if warn is not None:
                s.warned(due.evpid, warn)
                warned.append((warn, now - T0))
        wake = s.next_wakeup(now)
        assert wake is not None
        now = int(wake)
    # each interval warned once, at the first failure whose next try lies past it
    assert [w for w, _ in warned] == [60, 600, 3600, 7200]
    for warn, at in warned:
        assert next_try(T0, MDA, 1, T0 + at) >= T0 + warn
    assert s.get(evp(1)) is not None and s.get(evp(1)).last_bounce == T0 + 7200  # type: ignore[union-attr]


def test_a_stored_last_bounce_is_not_warned_again() -> None:
    s = Scheduler(warn_intervals=[60])
    s.insert(evp(1), MDA, ctime=T0, ttl=DAY, retry=2, last_bounce=T0 + 60)
    s.batch(T0 + 40)
    assert s.tempfail(evp(1), T0 + 40) is None


def test_max_schedule_and_max_inflight() -> None:
    s = Scheduler(max_schedule=3, max_inflight=5)
    for n in range(1, 9):
        s.insert(evp(7, n), MDA, ctime=T0, ttl=DAY)
    assert len(s.batch(T0)) == 3
    assert len(s.batch(T0)) == 2  # the inflight limit
    assert s.batch(T0) == [] and s.next_wakeup(T0) is None
    first = next(iter(s.entries()))
    s.done(first.evpid)
    assert s.next_wakeup(T0) == T0
    assert len(s.batch(T0)) == 1


def test_paused_mda_or_mta_work_waits_but_still_expires() -> None:
    s = Scheduler()
    s.insert(evp(1), MDA, ctime=T0, ttl=1000)
    s.insert(evp(2), MTA, ctime=T0, ttl=1000)
    s.mta_paused = True
    assert s.batch(T0) == [Due(evp(1), Task.DELIVER)]
    assert s.next_wakeup(T0) == T0 + 1000  # only its expiry can wake us
    assert s.batch(T0 + 10) == []
    s.mta_paused = False
    assert s.next_wakeup(T0 + 10) == T0 + 10
    s.mta_paused = True
    assert s.batch(T0 + 1000) == [Due(evp(2), Task.EXPIRE)]


def test_a_paused_lane_hands_out_expiries_in_expiry_order_and_nothing_else() -> None:
    s = Scheduler(max_schedule=100)
    for n, ttl in enumerate((300, 100, 200, 400), start=1):
        s.insert(evp(n), MDA, ctime=T0, ttl=ttl)
    s.insert(evp(9), MDA, ctime=T0, ttl=50)
    s.remove([evp(9)])  # stale in the due heap when the pause is first seen
    s.mda_paused = True
    assert s.batch(T0) == [Due(evp(9), Task.REMOVE)]
    s.done(evp(9))
    assert s.next_wakeup(T0) == T0 + 100
    assert s.batch(T0 + 250) == [Due(evp(2), Task.EXPIRE), Due(evp(3), Task.EXPIRE)]
    s.insert(evp(5), MDA, ctime=T0 + 250, ttl=10)  # queued while paused
    assert s.next_wakeup(T0 + 250) == T0 + 260
    s.mda_paused = False  # resumed: the rest is due now, by due time
    assert s.batch(T0 + 250) == [Due(evp(n), Task.DELIVER) for n in (1, 4, 5)]
    s.insert(evp(6), MDA, ctime=T0 + 260, ttl=10)
    s.mda_paused = True  # paused again: a fresh expiry heap without the inflight ones
    assert s.next_wakeup(T0 + 260) == T0 + 270
    assert s.batch(T0 + 300) == [Due(evp(6), Task.EXPIRE)]
    assert s.next_wakeup(T0 + 300) is None


def test_schedule_now_remove_suspend_resume() -> None:
    s = Scheduler()
    for n in (1, 2, 3):
        s.insert(evp(5, n), MTA, ctime=T0, ttl=DAY)
    for due in s.batch(T0):
        s.tempfail(due.evpid, T0)
    assert s.batch(T0 + 1) == []
    assert s.schedule_now([evp(5, 1), evp(9)], T0 + 1) == 1
    assert s.batch(T0 + 1) == [Due(evp(5, 1), Task.TRANSFER)]
    # removal: a pending envelope at the next batch, an inflight one after its outcome
    assert s.remove([evp(5, 1), evp(5, 2)]) == 2
    assert s.batch(T0 + 2) == [Due(evp(5, 2), Task.REMOVE)]
    s.done(evp(5, 2))
    assert s.tempfail(evp(5, 1), T0 + 3) is None
    assert s.batch(T0 + 3) == [Due(evp(5, 1), Task.REMOVE)]
    s.done(evp(5, 1))
    # suspended: kept, never handed out, not even to expire, until resumed
    assert s.suspend([evp(5, 3)]) == 1
    assert s.next_wakeup(T0 + 3) is None and s.batch(T0 + 2 * DAY) == []
    assert s.schedule_now([evp(5, 3)], T0) == 0
    assert s.resume([evp(5, 3)]) == 1
    assert s.batch(T0 + 2 * DAY) == [Due(evp(5, 3), Task.EXPIRE)]


def test_discard_forgets_pending_envelopes_and_leaves_inflight_ones() -> None:
    """A message moved to corrupt/: its waiting envelopes go (no task, no
    wakeup); one in flight stays until its outcome is recorded."""
    s = Scheduler()
    for n in (1, 2, 3):
        s.insert(evp(5, n), MDA, ctime=T0, ttl=DAY)
    s.insert(evp(6), MDA, ctime=T0 + 100, ttl=DAY)
    s.max_schedule = 1
    assert s.batch(T0) == [Due(evp(5, 1), Task.DELIVER)]
    s.tempfail(evp(5, 1), T0)  # pending, waiting for its retry
    assert s.batch(T0) == [Due(evp(5, 2), Task.DELIVER)]  # inflight
    assert s.discard(s.envelopes_of(5)) == [evp(5, 1), evp(5, 3)]
    assert s.envelopes_of(5) == [evp(5, 2)] and s.inflight == 1
    assert s.discard([evp(5, 2), evp(7)]) == []
    s.done(evp(5, 2))
    assert len(s) == 1 and s.inflight == 0
    s.max_schedule = 10
    assert s.next_wakeup(T0) == T0 + 100  # the heap's stale items wake nobody
    assert s.batch(T0 + DAY) == [Due(evp(6), Task.DELIVER)]


def test_held_envelopes_come_back_without_a_retry_counted() -> None:
    s = Scheduler()
    s.insert(evp(1), MDA, ctime=T0, ttl=DAY)
    s.batch(T0)
    s.held(evp(1), T0, 3)
    entry = s.get(evp(1))
    assert entry is not None and entry.retry == 0
    assert s.batch(T0 + 2) == [] and s.batch(T0 + 3) == [Due(evp(1), Task.DELIVER)]


def test_outcomes_need_an_inflight_envelope() -> None:
    s = Scheduler()
    s.insert(evp(1), MDA, ctime=T0, ttl=DAY)
    with pytest.raises(ValueError):
        s.done(evp(1))
    with pytest.raises(ValueError):
        s.tempfail(evp(2), T0)
    with pytest.raises(ValueError):
        s.insert(evp(1), MDA, ctime=T0, ttl=DAY)
    assert s.envelopes_of(1) == [evp(1)] and evp(1) in s


@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.sampled_from(["done", "tempfail", "held"])),
        max_size=60,
    )
)
def test_inflight_accounting_never_drifts(ops: list[tuple[int, str]]) -> None:
    s = Scheduler(max_schedule=2, max_inflight=3)
    for n in range(1, 7):
        s.insert(evp(1, n), MDA, ctime=T0, ttl=DAY)
    now = float(T0)
    inflight: list[int] = []
    for step, outcome in ops:
        now += step * 50
        inflight += [d.evpid for d in s.batch(now)]
        assert s.inflight == len(inflight) <= 3
        if inflight:
            evpid = inflight.pop(0)
            if outcome == "done":
                s.done(evpid)
            elif outcome == "tempfail":
                s.tempfail(evpid, now)
            else:
                s.held(evpid, now, 3)
        assert s.inflight == len(inflight)

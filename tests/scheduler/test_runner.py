"""The queue runner with fake deliveries and a recording notifier, on trio's
autojump clock: days of retries run in milliseconds.  The timing tests use an
in-memory store (no threads, so the clock only jumps when the runner waits);
one test runs the real spool end to end."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

from mta.config.load import load_text
from mta.config.model import Config
from mta.delivery.result import ESC_DELIVERY_TIME_EXPIRED, Outcome, Relayed, Result
from mta.envelope import DsnNotify, Envelope, EnvelopeKind
from mta.errors import SpoolError, SpoolNotFound
from mta.scheduler.runner import Notice, QueueRunner, duration_text, envelope_ttl
from mta.spool.recovery import Queued
from mta.spool.spool import Spool
from mta.status import StatusCode
from tests.envelopes import make_envelope

T0 = 1_800_000_000
DAY = 86400
CONFIG = """
queue ttl 2d
bounce warn-interval 1h, 6h
action "local" maildir "/nonexistent/%{user.username}"
action "short" maildir "/nonexistent" ttl 1h
action "out" relay
match from any for domain "example.org" action "local"
"""


def config(text: str = CONFIG) -> Config:
    return load_text(text, check_interfaces=False).config


class Notices:
    def __init__(self) -> None:
        self.sent: list[Notice] = []
        self.fail = False

    async def notify(self, notice: Notice) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise SpoolError("spool: no space for the notice")
        self.sent.append(notice)


class Agent:
    """A delivery method whose results the test decides, per attempt."""

    def __init__(self, decide: Callable[[Envelope, int], Result]) -> None:
        self.decide = decide
        self.attempts: list[tuple[int, float]] = []

    async def __call__(self, envelope: Envelope) -> Result:
        await trio.sleep(0.01)
        self.attempts.append((envelope.id, trio.current_time()))
        return self.decide(envelope, len(self.attempts))


class MemoryStore:
    """The spool as the runner sees it, in memory and without threads."""

    def __init__(self) -> None:
        self.envelopes_by_id: dict[int, Envelope] = {}
        self.updates = 0
        self.corrupt: dict[int, tuple[str, list[Envelope]]] = {}  # msgid -> reason, envelopes
        self.quarantine_fails = False

    async def envelopes(self) -> list[Envelope]:
        await trio.lowlevel.checkpoint()
        return [self.envelopes_by_id[k] for k in sorted(self.envelopes_by_id)]

    async def queued(self) -> list[Queued]:
        return [Queued.of(envelope) for envelope in await self.envelopes()]

    async def load_envelope(self, evpid: int) -> Envelope:
        await trio.lowlevel.checkpoint()
        try:
            return self.envelopes_by_id[evpid]
        except KeyError:
            raise SpoolNotFound(f"no envelope {evpid:016x}") from None

    async def update_envelope(self, envelope: Envelope) -> None:
        await self.load_envelope(envelope.id)
        self.updates += 1
        self.envelopes_by_id[envelope.id] = envelope

    async def delete_envelope(self, evpid: int) -> bool:
        await self.load_envelope(evpid)
        del self.envelopes_by_id[evpid]
        return not any(e >> 32 == evpid >> 32 for e in self.envelopes_by_id)

    async def quarantine(self, msgid: int, reason: str) -> str:
        await trio.lowlevel.checkpoint()
        if self.quarantine_fails:
            raise SpoolError("spool: quarantining: no space left")
        moved = [e for e in self.envelopes_by_id.values() if e.msgid == msgid]
        if not moved:
            raise SpoolNotFound(f"spool: no message {msgid:08x}")
        for envelope in moved:
            del self.envelopes_by_id[envelope.id]
        self.corrupt[msgid] = (reason, moved)
        return f"corrupt/{msgid:08x}"

    async def begin(self) -> MemoryTxn:
        await trio.lowlevel.checkpoint()
        return MemoryTxn(self)


class MemoryTxn:
    counter = 0

    def __init__(self, store: MemoryStore) -> None:
        MemoryTxn.counter += 1
        self.store = store
        self.msgid = 0x0A000000 + MemoryTxn.counter

    async def open_message(self) -> MemoryTxn:
        await trio.lowlevel.checkpoint()
        return self

    def write(self, data: bytes) -> None:
        del data

    async def commit(self, envelopes: list[Envelope]) -> list[Envelope]:
        await trio.lowlevel.checkpoint()
        result = [
            attrs.evolve(e, msgid=self.msgid, id=self.msgid << 32 | n)
            for n, e in enumerate(envelopes, 1)
        ]
        for envelope in result:
            self.store.envelopes_by_id[envelope.id] = envelope
        return result


def clock() -> float:
    return T0 + trio.current_time()


@pytest.fixture
def patient_clock() -> trio.testing.MockClock:
    """Autojumping, but only once nothing has run for a moment of real time: the
    spool works in threads, which an instant jump would leave behind."""
    return trio.testing.MockClock(autojump_threshold=0.05)


async def queue(
    spool: Spool | MemoryStore,
    *,
    action: str = "local",
    kind: EnvelopeKind = EnvelopeKind.MDA,
    rcpts: int = 1,
    **changes: object,
) -> list[Envelope]:
    txn = await spool.begin()
    (await txn.open_message()).write(b"Subject: hi\r\n\r\nhello\r\n")
    envelopes = [
        make_envelope(
            f"user{n}@example.org", kind=kind, dispatcher=action, ctime=int(clock()), **changes
        )
        for n in range(rcpts)
    ]
    return await txn.commit(envelopes)


async def started(nursery: trio.Nursery, runner: QueueRunner) -> QueueRunner:
    await nursery.start(runner.run)
    return runner


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


def test_durations_as_opensmtpd_writes_them() -> None:
    assert [duration_text(t) for t in (0, 59, 61, 3600, 90061, -5)] == [
        "0s",
        "59s",
        "1m1s",
        "1h",
        "1d1h1m1s",
        "-5s",
    ]


def test_ttl_comes_from_the_envelope_the_action_or_the_queue() -> None:
    cfg = config()
    base = make_envelope(msgid=1, kind=EnvelopeKind.MDA, dispatcher="local")
    assert envelope_ttl(cfg, base) == 2 * DAY
    assert envelope_ttl(cfg, attrs.evolve(base, dispatcher="short")) == 3600
    assert envelope_ttl(cfg, attrs.evolve(base, ttl=5)) == 5


async def test_delivered_envelopes_leave_the_queue(
    tmp_path: pathlib.Path, patient_clock: trio.testing.MockClock
) -> None:
    spool = await Spool.open(tmp_path / "spool")
    agent = Agent(lambda e, n: Result.ok())
    notices = Notices()
    runner = QueueRunner(config(), spool, agent, notifier=notices, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        runner.committed(await queue(spool, rcpts=3))
        with trio.fail_after(600):
            while runner.stats.delivered < 3:
                await trio.sleep(1)
        assert await spool.envelopes() == [] and await spool.message_ids() == []
        assert len(runner.scheduler) == 0 and notices.sent == []
        nursery.cancel_scope.cancel()


async def test_temporary_failures_are_recorded_and_retried_on_the_ladder(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    spool = MemoryStore()
    agent = Agent(lambda e, n: Result.tempfail("mailbox busy") if n < 4 else Result.ok())
    runner = QueueRunner(config(), spool, agent, notifier=Notices(), clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        [envelope] = await queue(spool)
        runner.committed([envelope])
        await trio.sleep(5)
        stored = await spool.load_envelope(envelope.id)
        assert (stored.retry, stored.errorline) == (1, "mailbox busy")
        assert stored.esc == StatusCode(4, 3, 0)
        assert stored.last_try >= T0
        await trio.sleep(200)
        nursery.cancel_scope.cancel()
    times = [t for _evpid, t in agent.attempts]
    # local delivery: tries at ~0, then ctime + 10 s * step² (10, 40, 90)
    assert [round(t) for t in times] == [0, 10, 40, 90]
    assert runner.stats.tempfailed == 3 and runner.stats.delivered == 1
    assert await spool.envelopes() == []


async def test_permanent_failures_bounce_before_the_envelope_goes(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    spool = MemoryStore()
    agent = Agent(lambda e, n: Result.permfail("Error (no such mailbox)", StatusCode(5, 1, 1)))
    notices = Notices()
    notices.fail = True  # the notice cannot be committed: the envelope must stay
    runner = QueueRunner(config(), spool, agent, notifier=notices, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        [envelope] = await queue(spool)
        runner.committed([envelope])
        await trio.sleep(5)
        kept = await spool.load_envelope(envelope.id)
        assert kept.retry == 1 and kept.errorline == "Error (no such mailbox)"
        assert kept.esc == StatusCode(4, 1, 1)  # kept for a retry: a temporary failure now
        notices.fail = False
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    [notice] = notices.sent
    assert notice.kind == "failed" and notice.result is not None
    assert notice.result.status == "5.1.1"
    assert await spool.envelopes() == [] and runner.stats.permfailed == 1


async def test_expiry_bounces_and_removes(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    spool = MemoryStore()
    agent = Agent(lambda e, n: Result.tempfail("try later"))
    notices = Notices()
    runner = QueueRunner(config(), spool, agent, notifier=notices, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        [envelope] = await queue(spool, action="short")  # ttl 1h
        runner.committed([envelope])
        await trio.sleep(3600 + 60)
        nursery.cancel_scope.cancel()
    assert await spool.envelopes() == []
    failed = [n for n in notices.sent if n.kind == "failed"]
    assert len(failed) == 1 and failed[0].result is not None
    assert failed[0].result.esc == ESC_DELIVERY_TIME_EXPIRED
    assert failed[0].result.status == "5.4.7"
    assert failed[0].result.text == "Envelope expired"
    assert runner.stats.expired == 1
    assert max(t for _e, t in agent.attempts) < 3600


async def test_delay_notices_once_per_warn_interval(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    spool = MemoryStore()
    agent = Agent(lambda e, n: Result.tempfail("450 mailbox unavailable"))
    notices = Notices()
    runner = QueueRunner(config(), spool, agent, notifier=notices, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        [envelope] = await queue(spool)
        runner.committed([envelope])
        await trio.sleep(12 * 3600)
        stored = await spool.load_envelope(envelope.id)
        nursery.cancel_scope.cancel()
    delayed = [n for n in notices.sent if n.kind == "delayed"]
    assert [n.delay for n in delayed] == [3600, 6 * 3600]
    assert all(n.ttl == 2 * DAY for n in delayed)
    assert stored.last_bounce == envelope.ctime + 6 * 3600


async def test_a_restart_picks_up_the_queue_with_its_retry_counts(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    spool = MemoryStore()
    [envelope] = await queue(spool)
    await spool.update_envelope(attrs.evolve(await spool.load_envelope(envelope.id), retry=3))
    agent = Agent(lambda e, n: Result.ok())
    runner = QueueRunner(config(), spool, agent, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        assert len(runner.scheduler) == 1
        await trio.sleep(200)
        nursery.cancel_scope.cancel()
    [(evpid, at)] = agent.attempts
    assert evpid == envelope.id and round(at) == 90  # ctime + 10 s * 3²


async def test_relay_envelopes_wait_while_there_is_no_relay_agent(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    spool = MemoryStore()
    agent = Agent(lambda e, n: Result.ok())
    runner = QueueRunner(config(), spool, agent, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        relayed = await queue(spool, action="out", kind=EnvelopeKind.MTA)
        local = await queue(spool)
        runner.committed(relayed + local)
        await trio.sleep(3600)
        assert [e.id for e in await spool.envelopes()] == [relayed[0].id]
        nursery.cancel_scope.cancel()
    assert [evpid for evpid, _t in agent.attempts] == [local[0].id]


async def test_success_notices_when_asked_and_removal_by_the_operator(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    spool = MemoryStore()
    agent = Agent(lambda e, n: Result.ok() if e.dsn_notify else Result.tempfail("later"))
    notices = Notices()
    runner = QueueRunner(config(), spool, agent, notifier=notices, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        [asked] = await queue(spool, dsn_notify=DsnNotify.SUCCESS)
        [stuck] = await queue(spool)
        runner.committed([asked, stuck])
        await trio.sleep(5)
        assert [n.kind for n in notices.sent] == ["delivered"]
        assert runner.scheduler.remove([stuck.id]) == 1
        runner.poke()
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert await spool.envelopes() == [] and runner.stats.removed == 1
    assert [n.kind for n in notices.sent] == ["delivered"]  # no notice for a removal


async def test_relayed_success_notice_only_when_the_remote_did_not_do_dsn(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    spool = MemoryStore()

    def relayed(envelope: Envelope, attempt: int) -> Result:
        ours = envelope.dest.local == "user0"  # the remote offered no DSN for this one
        via = Relayed("192.0.2.100", "192.0.2.7 (mx.example.org)", notify_success=ours)
        return attrs.evolve(Result.ok("250 2.0.0 Ok"), relayed=via)

    notices = Notices()
    runner = QueueRunner(
        config(),
        spool,
        Agent(lambda e, n: Result.ok()),
        relay=Agent(relayed),
        notifier=notices,
        clock=clock,
    )
    caplog.set_level(logging.INFO, logger="mta")
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        envelopes = await queue(
            spool, action="out", kind=EnvelopeKind.MTA, rcpts=2, dsn_notify=DsnNotify.SUCCESS
        )
        runner.committed(envelopes)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [(n.kind, n.envelope.dest.local) for n in notices.sent] == [("relayed", "user0")]
    lines = [r.getMessage() for r in caplog.records if " mta delivery " in r.getMessage()]
    assert len(lines) == 2
    assert (
        'rcpt=<user0@example.org> source="192.0.2.100" relay="192.0.2.7 (mx.example.org)" '
        'delay=0s result=Ok stat="250 2.0.0 Ok"'
    ) in lines[0] + lines[1]


async def test_remote_status_codes_above_9_reach_the_envelope_notice_and_log(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """4.7.28 (a tempfail) is stored as is; 5.7.350 (a permfail) reaches the
    failure notice as is; both remote replies are in the log's stat=."""
    spool = MemoryStore()

    def relayed(envelope: Envelope, attempt: int) -> Result:
        if attempt == 1:
            return Result.tempfail("421 4.7.28 rate limited", StatusCode(4, 7, 28))
        return Result.permfail("550 5.7.350 remote policy", StatusCode(5, 7, 350))

    notices = Notices()
    relay = Agent(relayed)
    runner = QueueRunner(
        config(), spool, Agent(lambda e, n: Result.ok()), relay=relay, notifier=notices, clock=clock
    )
    caplog.set_level(logging.INFO, logger="mta")
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        [envelope] = await queue(spool, action="out", kind=EnvelopeKind.MTA)
        runner.committed([envelope])
        await trio.sleep(5)
        stored = await spool.load_envelope(envelope.id)
        assert (stored.esc, stored.errorline) == (StatusCode(4, 7, 28), "421 4.7.28 rate limited")
        await trio.sleep(3600)
        nursery.cancel_scope.cancel()
    assert len(relay.attempts) == 2
    [notice] = [n for n in notices.sent if n.kind == "failed"]
    assert notice.result is not None and notice.result.status == "5.7.350"
    lines = [r.getMessage() for r in caplog.records if " mta delivery " in r.getMessage()]
    assert 'result=TempFail stat="421 4.7.28 rate limited"' in lines[0]
    assert 'result=PermFail stat="550 5.7.350 remote policy"' in lines[1]


async def test_a_crashing_delivery_method_only_delays_the_mail(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    spool = MemoryStore()

    def decide(envelope: Envelope, attempt: int) -> Result:
        if attempt == 1:
            raise RuntimeError("bug")
        return Result.ok()

    runner = QueueRunner(config(), spool, Agent(decide), clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        runner.committed(await queue(spool))
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert runner.stats.tempfailed == 1 and runner.stats.delivered == 1
    assert await spool.envelopes() == []


@pytest.mark.parametrize("outcome", list(Outcome))
def test_result_statuses(outcome: Outcome) -> None:
    result = {
        Outcome.OK: Result.ok(),
        Outcome.TEMPFAIL: Result.tempfail("x"),
        Outcome.PERMFAIL: Result.permfail("x", StatusCode(5, 1, 1)),
    }[outcome]
    assert result.outcome is outcome
    assert result.status == {Outcome.OK: "2.0.0", Outcome.TEMPFAIL: "4.3.0"}.get(outcome, "5.1.1")


async def test_local_deliveries_respect_the_mda_session_limits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spool = MemoryStore()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    total_peak = 0

    async def slow(envelope: Envelope) -> Result:
        nonlocal total_peak
        user = envelope.dest.local
        running[user] = running.get(user, 0) + 1
        peak[user] = max(peak.get(user, 0), running[user])
        total_peak = max(total_peak, sum(running.values()))
        await trio.sleep(10)
        running[user] -= 1
        return Result.ok()

    text = CONFIG + "mda limit max-session 3 max-session-per-user 2\n"
    runner = QueueRunner(config(text), spool, slow, clock=clock)
    runner.scheduler.max_schedule = 100
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        same_user = [e for _ in range(4) for e in await queue(spool)]  # all for user0
        runner.committed(same_user + await queue(spool, rcpts=6))
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert runner.stats.delivered == 10
    assert total_peak == 3 and peak["user0"] == 2


class SlowRecords(MemoryStore):
    """A store whose removals and updates wait until ``recording`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.recording = trio.Event()

    async def update_envelope(self, envelope: Envelope) -> None:
        await self.recording.wait()
        await super().update_envelope(envelope)

    async def delete_envelope(self, evpid: int) -> bool:
        await self.recording.wait()
        return await super().delete_envelope(evpid)


@pytest.mark.parametrize("outcome", [Result.ok(), Result.tempfail("mailbox busy")])
async def test_a_delivery_session_lasts_until_its_outcome_is_recorded(
    autojump_clock: trio.testing.MockClock, outcome: Result
) -> None:
    """A delivery done but not recorded would be repeated by a crash: no new
    delivery starts in its session until the record is made, so a crash never
    repeats more deliveries than there are sessions."""
    store = SlowRecords()
    agent = Agent(lambda e, n: outcome)
    text = CONFIG + "mda limit max-session 2\n"
    runner = QueueRunner(config(text), store, agent, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        runner.committed(await queue(store, rcpts=5))
        await trio.sleep(5)
        assert len(agent.attempts) == 2  # both sessions wait for their records
        store.recording.set()
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert len(agent.attempts) == 5
    assert runner.stats.delivered + runner.stats.tempfailed == 5


async def test_an_attempt_is_logged_once_its_outcome_is_recorded(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    agent = Agent(lambda e, n: Result.ok() if e.dest.local == "user0" else Result.tempfail("busy"))
    queued_when_logged: dict[str, Envelope | None] = {}

    class Witness(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = record.getMessage()
            if " mda delivery " in line:
                evpid = int(line.split("evpid=")[1][:16], 16)
                queued_when_logged[line.split(" result=")[1]] = store.envelopes_by_id.get(evpid)

    caplog.set_level(logging.INFO, logger="mta")
    witness = Witness()
    logging.getLogger("mta.queue").addHandler(witness)
    try:
        runner = QueueRunner(config(), store, agent, clock=clock)
        async with trio.open_nursery() as nursery:
            await started(nursery, runner)
            runner.committed(await queue(store, rcpts=2))
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("mta.queue").removeHandler(witness)
    assert queued_when_logged["Ok stat=Delivered"] is None  # removed before the line
    retried = queued_when_logged["TempFail stat=busy"]
    assert retried is not None and (retried.retry, retried.errorline) == (1, "busy")


async def test_drain_lets_deliveries_in_flight_finish_and_starts_nothing_new(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    release = trio.Event()
    begun: list[int] = []

    async def slow(envelope: Envelope) -> Result:
        begun.append(envelope.id)
        await release.wait()
        return Result.ok()

    runner = QueueRunner(config(), store, slow, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        (first,) = await queue(store)
        runner.committed([first])
        await settle()
        assert begun == [first.id]
        drained = trio.Event()

        async def drain() -> None:
            await runner.drain()
            drained.set()

        nursery.start_soon(drain)
        await settle()
        (second,) = await queue(store)
        runner.committed([second])  # arrives while draining: stays queued
        await settle()
        assert not drained.is_set() and begun == [first.id]
        release.set()
        with trio.fail_after(5):
            await drained.wait()
    # the outcome was recorded before drain returned; run() has returned too
    assert runner.stats.delivered == 1 and begun == [first.id]
    assert list(store.envelopes_by_id) == [second.id]


class CountingStore:
    """A MemoryStore whose envelope reads by the runner are counted."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.loads: list[int] = []

    async def queued(self) -> list[Queued]:
        return await self.store.queued()

    async def load_envelope(self, evpid: int) -> Envelope:
        self.loads.append(evpid)
        return await self.store.load_envelope(evpid)

    async def update_envelope(self, envelope: Envelope) -> None:
        await self.store.update_envelope(envelope)

    async def delete_envelope(self, evpid: int) -> bool:
        return await self.store.delete_envelope(evpid)

    async def quarantine(self, msgid: int, reason: str) -> str:
        return await self.store.quarantine(msgid, reason)


async def test_a_first_try_uses_the_committed_copy_a_retry_reads_the_spool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    counting = CountingStore(store)
    agent = Agent(lambda e, n: Result.tempfail("busy") if n == 1 else Result.ok())
    runner = QueueRunner(config(), counting, agent, clock=clock)
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        (envelope,) = await queue(store)
        runner.committed([envelope])
        with trio.fail_after(60):
            while runner.stats.delivered < 1:
                await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert len(agent.attempts) == 2
    assert counting.loads == [envelope.id]  # the retry read the rewritten envelope


async def test_work_committed_while_paused_is_read_from_the_spool_when_tried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # a paused queue keeps no envelope in memory, however many are committed
    store = MemoryStore()
    counting = CountingStore(store)
    agent = Agent(lambda e, n: Result.ok())
    runner = QueueRunner(config(), counting, agent, clock=clock)
    runner.scheduler.mda_paused = True
    async with trio.open_nursery() as nursery:
        await started(nursery, runner)
        (paused,) = await queue(store)
        runner.committed([paused])
        await trio.sleep(60)
        runner.scheduler.mda_paused = False
        (running,) = await queue(store)
        runner.committed([running])
        with trio.fail_after(60):
            while runner.stats.delivered < 2:
                await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert counting.loads == [paused.id]  # not the one committed while running

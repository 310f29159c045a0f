"""Crashes: SIGKILL while receiving, SIGKILL while delivering, and what they leave behind.

While receiving: four clients send without pause (the daemon delivers as
it receives); the daemon is killed at a random moment (counted from the
first 250, so a slow start does not make an empty trial), restarted, and once
the queue is empty every message that got its 250 must be in the Maildir,
once and intact.  While delivering: ``messages`` are queued with deliveries
paused, the daemon is restarted delivering and killed after a random share
of them arrived, then restarted again: no message may be lost, and a kill
may repeat at most the deliveries that were in flight
(:data:`~faultlib.daemon.MDA_PER_USER`, the configuration's limit).  Both
trial loops share one spool and one Maildir across their kills, as a real
server would.  Their Maildirs' ``tmp/`` is looked at afterwards
(:mod:`faultlib.orphans`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from benchlib.procs import free_port

from faultlib.clients import Senders, endless, send_all, settle
from faultlib.context import Context, log
from faultlib.daemon import MDA_PER_USER, Daemon, DaemonError, Workspace
from faultlib.mail import delivered_count, scan, token
from faultlib.report import Row, spread

__all__ = ["crash_deliver", "crash_receive"]

RECEIVE = "crash while receiving"
DELIVER = "crash while delivering"
MEASURED = "messages lost, damaged, repeated"
RECEIVE_PROMISE = f"every 250 delivered, intact; <= {MDA_PER_USER} repeated per kill"
DELIVER_PROMISE = f"0 lost, 0 damaged; <= {MDA_PER_USER} (in flight) repeated per kill"


@dataclass
class _Tally:
    """The figures of a crash scenario's trials."""

    kills: int = 0
    acked: int = 0
    lost: int = 0
    damaged: int = 0
    dups: list[int] = field(default_factory=list)
    failure: str | None = None  # the daemon did not come back, or never settled

    def add(self, space: Workspace, acked: set[str], sent: set[str]) -> tuple[int, int, int]:
        """Count one trial's tokens in the Maildir: (acknowledged ones lost, extra copies
        of any sent, acknowledged ones damaged)."""
        found = scan(space.maildir)
        lost = len(found.lost(acked))
        dups = found.duplicates(sent)
        damaged = sum(1 for t in acked if found.damaged[t])
        self.kills += 1
        self.acked += len(acked)
        self.lost += lost
        self.damaged += damaged
        self.dups.append(dups)
        return lost, dups, damaged

    def result(self) -> str:
        text = (
            f"{self.lost:,} lost of {self.acked:,} acknowledged, {self.damaged} damaged;"
            f" repeated per kill: {spread(self.dups)}"
        )
        return f"{text}; {self.failure}" if self.failure else text

    @property
    def kept(self) -> bool:
        return (
            self.failure is None
            and self.lost == 0
            and self.damaged == 0
            and max(self.dups, default=0) <= MDA_PER_USER
        )


def _kills(tally: _Tally) -> str:
    return f"{tally.kills} kill" + ("" if tally.kills == 1 else "s")


def _restart(daemon: Daemon, tally: _Tally, paused: tuple[str, ...] = ()) -> bool:
    try:
        daemon.start(paused=paused)
    except DaemonError as exc:
        tally.failure = f"did not restart after kill {tally.kills + 1}: {exc}"
        return False
    return True


def _settled(daemon: Daemon, tally: _Tally, timeout: float) -> bool:
    if settle(daemon.space.spool, daemon.space.maildir, timeout):
        return True
    queued = daemon.queued()
    tally.failure = f"after kill {tally.kills + 1}, {queued} message(s) queued {timeout:g} s on"
    return False


def _begin(ctx: Context, name: str) -> tuple[Daemon, _Tally]:
    """A crash scenario's daemon (not started yet) on a workspace of its own."""
    space = ctx.workspace(name)
    ctx.maildirs.append(space.maildir)
    return Daemon(space, free_port()), _Tally()


def crash_receive(ctx: Context) -> Row:
    s = ctx.settings
    daemon, tally = _begin(ctx, "crash-receive")
    space = daemon.space
    window = (0.3, 1.2) if s.quick else (0.5, 2.5)
    try:
        daemon.start()
    except DaemonError as exc:
        return Row.broken(RECEIVE, MEASURED, RECEIVE_PROMISE, str(exc))
    with daemon:
        for trial in range(1, s.trials + 1):
            senders = Senders(daemon.port, endless(f"r{trial}")).start()
            at = ctx.rng.uniform(*window)
            senders.first_ack.wait(30.0)  # a busy machine may take a while to the first 250
            time.sleep(at)
            daemon.kill()
            senders.stop()
            if not _restart(daemon, tally) or not _settled(daemon, tally, 120.0):
                break
            lost, dups, damaged = tally.add(space, senders.acked, senders.tried)
            log(
                f"{RECEIVE} {trial}/{s.trials}: killed {at:.2f} s after the first 250,"
                f" {len(senders.acked)}"
                f" acknowledged, {lost} lost, {dups} repeated, {damaged} damaged"
            )
    trials = _kills(tally)
    return Row.judged(RECEIVE, trials, MEASURED, RECEIVE_PROMISE, tally.result(), tally.kept)


def _kill_during_delivery(ctx: Context, daemon: Daemon, tally: _Tally, trial: int) -> None:
    """Queue, restart delivering, kill part-way, restart, count."""
    s = ctx.settings
    tokens = [token(f"d{trial}", i) for i in range(s.messages)]
    senders = send_all(daemon.port, tokens)
    acked = senders.acked
    daemon.stop()
    before = delivered_count(daemon.space.maildir)
    target = ctx.rng.randint(max(1, s.messages // 10), max(1, s.messages * 6 // 10))
    if not _restart(daemon, tally):
        return
    deadline = time.monotonic() + 120.0
    while delivered_count(daemon.space.maildir) - before < target:
        if time.monotonic() > deadline or not daemon.alive():
            break
        time.sleep(0.02)
    at = delivered_count(daemon.space.maildir) - before
    daemon.kill()
    if not _restart(daemon, tally) or not _settled(daemon, tally, 180.0):
        return
    lost, dups, damaged = tally.add(daemon.space, acked, senders.tried)
    log(
        f"{DELIVER} {trial}/{s.trials}: {len(acked)} queued, killed after {at} delivered,"
        f" {lost} lost, {dups} repeated, {damaged} damaged"
    )


def crash_deliver(ctx: Context) -> Row:
    s = ctx.settings
    daemon, tally = _begin(ctx, "crash-deliver")
    with daemon:
        for trial in range(1, s.trials + 1):
            try:
                daemon.stop()
                daemon.start(paused=("mda",))
            except DaemonError as exc:
                if trial == 1:
                    return Row.broken(DELIVER, MEASURED, DELIVER_PROMISE, str(exc))
                tally.failure = f"did not start for trial {trial}: {exc}"
                break
            _kill_during_delivery(ctx, daemon, tally, trial)
            if tally.failure:
                break
    trials = f"{_kills(tally)}, {s.messages} queued each"
    return Row.judged(DELIVER, trials, MEASURED, DELIVER_PROMISE, tally.result(), tally.kept)

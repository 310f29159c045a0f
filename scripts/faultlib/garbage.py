"""Garbage: bogus input over many connections; the daemon must live, serve, and log refusals.

One connection at a time, each with an attack drawn at random from
:data:`~faultlib.attacks.ATTACKS`: the bytes are sent in one go, the client
half-closes, then reads until the server closes.  Every 4xx or 5xx reply it
got is a refusal, and each must have its line in the log, as OpenSMTPD's
``smtp_reply`` writes it: ``smtp failed-command`` for a command refused,
``smtp bad-input`` for input that is no command (a line too long, pipelining
before EHLO): the log lines of a connection are those written between its start and
its ``smtp disconnected`` line, so a connection whose refusals outnumber its
logged ones is counted as *unlogged* (a reply lost to a reset, seen by the
server only, cannot make a connection look unlogged).  A daemon that dies is
counted, and restarted so the campaign goes on.  Finally a well-formed
message must still be accepted.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from benchlib.procs import free_port

from faultlib.attacks import ATTACKS, Attack
from faultlib.context import Context, log
from faultlib.daemon import Daemon, DaemonError
from faultlib.mail import connect, send, token
from faultlib.report import Row
from faultlib.wire import open_session, read_reply, read_until_closed, refusals

__all__ = ["garbage", "run_attack"]

SCENARIO = "garbage input"
LOGGED = (" smtp failed-command ", " smtp bad-input ")
DISCONNECTED = " smtp disconnected "


@dataclass
class _Tally:
    connections: Counter[str] = field(default_factory=Counter)
    seen: int = 0  # refusals the clients read
    logged: int = 0  # failed-command and bad-input lines
    unlogged: Counter[str] = field(default_factory=Counter)  # connections, per attack
    hung: Counter[str] = field(default_factory=Counter)  # not closed after our half-close
    crashes: list[str] = field(default_factory=list)


def run_attack(port: int, attack: Attack, payload: bytes, timeout: float = 5.0) -> tuple[int, bool]:
    """One connection: (refusals read, whether the server closed within ``timeout``)."""
    sock, greeting = open_session(port, timeout=timeout)
    with sock:
        got = b""
        if attack.after_ehlo:
            sock.sendall(b"EHLO faults.invalid\r\n")
            got += read_reply(sock, timeout)
        with contextlib.suppress(OSError):  # the server may close before it has all
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        rest, closed = read_until_closed(sock, timeout)
    return refusals(greeting + got + rest), closed


def _wait_disconnected(daemon: Daemon, offset: int, timeout: float = 5.0) -> str:
    """The log written since ``offset``, once it holds the session's end (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    text = daemon.log_since(offset)
    while DISCONNECTED not in text and time.monotonic() < deadline and daemon.alive():
        time.sleep(0.02)
        text = daemon.log_since(offset)
    return text


def _one(ctx: Context, daemon: Daemon, tally: _Tally) -> None:
    attack = ctx.rng.choice(ATTACKS)
    payload = attack.make(ctx.rng)
    tally.connections[attack.name] += 1
    offset = daemon.log_offset()
    try:
        seen, closed = run_attack(daemon.port, attack, payload)
    except (OSError, TimeoutError):
        seen, closed = 0, True  # refused or reset before a greeting: nothing was refused
    text = _wait_disconnected(daemon, offset)
    logged = sum(text.count(kind) for kind in LOGGED)
    tally.seen += seen
    tally.logged += logged
    if logged < seen:
        tally.unlogged[attack.name] += 1
    if not closed:
        tally.hung[attack.name] += 1
    if not daemon.alive():
        tally.crashes.append(f"{attack.name} ({daemon.exit_text()})")
        daemon.start()


def _still_serves(port: int) -> bool:
    try:
        client = connect(port)
    except (OSError, smtplib.SMTPException):
        return False
    try:
        return send(client, token("garbage", 0)).accepted
    except (OSError, smtplib.SMTPException):
        return False
    finally:
        client.close()


def garbage(ctx: Context) -> Row:
    n = ctx.settings.garbage
    measured = "crashes; refusals logged (failed-command, bad-input); served after"
    promise = "0 crashes; every 4xx/5xx logged; a clean message accepted after"
    space = ctx.workspace("garbage")
    daemon = Daemon(space, free_port())
    tally = _Tally()
    try:
        daemon.start()
    except DaemonError as exc:
        return Row.broken(SCENARIO, measured, promise, str(exc))
    with daemon:
        for i in range(1, n + 1):
            try:
                _one(ctx, daemon, tally)
            except DaemonError as exc:
                tally.crashes.append(f"no restart: {exc}")
                break
            if i % 50 == 0 or i == n:
                log(
                    f"{SCENARIO}: {i}/{n} connections, {len(tally.crashes)} crash(es),"
                    f" {tally.seen} refusals read, {tally.logged} logged,"
                    f" {sum(tally.unlogged.values())} connection(s) with unlogged refusals"
                )
        serves = daemon.alive() and _still_serves(daemon.port)
    for name, count in sorted(tally.unlogged.items()):
        log(f"{SCENARIO}: unlogged refusals in {count} of {tally.connections[name]} '{name}'")
    for name, count in sorted(tally.hung.items()):
        log(f"{SCENARIO}: not closed 5 s after the client's EOF: {count} '{name}'")
    unlogged = sum(tally.unlogged.values())
    result = (
        f"{len(tally.crashes)} crash(es); {tally.seen:,} refusals read, {tally.logged:,}"
        f" logged; {unlogged} of {n} connections with unlogged refusals"
        f" ({len(tally.unlogged)} of {len(tally.connections)} kinds of attack); "
        + ("served after" if serves else "NOT served after")
    )
    if tally.crashes:
        result += f"; died on: {', '.join(tally.crashes[:3])}"
    ok = not tally.crashes and unlogged == 0 and serves
    return Row.judged(SCENARIO, f"{n} connections", measured, promise, result, ok)

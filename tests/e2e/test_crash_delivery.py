"""A crash during delivery repeats at most the deliveries that were in flight.

Messages are queued with local delivery paused; the daemon restarts delivering
and is killed with SIGKILL in the middle, a few times over, then finishes.
Every message must then be in its maildir (nothing lost); a delivery logged
``result=Ok`` before a kill must not be repeated (the line is written once the
envelope is removed); and each kill may repeat only the deliveries running at
that moment.  There are at most as many of those as delivery sessions (``mda
limit max-session``, or ``max-session-per-user`` for each user when that is
fewer): a session lasts until the delivery's outcome is recorded, so no margin
is needed on top of that bound."""

from __future__ import annotations

import collections
import concurrent.futures
import email.parser
import itertools
import pathlib
import re
import smtplib
import time

from mta.config.model import MdaLimits
from tests.e2e.daemon import Daemon, free_port, wait_for

MESSAGES = 300
USERS = ("u0", "u1", "u2")
KILLS = 3
KILL_AFTER = 50  # deliveries logged in a run before its kill
CLIENTS = 4


def _config(port: int, shared: pathlib.Path) -> str:
    users = ", ".join(f'{u} = "65534:65534:/nonexistent"' for u in USERS)
    return f"""table users {{ {users} }}
listen on 127.0.0.1 port {port}
action "local" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for domain "localhost" action "local"
"""


def _send(port: int, numbers: range) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for n in numbers:
            rcpt = f"{USERS[n % len(USERS)]}@localhost"
            body = f"From: a@example.org\r\nTo: {rcpt}\r\nSubject: crash {n}\r\n\r\nHello.\r\n"
            assert client.sendmail("a@example.org", [rcpt], body.encode()) == {}


def _delivered(shared: pathlib.Path) -> collections.Counter[str]:
    """How many times each message (by its subject) is in the maildirs' new/."""
    parser = email.parser.BytesHeaderParser()
    counts: collections.Counter[str] = collections.Counter()
    for path in shared.glob("*/new/*"):
        counts[parser.parsebytes(path.read_bytes())["Subject"]] += 1
    return counts


def _logged_ok(log: str) -> set[str]:
    """The envelopes the log says were delivered."""
    return set(re.findall(r"mda delivery evpid=([0-9a-f]{16}) .* result=Ok ", log))


def _in_flight_bound() -> int:
    limits = MdaLimits()  # the configuration sets no mda limit
    return min(limits.max_session, limits.max_session_per_user * len(USERS))


def test_kills_mid_delivery_repeat_only_what_was_in_flight(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    port = free_port()
    daemon = Daemon(tmp_path, _config(port, shared))  # deliveries paused
    daemon.start()
    try:
        chunk = MESSAGES // CLIENTS
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            sent = [
                pool.submit(_send, port, range(i * chunk, (i + 1) * chunk)) for i in range(CLIENTS)
            ]
            for future in sent:
                future.result()
        assert daemon.stop() == 0
        assert len(daemon.queued()) == MESSAGES

        daemon.paused = ()
        logged: set[str] = set()  # delivered, says the log of an earlier run
        at_kills: list[collections.Counter[str]] = []  # the maildirs at each kill
        kills = 0
        while kills < KILLS:
            offset = len(daemon.log())
            daemon.start()
            deadline = time.monotonic() + 30
            while len(_logged_ok(daemon.log()[offset:])) < KILL_AFTER:
                assert time.monotonic() < deadline, "too few deliveries"
                time.sleep(0.005)
            daemon.kill()
            this_run = _logged_ok(daemon.log()[offset:])
            repeated = logged & this_run
            assert not repeated, f"kill {kills}: {len(repeated)} logged delivered, then repeated"
            logged |= this_run
            kills += 1
            at_kills.append(_delivered(shared))
            if len(at_kills[-1]) == MESSAGES:  # a slow test, not the daemon
                assert kills > 1, "the first kill came after the last delivery"
                break

        offset = len(daemon.log())
        daemon.start()
        wait_for(lambda: not daemon.queued(), timeout=60)
        assert daemon.stop() == 0
        repeated = logged & _logged_ok(daemon.log()[offset:])
        assert not repeated, f"kill {kills}: {len(repeated)} logged delivered, then repeated"
    finally:
        daemon.stop()
    after = _delivered(shared)
    assert sorted(after) == sorted(f"crash {n}" for n in range(MESSAGES))  # nothing lost
    for kill, (at, then) in enumerate(itertools.pairwise([*at_kills, after]), 1):
        # a message delivered before this kill and again in the next run
        again = [subject for subject in at if then[subject] > at[subject]]
        assert all(then[subject] == at[subject] + 1 for subject in again)
        assert len(again) <= _in_flight_bound(), f"kill {kill} repeated {len(again)}: {again}"

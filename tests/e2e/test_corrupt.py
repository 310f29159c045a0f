"""End to end: a queued message damaged on disk is never delivered and never
bounced.  Bytes flipped in its headers or body while the daemon is down: the
restart's recovery moves it to ``corrupt/``; flipped while the daemon runs: the
delivery that opens it does (and ``mtactl show message`` refuses it).  Either
way the log says so, the maildir gets nothing, the sender gets no bounce, and
the next message is delivered as usual.  The default spool (no compression, no
encryption), where the content's own CRC is the only check."""

from __future__ import annotations

import mailbox
import pathlib
import smtplib

import pytest

from tests.e2e.daemon import Daemon, free_port, has_mail, wait_for
from tests.e2e.test_control import mtactl

USERS = 'table users { bob = "65534:65534:/nonexistent", alice = "65534:65534:/nonexistent" }'
DAMAGED = b"From: alice@localhost\r\nSubject: to be damaged\r\n\r\nThe body, to be damaged.\r\n"
GOOD = b"From: alice@localhost\r\nSubject: good\r\n\r\nThis one arrives.\r\n"
MARKERS = {"headers": b"Subject: to be damaged", "body": b"The body, to be damaged."}


def config(shared: pathlib.Path, port: int) -> str:
    return f"""{USERS}
listen on 127.0.0.1 port {port}
action "local" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for domain "localhost" action "local"
"""


def send(port: int, message: bytes) -> None:
    """From alice@localhost: a bounce would reach her maildir."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail("alice@localhost", ["bob@localhost"], message) == {}


def flip(path: pathlib.Path, marker: bytes) -> None:
    """Flip one bit in the middle of ``marker`` in the file, in place."""
    data = path.read_bytes()
    position = data.index(marker) + len(marker) // 2
    with open(path, "r+b") as file:
        file.seek(position)
        file.write(bytes([data[position] ^ 0x01]))


def deliver_good_one(d: Daemon, port: int, shared: pathlib.Path) -> None:
    """A sound message goes through the same queue: delivery works, and once it
    is done the damaged one had every chance to be delivered too."""
    send(port, GOOD)
    wait_for(lambda: has_mail(shared / "bob"))
    wait_for(lambda: d.queued() == [])


def check_outcome(d: Daemon, shared: pathlib.Path, msgid: str) -> None:
    corrupt = d.spool / "corrupt" / msgid
    assert [p.name for p in corrupt.iterdir()] == [msgid]  # the message file, kept
    [message] = list(mailbox.Maildir(str(shared / "bob"), create=False))
    assert message["Subject"] == "good"  # and nothing of the damaged one
    assert not (shared / "alice").exists()  # no bounce
    log = d.log()
    assert f'spool: quarantine path="queue/{msgid[:2]}/{msgid}" to="corrupt/{msgid}"' in log
    assert "content checksum mismatch" in log
    assert " notice msgid=" not in log and "Traceback" not in log  # no notice committed
    assert log.count("result=Ok stat=Delivered") == 1


@pytest.mark.parametrize("where", list(MARKERS))
def test_a_message_damaged_while_the_daemon_was_down_is_quarantined(
    tmp_path: pathlib.Path, shared: pathlib.Path, where: str
) -> None:
    port = free_port()
    d = Daemon(tmp_path, config(shared, port))  # delivery paused: it stays queued
    d.start()
    try:
        send(port, DAMAGED)
    finally:
        d.stop()
    [path] = d.queued()
    flip(path, MARKERS[where])
    d.paused = ()
    d.start()
    try:
        assert d.queued() == []  # recovery moved it before the daemon was ready
        deliver_good_one(d, port, shared)
    finally:
        d.stop()
    check_outcome(d, shared, path.name)
    assert "quarantined=1" in d.log()


def test_a_message_damaged_in_the_running_daemon_s_queue_is_refused_at_delivery(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    port = free_port()
    d = Daemon(tmp_path, config(shared, port))
    d.start()
    try:
        send(port, DAMAGED)
        [path] = d.queued()
        msgid = path.name
        flip(path, MARKERS["body"])
        shown = mtactl(d.spool, "show", "message", msgid)
        assert shown.returncode != 0 and shown.stdout == ""
        assert "content checksum mismatch" in shown.stderr and "Traceback" not in shown.stderr
        assert mtactl(d.spool, "resume", "mda").returncode == 0
        wait_for(lambda: f"queue: quarantine msgid={msgid}" in d.log())
        deliver_good_one(d, port, shared)
        assert mtactl(d.spool, "show", "queue").stdout == ""
    finally:
        d.stop()
    check_outcome(d, shared, msgid)
    line = next(x for x in d.log().splitlines() if f"queue: quarantine msgid={msgid}" in x)
    assert "envelopes=1" in line and "no notice" in line

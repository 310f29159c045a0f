"""``listen on socket filter NAME``: the filters of the local enqueue socket run for
what ``mta-sendmail`` submits (as OpenSMTPD runs them for smtpctl's enqueue),
and only there: a filter process sees the local session (its ``link-connect``,
the connect request with ``local`` as the client's address), changes the
message by data-line; builtin filters test ``src`` as ``local`` and ``fcrdns``
as passed (OpenSMTPD names a local session as the server is named, and takes
the name as forward-confirmed), and refuse a sender, which mta-sendmail
reports by its exit status.  The TCP listener
beside it has no filter and its mail is left alone."""

from __future__ import annotations

import getpass
import json
import os
import shlex
import smtplib
import sys
from pathlib import Path

from mta.config.hostname import server_name
from tests.e2e.daemon import Daemon, free_port, wait_for
from tests.enqueue.daemons import run_sendmail

FILTER = Path(__file__).with_name("protocol_filter.py")
EX_UNAVAILABLE = 69  # sysexits(3): a refusal other than of a recipient


def config(shared: Path, port: int) -> str:
    script = shared / "f.json"
    script.write_text(
        json.dumps(
            {
                "phases": ["connect", "mail-from", "data-line"],
                "reports": ["link-connect", "filter-response"],
                "data_line": {"header": ["X-Filtered: yes"]},
            }
        )
    )
    command = " ".join(
        shlex.quote(str(p)) for p in (sys.executable, FILTER, shared / "f.log", script)
    )
    # as the test's own user (run by root, a filter naming no user runs as nobody,
    # who cannot reach this Python)
    return (
        f'filter f proc-exec "{command}" user {getpass.getuser()}\n'
        'filter refuse phase mail-from match mail-from regex "^refused@" '
        'reject "550 5.7.1 not from you"\n'
        'filter fromsocket phase connect match src regex "^local$" junk\n'
        'filter confirmed phase mail-from match !fcrdns reject "550 5.7.1 not confirmed"\n'
        "listen on socket filter { f, refuse, fromsocket, confirmed }\n"
        f"listen on 127.0.0.1 port {port}\n"
        f'action "local" maildir "{shared}/mail/%{{user.username}}"\n'
        'match from any for domain "localhost" action "local"\n'
    )


def messages(shared: Path) -> list[str]:
    new = shared / "mail" / "nobody" / "new"
    if not new.is_dir():
        return []
    found = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return [p.read_bytes().decode("latin-1") for p in found]


def test_the_socket_s_filters_run_for_local_submissions(shared: Path) -> None:
    port = free_port()
    (shared / "mta").mkdir()
    daemon = Daemon(shared / "mta", config(shared, port), paused=())
    daemon.start()
    try:
        sent = run_sendmail(["nobody@localhost"], b"Subject: local\n\nbody\n", daemon.spool)
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: len(messages(shared)) == 1)
        refused = run_sendmail(
            ["-f", "refused@localhost", "nobody@localhost"], b"Subject: no\n\nx\n", daemon.spool
        )
        assert refused.returncode == EX_UNAVAILABLE, refused.stderr
        assert b"550 5.7.1 not from you" in refused.stderr
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail("refused@ext.test", ["nobody@localhost"], b"Subject: tcp\r\n\r\nx\r\n")
        wait_for(lambda: len(messages(shared)) == 2)
    finally:
        assert daemon.stop() == 0
    local, tcp = messages(shared)
    head = local.partition("\n\n")[0].split("\n")
    # after Return-Path and Delivered-To: the filter's header, put before the first
    # line it was given, the junk mark (which the server wrote before its Received)
    assert head[2:4] == ["X-Filtered: yes", "X-Spam: Yes"], head
    assert head[4].startswith("Received: from localhost ")
    assert "\nSubject: local\n" in local
    assert "X-Spam" not in tcp and "X-Filtered" not in tcp
    log = (shared / "f.log").read_text().splitlines()
    sessions = [line for line in log if "|link-connect|" in line]
    assert len(sessions) == 2  # the two local sessions, not the TCP one
    socket_path = os.path.realpath(daemon.spool / "enqueue.sock")
    # named as the server is named, and forward-confirmed (OpenSMTPD's smtp_session)
    name = server_name()
    assert sessions[0].endswith(f"|{name}|pass|unix:{socket_path}|unix:{socket_path}"), sessions[0]
    connects = [line for line in log if "|connect|" in line and line.startswith("< filter|")]
    assert len(connects) == 2 and all(line.endswith(f"|{name}|local") for line in connects)
    responses = [line.partition("|filter-response|")[2] for line in log if "|filter-res" in line]
    assert [r.partition("|")[2] for r in responses if "|mail-from|" in r] == [
        "mail-from|proceed",
        "mail-from|reject|550 5.7.1 not from you",
    ]

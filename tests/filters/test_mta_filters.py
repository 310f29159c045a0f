"""mta's own answers where DESIGN.md decides against OpenSMTPD 6.8 (which exits):
a filter process that exits, writes garbage or hangs fails only the sessions
waiting on it (421, nothing half-accepted is kept), is started again, and the
next sessions are served; a filter that cannot register stops the start; the
0.7 ``report`` result is reported and the command proceeds; reloads start and
stop filters with their configuration."""

from __future__ import annotations

import getpass
import json
import os
import shlex
import signal
import smtplib
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon, free_port, wait_for

FILTER = Path(__file__).with_name("protocol_filter.py")
MESSAGE = b"Subject: x\r\n\r\nbody\r\n"


Script = Mapping[str, object]


def config(tmp_path: Path, port: int, script: Script, *, name: str = "f") -> str:
    """A listener filtered by protocol_filter.py with ``script``; mail for
    nobody@localhost goes to ``tmp_path/mail/nobody`` (a directory the delivery
    user reaches: see the ``shared`` fixture)."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(script))
    log = tmp_path / f"{name}.log"
    command = " ".join(shlex.quote(str(p)) for p in (sys.executable, FILTER, log, path))
    # as the test's own user (run by root, a filter naming no user runs as nobody,
    # who cannot reach this Python): see test_a_filter_runs_as_nobody_by_default
    return (
        f'filter {name} proc-exec "{command}" user {getpass.getuser()}\n'
        f"listen on 127.0.0.1 port {port} filter {name}\n"
        f'action "local" maildir "{tmp_path}/mail/%{{user.username}}"\n'
        'match from any for domain "localhost" action "local"\n'
    )


def start(tmp_path: Path, script: Script, **env: str) -> tuple[Daemon, int]:
    port = free_port()
    (tmp_path / "mta").mkdir()
    daemon = Daemon(tmp_path / "mta", config(tmp_path, port, script), env=env, paused=())
    daemon.start()
    return daemon, port


def send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("a@ext.test", ["nobody@localhost"], MESSAGE)


def delivered(shared: Path) -> int:
    new = shared / "mail" / "nobody" / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


@pytest.mark.parametrize(
    ("mode", "logged"),
    [
        ("exit", "filter f: exited with status 0"),
        ("garbage", 'filter f: unknown filter message type: "garbage from the filter"'),
        ("hang", "filter f: no answer to mail-from within 3s"),
    ],
)
def test_a_failing_filter_fails_its_session_and_is_started_again(
    shared: Path, mode: str, logged: str
) -> None:
    script = {"misbehave": {"phase": "mail-from", "mode": mode, "once": str(shared / "once")}}
    daemon, port = start(shared, script, MTA_TIMEOUT_SCALE="0.01")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.test")
            code, text = client.mail("a@ext.test")
            assert (code, text) == (421, b"4.3.0 Temporary failure, try again later")
        wait_for(lambda: "filter f: starting again" in daemon.log())
        assert logged in daemon.log()
        wait_for(lambda: _serves(port))  # the filter, started again, behaves
        wait_for(lambda: delivered(shared) == 1)
        assert daemon.process is not None and daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0


def _serves(port: int) -> bool:
    try:
        send(port)
    except smtplib.SMTPException:
        return False
    return True


def test_a_filter_failing_in_the_middle_of_a_message_keeps_nothing(shared: Path) -> None:
    script = {"misbehave": {"phase": "data-line", "mode": "exit", "once": str(shared / "once")}}
    daemon, port = start(shared, script)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@ext.test", ["nobody@localhost"], MESSAGE)
            assert refused.value.smtp_code == 421
        assert daemon.queued() == []
        wait_for(lambda: _serves(port))
        wait_for(lambda: delivered(shared) == 1)
    finally:
        assert daemon.stop() == 0


def test_a_filter_that_cannot_register_stops_the_start(shared: Path) -> None:
    script = {"misbehave": {"phase": "ready", "mode": "garbage"}}
    with pytest.raises(RuntimeError, match="mta exited with 1") as failed:
        start(shared, script)
    assert 'mta: filter f: unknown filter message type: "garbage' in str(failed.value)


def test_report_result_is_reported_and_the_command_proceeds(shared: Path) -> None:
    script = {"responses": {"mail-from": "report|hello there"}}
    daemon, port = start(shared, script)
    try:
        send(port)
        wait_for(lambda: delivered(shared) == 1)
        log = (shared / "f.log").read_text()
        assert "|filter-report|" in log and "|proc|f|hello there" in log
    finally:
        assert daemon.stop() == 0


def test_a_slow_data_line_filter_streams_a_large_message(shared: Path) -> None:
    script = {"misbehave": {"phase": "data-line", "mode": "slow", "delay": 0.0005}}
    daemon, port = start(shared, script)
    try:
        body = b"".join(b"line %06d of a long message\r\n" % n for n in range(4000))
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.sendmail("a@ext.test", ["nobody@localhost"], b"Subject: big\r\n\r\n" + body)
        wait_for(lambda: delivered(shared) == 1)
        (path,) = (shared / "mail" / "nobody" / "new").iterdir()
        assert path.read_bytes().endswith(body.replace(b"\r\n", b"\n"))
    finally:
        assert daemon.stop() == 0


def test_reload_starts_new_filters_and_keeps_the_running_ones_on_failure(
    shared: Path,
) -> None:
    daemon, port = start(shared, {"responses": {"mail-from": "reject|550 5.7.1 first"}})
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.test")
            assert client.mail("a@ext.test")[0] == 550
        # a new configuration whose filter never registers: the running one stays
        bad = config(shared, port, {"misbehave": {"phase": "ready", "mode": "exit"}}, name="g")
        daemon.config_path.write_text(bad)
        offset = len(daemon.log())
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload failed: filter g" in daemon.log()[offset:])
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.test")
            assert client.mail("a@ext.test")[0] == 550
        # a working new filter takes over
        good = config(shared, port, {"responses": {"mail-from": "proceed"}}, name="h")
        daemon.config_path.write_text(good)
        offset = len(daemon.log())
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "mta: config reloaded" in daemon.log()[offset:])
        send(port)
        wait_for(lambda: delivered(shared) == 1)
    finally:
        assert daemon.stop() == 0


@pytest.mark.skipif(
    os.geteuid() != 0, reason="run unprivileged, a filter runs as the daemon's user"
)
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs Debian's python3")
def test_a_filter_runs_as_nobody_by_default(shared: Path) -> None:
    port = free_port()
    script = shared / "f.json"
    script.write_text("{}")
    log = shared / "f.log"
    command = f"/usr/bin/python3 {shlex.quote(str(FILTER))} {log} {script}"
    (shared / "mta").mkdir()
    text = config(shared, port, {}).replace(f" user {getpass.getuser()}", "")
    text = text.replace(text.split('"')[1], command, 1)
    daemon = Daemon(shared / "mta", text, paused=())
    daemon.start()
    try:
        send(port)
        wait_for(lambda: delivered(shared) == 1)
        assert log.stat().st_uid == 65534  # the filter wrote its log as nobody
    finally:
        assert daemon.stop() == 0

"""End to end: configuration reload by SIGHUP and ``mtactl reload``.

New sessions get the new rules; a session in flight finishes on the rules it
started with, even when its listener goes away; listeners are opened and
closed, and a ``port 0`` listener keeps the port the system gave it until its
line changes; queued envelopes follow the new definition of their action; a
broken file, a port in use or a change that needs a restart leave the running
configuration whole; and reloads under load cut no session and lose no mail.
"""

from __future__ import annotations

import pathlib
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.daemon import Daemon, free_port, wait_for

MTACTL = [sys.executable, "-c", "import sys; from mta.cli.ctl import main; sys.exit(main())"]
MESSAGE = b"From: alice@example.org\r\nSubject: reload\r\n\r\nHello.\r\n"


def config(
    shared: pathlib.Path, port: int, users: str, *, maildir: str = "box", domain: str = "localhost"
) -> str:
    return f"""table users {{ {users} }}
listen on 127.0.0.1 port {port}
action "local" maildir "{shared}/{maildir}/%{{user.username}}" userbase <users>
match from any for domain "{domain}" action "local"
"""


def user(name: str) -> str:
    return f'"{name}" = "65534:65534:/nonexistent"'


def accepts(port: int, rcpt: str) -> bool:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail("sender@example.org")
        code, _ = client.rcpt(rcpt)
        return code == 250


def reload(daemon: Daemon) -> str:
    """SIGHUP, then the log lines the reload wrote."""
    offset = len(daemon.log())
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reload" in daemon.log()[offset:])
    return daemon.log()[offset:]


def mtactl(spool: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MTACTL, "--spool", str(spool), *args], capture_output=True, text=True, timeout=30
    )


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def maildir_count(directory: pathlib.Path) -> int:
    new = directory / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


def test_sighup_applies_new_rules_to_new_sessions(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    port = free_port()
    daemon = Daemon(tmp_path, config(shared, port, user("bob")))
    daemon.start()
    try:
        assert accepts(port, "bob@localhost")
        assert not accepts(port, "carol@localhost")
        daemon.config_path.write_text(config(shared, port, f"{user('bob')}, {user('carol')}"))
        assert "mta: config reloaded" in reload(daemon)
        assert accepts(port, "carol@localhost")
        assert daemon.process is not None and daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0


def test_mtactl_reload_and_a_broken_file(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    port = free_port()
    daemon = Daemon(tmp_path, config(shared, port, user("bob")))
    daemon.start()
    try:
        daemon.config_path.write_text(config(shared, port, f"{user('bob')}, {user('carol')}"))
        result = mtactl(daemon.spool, "reload")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "config reloaded\n"
        assert accepts(port, "carol@localhost")
        # a broken file: every error with its file:line, and the running rules stay
        daemon.config_path.write_text(
            config(shared, port, user("bob")) + "match from any for nowhere action\n"
        )
        result = mtactl(daemon.spool, "reload")
        assert result.returncode == 1
        assert "config reload failed" in result.stderr
        assert f"{daemon.config_path}:5: " in result.stderr
        log = reload(daemon)
        assert f"mta: config reload failed: {daemon.config_path}:5: " in log
        assert "config reloaded" not in log
        assert accepts(port, "carol@localhost")  # still the last good configuration
        daemon.config_path.unlink()
        assert "cannot read configuration" in reload(daemon)
        assert accepts(port, "bob@localhost")
    finally:
        assert daemon.stop() == 0


def test_patterns_that_do_not_compile_never_replace_good_ones(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    port = free_port()
    patterns = tmp_path / "patterns"
    patterns.write_text("^bob@\n")
    text = config(shared, port, user("bob")).replace(
        'for domain "localhost"', "for rcpt-to regex <patterns>"
    )
    text = f'table patterns "{patterns}"\n' + text
    daemon = Daemon(tmp_path, text)
    daemon.start()
    try:
        assert accepts(port, "bob@localhost")
        # mtactl update table with a bad pattern: refused, logged, the old patterns stay
        patterns.write_text("^carol(@\n")
        result = mtactl(daemon.spool, "update", "table", "patterns")
        assert result.returncode == 1
        assert f"{patterns}:1: invalid regex '^carol(@': unmatched (" in result.stderr
        wait_for(lambda: "table patterns: update refused, previous contents kept" in daemon.log())
        assert accepts(port, "bob@localhost")
        # a reload whose configuration holds a bad pattern: refused with file:line
        patterns.write_text("^bob@\n")
        daemon.config_path.write_text(text + 'match for domain regex { "x{2" } reject\n')
        log = reload(daemon)
        assert (
            f"config reload failed: {daemon.config_path}:6: invalid regex 'x{{2': unmatched {{"
            in log
        )
        assert accepts(port, "bob@localhost")
    finally:
        assert daemon.stop() == 0


def test_listeners_open_and_close(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    first, second = free_port(), free_port()
    daemon = Daemon(tmp_path, config(shared, first, user("bob")))
    daemon.start()
    try:
        text = config(shared, first, user("bob"))
        text += f"listen on 127.0.0.1 port {second}\n"
        daemon.config_path.write_text(text)
        assert f"listening on 127.0.0.1:{second}" in reload(daemon)
        assert accepts(first, "bob@localhost") and accepts(second, "bob@localhost")
        daemon.config_path.write_text(config(shared, second, user("bob")))
        assert f"closed 127.0.0.1:{first}" in reload(daemon)
        assert refused(first)
        assert accepts(second, "bob@localhost")
        # a port in use: the reload fails and every listener stays as it was
        with socket.create_server(("127.0.0.1", 0)) as taken:
            busy = taken.getsockname()[1]
            daemon.config_path.write_text(
                config(shared, second, user("bob")) + f"listen on 127.0.0.1 port {busy}\n"
            )
            log = reload(daemon)
        assert f"config reload failed: listen on 127.0.0.1: cannot listen on 127.0.0.1:{busy}" in (
            log
        )
        assert accepts(second, "bob@localhost")
    finally:
        assert daemon.stop() == 0


def picked_port(log: str) -> int:
    """The port the system gave a ``port 0`` listener, as the daemon logs it."""
    [port] = re.findall(r"smtp: listening on 127\.0\.0\.1:(\d+)", log)
    return int(port)


def test_a_port_0_listener_keeps_its_port_until_its_line_changes(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    daemon = Daemon(tmp_path, config(shared, 0, user("bob")))
    daemon.start()
    try:
        port = picked_port(daemon.log())
        assert accepts(port, "bob@localhost") and not accepts(port, "carol@localhost")
        both = config(shared, 0, f"{user('bob')}, {user('carol')}")
        daemon.config_path.write_text(both)
        log = reload(daemon)
        assert "mta: config reloaded" in log and "listening on" not in log
        assert accepts(port, "carol@localhost")
        result = mtactl(daemon.spool, "reload")
        assert result.stdout == "config reloaded\n", result.stderr
        assert accepts(port, "carol@localhost")
        # the listen line itself changes: a new socket on a new port, the old one closes
        daemon.config_path.write_text(both.replace("port 0", "port 0 tag NEW"))
        log = reload(daemon)
        moved = picked_port(log)
        assert moved != port and f"closed 127.0.0.1:{port}" in log
        assert refused(port)
        assert accepts(moved, "carol@localhost")
    finally:
        assert daemon.stop() == 0


def test_session_in_flight_finishes_on_its_configuration(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    first, second = free_port(), free_port()
    users = f"{user('bob')}, {user('carol')}"
    daemon = Daemon(tmp_path, config(shared, first, users), paused=())
    daemon.start()
    try:
        with smtplib.SMTP("127.0.0.1", first, timeout=10) as client:
            client.ehlo("client.test")
            client.mail("sender@example.org")
            assert client.rcpt("bob@localhost")[0] == 250
            # the new configuration takes no mail for localhost, and no longer
            # listens on this port (its action still delivers to bob and carol)
            daemon.config_path.write_text(config(shared, second, users, domain="elsewhere.test"))
            assert "config reloaded" in reload(daemon)
            assert refused(first)
            assert client.rcpt("carol@localhost")[0] == 250  # the rules it started with
            code, _ = client.data(MESSAGE)
            assert code == 250
        assert not accepts(second, "bob@localhost")
        wait_for(lambda: maildir_count(shared / "box" / "bob") == 1)
        wait_for(lambda: maildir_count(shared / "box" / "carol") == 1)
    finally:
        assert daemon.stop() == 0


def test_queued_envelopes_follow_the_new_action(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    port = free_port()
    daemon = Daemon(tmp_path, config(shared, port, user("bob")), paused=("mda",))
    daemon.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("sender@example.org", ["bob@localhost"], MESSAGE)
        daemon.config_path.write_text(config(shared, port, user("bob"), maildir="moved"))
        assert "config reloaded" in reload(daemon)
        assert mtactl(daemon.spool, "resume", "mda").returncode == 0
        wait_for(lambda: maildir_count(shared / "moved" / "bob") == 1)
        assert maildir_count(shared / "box" / "bob") == 0
    finally:
        assert daemon.stop() == 0


def test_queue_encryption_needs_a_restart(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    port = free_port()
    daemon = Daemon(tmp_path, config(shared, port, user("bob")))
    daemon.start()
    try:
        daemon.config_path.write_text(
            f'queue encryption "{"k" * 32}"\n' + config(shared, port, user("bob"))
        )
        assert "config reload failed: queue encryption cannot change" in reload(daemon)
        assert accepts(port, "bob@localhost")
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("reloads", [12])
def test_reloads_under_load_cut_nothing_and_lose_nothing(
    tmp_path: pathlib.Path, shared: pathlib.Path, reloads: int
) -> None:
    port = free_port()
    text = config(shared, port, user("bob"))
    daemon = Daemon(tmp_path, text, paused=())
    daemon.start()
    stop = threading.Event()
    sent: list[int] = []
    errors: list[BaseException] = []

    def client() -> None:
        count = 0
        try:
            while not stop.is_set():
                # a few messages per session: sessions span the reloads
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
                    for _ in range(5):
                        smtp.sendmail("sender@example.org", ["bob@localhost"], MESSAGE)
                        count += 1
        except BaseException as exc:
            errors.append(exc)
        sent.append(count)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for number in range(reloads):
            time.sleep(0.15)
            # alternate between two equivalent files: each reload is a real one
            daemon.config_path.write_text(text + f"# reload {number}\n")
            assert "mta: config reloaded" in reload(daemon)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    try:
        assert errors == []
        total = sum(sent)
        assert total > reloads
        wait_for(lambda: maildir_count(shared / "box" / "bob") == total, timeout=60)
        assert daemon.log().count("mta: config reloaded") == reloads
    finally:
        assert daemon.stop() == 0

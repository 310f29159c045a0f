"""End to end: ``mtactl`` driving a running daemon through ``SPOOL/mta.sock``
(show, schedule, remove, pause/resume, update table, log), the queue listing
with the daemon down, and one daemon per spool."""

from __future__ import annotations

import os
import pathlib
import pwd
import smtplib
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from mta.control.frames import encode_request
from tests.e2e.daemon import Daemon, free_port, wait_for

MTACTL = [sys.executable, "-c", "import sys; from mta.cli.ctl import main; sys.exit(main())"]
MESSAGE = b"From: alice@example.org\r\nSubject: queued\r\n\r\nHello from the queue.\r\n"


def config(shared: pathlib.Path) -> str:
    (shared / "users").write_text(
        "bob 65534:65534:/nonexistent\ncarol 65534:65534:/nonexistent\n".replace(" 6", "\t6")
    )
    return f"""table users file:{shared}/users
listen on 127.0.0.1 port PORT
action "local" maildir "{shared}/%{{user.username}}" userbase <users>
match from any for domain "localhost" action "local"
"""


def mtactl(
    spool: pathlib.Path, *args: str, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MTACTL, "--spool", str(spool), *args],
        capture_output=True,
        text=True,
        timeout=30,
        user=user,
        cwd=pathlib.Path(__file__).resolve().parents[2],
    )


def send(port: int, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail("alice@localhost", rcpts, MESSAGE) == {}


def queue_lines(spool: pathlib.Path) -> list[list[str]]:
    result = mtactl(spool, "show", "queue")
    assert result.returncode == 0, result.stderr
    return [line.split("|") for line in result.stdout.splitlines()]


@pytest.fixture
def paused(tmp_path: pathlib.Path, shared: pathlib.Path) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    daemon = Daemon(tmp_path, config(shared).replace("PORT", str(port)), paused=("mda",))
    daemon.start()
    yield daemon, port
    daemon.stop()


def test_show_queue_envelope_message_and_status(
    paused: tuple[Daemon, int], shared: pathlib.Path
) -> None:
    daemon, port = paused
    send(port, ["bob@localhost", "carol@localhost"])
    lines = queue_lines(daemon.spool)
    assert len(lines) == 2
    for fields in lines:
        assert len(fields) == 14
        evpid, family, kind, flags, sender, rcpt, dest = fields[:7]
        assert len(evpid) == 16 and family == "inet4" and kind == "mda" and flags == ""
        assert sender == "alice@localhost"
        assert rcpt == dest and rcpt in ("bob@localhost", "carol@localhost")
        ctime, expire = int(fields[7]), int(fields[8])
        assert expire == ctime + 4 * 86400  # queue ttl default
        assert fields[11] == "pending" and fields[13] == ""
    assert {fields[0][:8] for fields in lines} == {lines[0][0][:8]}  # one message

    envelope = mtactl(daemon.spool, "show", "envelope", lines[0][0])
    assert envelope.returncode == 0, envelope.stderr
    assert f"id: {lines[0][0]}" in envelope.stdout
    assert "sender: alice@localhost" in envelope.stdout

    message = mtactl(daemon.spool, "show", "message", lines[0][0][:8])
    assert message.returncode == 0, message.stderr
    assert "Hello from the queue." in message.stdout
    assert "Subject: queued" in message.stdout

    status = mtactl(daemon.spool, "show", "status")
    assert status.stdout.splitlines()[0] == "MDA paused"
    assert status.stdout.splitlines()[2] == "SMTP running"
    stats = mtactl(daemon.spool, "show", "stats")
    assert "queue.envelope=2" in stats.stdout.splitlines()
    # one message committed: one file fsynced, in one batch
    assert {"spool.commit=1", "spool.fsync.file=1", "spool.commit.batch.max=1"} <= set(
        stats.stdout.splitlines()
    )

    missing = mtactl(daemon.spool, "show", "envelope", "0123456789abcdef")
    assert missing.returncode == 1
    assert "no such envelope: 0123456789abcdef" in missing.stderr


def test_pause_envelope_resume_mda_then_remove(
    paused: tuple[Daemon, int], shared: pathlib.Path
) -> None:
    daemon, port = paused
    send(port, ["bob@localhost"])
    send(port, ["carol@localhost"])
    lines = queue_lines(daemon.spool)
    carol = next(f[0] for f in lines if f[5] == "carol@localhost")
    bob = next(f[0] for f in lines if f[5] == "bob@localhost")

    held = mtactl(daemon.spool, "pause", "envelope", carol)
    assert held.stdout == "1 envelope(s) paused\n"
    assert next(f for f in queue_lines(daemon.spool) if f[0] == carol)[3] == "suspend"

    assert mtactl(daemon.spool, "resume", "mda").returncode == 0
    wait_for(lambda: (shared / "bob" / "new").is_dir() and any((shared / "bob" / "new").iterdir()))
    time.sleep(0.3)
    assert not (shared / "carol").exists()  # suspended: not delivered
    assert [f[0] for f in queue_lines(daemon.spool)] == [carol]
    assert bob not in mtactl(daemon.spool, "show", "queue").stdout

    removed = mtactl(daemon.spool, "remove", carol[:8])
    assert removed.stdout == "1 envelope(s) removed\n"
    wait_for(lambda: not queue_lines(daemon.spool))
    assert not (shared / "carol").exists()
    assert "Removed by administrator" in daemon.log()
    again = mtactl(daemon.spool, "resume", "mda")
    assert again.returncode == 1 and "already resumed" in again.stderr


def test_schedule_retries_a_tempfail_at_once(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    broken = shared / "broken"
    broken.write_text("not a directory\n")
    port = free_port()
    daemon = Daemon(
        tmp_path,
        f"""listen on 127.0.0.1 port {port}
table users {{ bob = "65534:65534:/nonexistent" }}
action "local" maildir "{broken}/%{{user.username}}" userbase <users>
match from any for domain "localhost" action "local"
""",
        paused=(),
    )
    daemon.start()
    try:
        send(port, ["bob@localhost"])
        wait_for(lambda: "result=TempFail" in daemon.log())
        (fields,) = queue_lines(daemon.spool)
        assert fields[10] == "1" and fields[11] == "pending"
        assert int(fields[12]) > 0  # next try in seconds: the 10 s local ladder
        assert fields[13]  # the error
        broken.unlink()
        broken.mkdir()
        broken.chmod(0o1777)
        assert mtactl(daemon.spool, "schedule", "all").stdout == "1 envelope(s) scheduled\n"
        wait_for(
            lambda: (
                any((broken / "bob" / "new").iterdir())
                if (broken / "bob" / "new").is_dir()
                else False
            ),
            5,
        )
        wait_for(lambda: not queue_lines(daemon.spool), 5)
    finally:
        daemon.stop()


def test_pause_smtp_holds_new_connections(paused: tuple[Daemon, int]) -> None:
    daemon, port = paused
    assert mtactl(daemon.spool, "pause", "smtp").returncode == 0
    assert mtactl(daemon.spool, "show", "status").stdout.splitlines()[2] == "SMTP paused"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # in the backlog: no banner
        assert mtactl(daemon.spool, "resume", "smtp").returncode == 0
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"220 ")


def test_update_table_and_log_verbose(paused: tuple[Daemon, int], shared: pathlib.Path) -> None:
    daemon, port = paused
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@localhost")
        assert client.rcpt("dave@localhost")[0] == 550
    with open(shared / "users", "a") as users:
        users.write("dave\t65534:65534:/nonexistent\n")
    assert mtactl(daemon.spool, "update", "table", "users").stdout == "table users updated\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@localhost")
        assert client.rcpt("dave@localhost")[0] == 250
    unknown = mtactl(daemon.spool, "update", "table", "nosuch")
    assert unknown.returncode == 1 and "no such table: nosuch" in unknown.stderr
    assert mtactl(daemon.spool, "log", "verbose").stdout == "logging is now verbose\n"


def _request_as(uid: int, path: pathlib.Path) -> bytes:
    """What the control socket answers a ``show queue`` from a process of ``uid``
    (or ``b"EACCES"`` when it cannot even connect)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to uid, ask, report through the pipe
        code = 0
        try:
            os.close(read)
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                try:
                    sock.connect(str(path))
                except PermissionError:
                    os.write(write, b"EACCES")
                else:
                    sock.sendall(encode_request(["show", "queue"]))
                    while data := sock.recv(4096):
                        os.write(write, data)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while data := os.read(read, 4096):
        chunks.append(data)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_only_root_and_the_daemon_user_may_control(
    paused: tuple[Daemon, int], shared: pathlib.Path
) -> None:
    daemon, _ = paused
    nobody = pwd.getpwnam("nobody").pw_uid
    assert stat.S_IMODE((daemon.spool / "mta.sock").stat().st_mode) == 0o600
    sock = shared / "mta.sock"  # the same socket, where nobody can reach it
    os.link(daemon.spool / "mta.sock", sock)
    assert _request_as(nobody, sock) == b"EACCES"
    sock.chmod(0o666)  # even so, the daemon checks who is asking
    assert _request_as(nobody, sock) == b"err 17\npermission denied"
    assert "control: connection refused for uid" in daemon.log()


def test_a_second_daemon_on_the_same_spool_is_refused(
    paused: tuple[Daemon, int], tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    daemon, port = paused
    send(port, ["bob@localhost"])
    second = Daemon(tmp_path, config(shared).replace("PORT", str(free_port())))
    with pytest.raises(RuntimeError, match="another mta is running on this spool"):
        second.start()
    # the first daemon keeps its sockets and its queue
    assert (daemon.spool / "mta.sock").exists() and (daemon.spool / "enqueue.sock").exists()
    assert len(queue_lines(daemon.spool)) == 1


def test_show_queue_with_the_daemon_down(paused: tuple[Daemon, int]) -> None:
    daemon, port = paused
    send(port, ["bob@localhost"])
    daemon.stop()
    (fields,) = queue_lines(daemon.spool)
    assert fields[5] == "bob@localhost"
    assert fields[11:13] == ["offline", ""]
    down = mtactl(daemon.spool, "show", "status")
    assert down.returncode == 1 and "mta is not running on this spool" in down.stderr

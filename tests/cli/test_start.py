"""The ``mta`` command starting a daemon: what is wrong is said once, in one
line, before anything is created; a spool at any depth works; logs are never
lost, syslog or not; the default configuration delivers, as root too."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.log import SYSLOG_SOCKET
from tests.e2e.daemon import free_port, has_mail, wait_for

MTA = [sys.executable, "-m", "mta"]
MTACTL = [sys.executable, "-c", "import sys; from mta.cli.ctl import main; sys.exit(main())"]
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "MTA_DNS": "none"}


def conf(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "smtpd.conf"
    path.write_text(
        f"listen on 127.0.0.1 port {port}\n"
        f'action "local" maildir "{tmp_path}/box/%{{user.username}}"\n'
        'match from any for local action "local"\n'
    )
    return path


def start(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MTA, *map(str, args)], capture_output=True, text=True, timeout=30, env=ENV, cwd=cwd
    )


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mta: ")
    return lines[0]


@pytest.mark.parametrize("foreground", [True, False])
def test_a_file_in_place_of_the_spool(tmp_path: Path, foreground: bool) -> None:
    (tmp_path / "file").write_text("x")
    flags = ["-d"] if foreground else []
    config = conf(tmp_path, free_port())
    line = one_clear_line(start(*flags, "-f", config, "--spool", tmp_path / "file"))
    assert line == f"mta: spool {tmp_path}/file: not a directory"
    line = one_clear_line(start(*flags, "-f", config, "--spool", tmp_path / "file" / "spool"))
    assert "is not a directory" in line


def test_a_spool_that_cannot_be_created(tmp_path: Path) -> None:
    config = conf(tmp_path, free_port())
    line = one_clear_line(start("-d", "-f", config, "--spool", "/proc/no-such/spool"))
    assert line.startswith("mta: cannot create the spool /proc/no-such/spool: ")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        line = one_clear_line(start("-d", "-f", config, "--spool", locked / "spool"))
        assert line == f"mta: cannot create the spool {locked}/spool: {locked}: Permission denied"


def test_a_port_in_use_is_reported_once_before_the_spool_is_made(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = conf(tmp_path, port)
        for flags in (["-d"], []):
            line = one_clear_line(start(*flags, "-f", config, "--spool", tmp_path / "spool"))
            assert line == (
                f"mta: listen on 127.0.0.1: cannot listen on 127.0.0.1:{port}: "
                "Address already in use"
            )
    assert not (tmp_path / "spool").exists()


def test_a_second_daemon_on_a_spool_in_use(tmp_path: Path) -> None:
    port = free_port()
    with subprocess.Popen(
        [*MTA, "-d", "-f", str(conf(tmp_path, port)), "--spool", str(tmp_path / "spool")],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    ) as first:
        _second_daemon(tmp_path, first)


def _second_daemon(tmp_path: Path, first: subprocess.Popen[str]) -> None:
    try:
        assert first.stderr is not None
        for line in first.stderr:
            if "mta: ready" in line:
                break
        # a second one, even on another port: the spool is named first, and the
        # first daemon's sockets are left alone
        line = one_clear_line(
            start("-d", "-f", conf(tmp_path, free_port()), "--spool", tmp_path / "spool")
        )
        assert line == (
            f"mta: {tmp_path}/spool: another mta is running on this spool (pid {first.pid})"
        )
        assert (tmp_path / "spool" / "enqueue.sock").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(20)


def test_a_spool_too_deep_for_a_unix_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "spool"
    assert len(str(deep / "enqueue.sock")) > 108
    port = free_port()
    with subprocess.Popen(
        [*MTA, "-d", "-f", str(conf(tmp_path, port)), "--spool", str(deep)],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    ) as daemon:
        _use_deep_spool(daemon, deep)


def _use_deep_spool(daemon: subprocess.Popen[str], deep: Path) -> None:
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            if "mta: ready" in line:
                break
        status = subprocess.run(
            [*MTACTL, "--spool", str(deep), "show", "status"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        assert "SMTP running" in status.stdout
        sendmail = subprocess.run(
            [sys.executable, "-m", "mta.cli.sendmail", "root@localhost"],
            input=b"Subject: deep\n\nbody\n",
            capture_output=True,
            timeout=30,
            env={**ENV, "MTA_SPOOL": str(deep)},
        )
        assert sendmail.returncode == 0, sendmail.stderr
        assert not list((deep / "offline").iterdir())  # went through the socket
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)


def _without_syslog(argv: list[str]) -> list[str]:
    """``argv`` in a world where no syslog daemon listens: as it is when
    ``/dev/log`` is missing, else under a private mount hiding it."""
    if not os.path.lexists(SYSLOG_SOCKET):
        return argv
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a syslog daemon listens here and cannot be hidden without root")
    script = f'mount --bind /dev/null {SYSLOG_SOCKET} && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", *argv]


def test_detached_without_syslog_logs_to_stderr(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stderr"
    spool = tmp_path / "spool"
    argv = [*MTA, "-f", str(conf(tmp_path, port)), "--spool", str(spool)]
    with log.open("w") as stderr:
        subprocess.run(_without_syslog(argv), stderr=stderr, env=ENV, timeout=30, check=True)
    try:
        wait_for(lambda: "mta: ready" in log.read_text())
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.noop()
    finally:
        pid = int((spool / "mta.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: "mta: exiting" in log.read_text())
    text = log.read_text()
    assert text.splitlines()[0] == "mta: no syslog daemon listens on /dev/log: logging to stderr"
    assert text.count("logging to stderr") == 1
    assert "smtp connected address=127.0.0.1" in text
    # the detached daemon's lines carry a time stamp
    assert any(
        line.endswith("mta: exiting") and line != "mta: exiting" for line in text.splitlines()
    )


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory all users can reach (pytest's own are private to us)."""
    path = Path(tempfile.mkdtemp(prefix="mta-start-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_default_configuration_delivers(work: Path) -> None:
    """``mta -d -f conf/smtpd.conf``, run from a copy of the checkout's conf/:
    as root, deliveries run as uid 65534 and the server makes the maildir
    directories they need; unprivileged, everything is the user's own."""
    shutil.copytree(REPO / "conf", work / "conf")
    text = (work / "conf" / "smtpd.conf").read_text()
    port = free_port()
    (work / "conf" / "smtpd.conf").write_text(text.replace("port 2525", f"port {port}"))
    with subprocess.Popen(
        [*MTA, "-d", "-f", "conf/smtpd.conf", "--spool", str(work / "spool")],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=work,
    ) as daemon:
        _deliver_to_alice(daemon, port, work)
    owner = (work / "spool" / "maildir" / "alice").stat().st_uid
    assert owner == (65534 if os.geteuid() == 0 else os.geteuid())


def _deliver_to_alice(daemon: subprocess.Popen[str], port: int, work: Path) -> None:
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            if "mta: ready" in line:
                break
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail(
                "someone@example.org", ["alice@localhost"], b"Subject: hi\r\n\r\nhi\r\n"
            )
        deadline = time.monotonic() + 20
        while not has_mail(work / "spool" / "maildir" / "alice"):
            assert time.monotonic() < deadline, "not delivered"
            time.sleep(0.05)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)

"""The daemon's web inbox: ``--web [HOST:]PORT`` or the configuration's ``web
inbox`` line bound before the start, every local delivery shown (within the
bound), ``mta -d`` serving it, and a reload that would change it refused."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from mta.config import web as webline
from mta.config.model import WebInbox
from mta.daemon.webinbox import (
    MAX_BYTES,
    InboxFeed,
    bind_web,
    daemon_inbox,
    web_address,
    web_missing,
    web_socket,
)
from mta.delivery.result import Result
from mta.envelope import Address, Envelope
from mta.errors import SpoolError
from mta.server.listeners import ListenError
from mta.testing import Inbox
from tests.e2e.daemon import free_port, has_mail, wait_for
from tests.envelopes import make_envelope

MTA = [sys.executable, "-m", "mta"]
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "MTA_DNS": "none", "MTA_HOSTS": "none"}
CONTENT = b"Subject: hi\r\n\r\nhello\r\n"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("8025", ("127.0.0.1", 8025)),
        ("127.0.0.2:0", ("127.0.0.2", 0)),
        ("localhost:8025", ("localhost", 8025)),
        ("[::1]:8025", ("::1", 8025)),
    ],
)
def test_web_addresses(text: str, address: tuple[str, int]) -> None:
    assert web_address(text) == address


@pytest.mark.parametrize("text", ["", "x", "::1:8025", ":8025", "127.0.0.1:99999", "h:-1"])
def test_bad_web_addresses_say_why(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        web_address(text)


def test_a_missing_web_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert web_missing() is None  # the test extra pulls in the web extra
    real = importlib.util.find_spec

    def find_spec(name: str) -> object:
        return None if name == "starlette" else real(name)

    monkeypatch.setattr(webline, "find_spec", find_spec)
    assert web_missing() == "starlette not installed: pip install 'mta[web]'"


def test_an_address_in_use_is_a_listen_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"web inbox on 127.0.0.1:{port}: "):
            bind_web("127.0.0.1", port)
    with bind_web("127.0.0.1", 0) as bound:
        assert bound.getsockname()[1] > 0


def test_the_daemon_inbox_is_bounded() -> None:
    inbox = daemon_inbox(None)
    assert (inbox.keep, inbox.max_bytes) == (1000, MAX_BYTES) == (1000, 64 * 1024 * 1024)
    inbox = daemon_inbox(WebInbox("127.0.0.1", keep=7))
    assert (inbox.keep, inbox.max_bytes) == (7, MAX_BYTES)


def test_the_command_line_wins_over_the_configuration() -> None:
    assert web_socket(None, None) is None
    with socket.create_server(("127.0.0.1", 0)) as taken:
        line = WebInbox("127.0.0.1", taken.getsockname()[1])
        with pytest.raises(ListenError, match=rf"web inbox on 127\.0\.0\.1:{line.port}: "):
            web_socket(None, line)
        sock = web_socket("127.0.0.1:0", line)  # --web: the line's address is not used
        assert sock is not None
        with sock:
            assert sock.getsockname()[1] not in (0, line.port)
    sock = web_socket(None, WebInbox("127.0.0.1", 0))
    assert sock is not None
    with sock:
        assert sock.getsockname()[0] == "127.0.0.1"


class FakeSpool:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def open_message(self, msgid: int) -> BinaryIO:
        if self.fail:
            raise SpoolError(f"message {msgid:08x} is gone")
        return io.BytesIO(CONTENT)


def envelope() -> Envelope:
    return make_envelope(
        "bob@example.org", msgid=0x1234, id=0x1234_0000_0001, dest=Address("bob", "local.test")
    )


async def test_what_is_delivered_is_shown() -> None:
    inbox = Inbox()

    async def deliver(env: Envelope) -> Result:
        return Result.ok()

    feed = InboxFeed(deliver, FakeSpool(), inbox)
    assert await feed(envelope()) == Result.ok()
    (shown,) = inbox.messages
    assert shown.id == "0000123400000001"
    assert shown.mail_from == "alice@example.com"
    assert shown.rcpt_tos == ("bob@example.org",)  # as the client gave it
    assert shown.received.timestamp() == 1_700_000_000
    assert shown.raw == CONTENT


async def test_what_is_not_delivered_is_not_shown() -> None:
    inbox = Inbox()

    async def fail(env: Envelope) -> Result:
        return Result.tempfail("Error (try later)")

    feed = InboxFeed(fail, FakeSpool(), inbox)
    assert (await feed(envelope())).text == "Error (try later)"
    assert inbox.messages == []


async def test_a_message_that_cannot_be_read_is_still_delivered() -> None:
    inbox = Inbox()

    async def deliver(env: Envelope) -> Result:
        return Result.ok()

    assert await InboxFeed(deliver, FakeSpool(fail=True), inbox)(envelope()) == Result.ok()
    assert inbox.messages == []


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def test_the_daemon_serves_its_deliveries(shared: Path) -> None:
    """``mta -d --web`` with the default configuration: what it delivers
    locally is listed by the web inbox's API."""
    work, (port, web) = shared, (free_port(), free_port())
    shutil.copytree(REPO / "conf", work / "conf")
    text = (work / "conf" / "smtpd.conf").read_text()
    (work / "conf" / "smtpd.conf").write_text(text.replace("port 2525", f"port {port}"))
    log = work / "mta.log"
    command = [*MTA, "-d", "-f", "conf/smtpd.conf", "--spool", str(work / "spool")]
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [*command, "--web", f"127.0.0.1:{web}"], stdout=out, stderr=out, env=ENV, cwd=work
        )
    try:
        wait_for(lambda: "mta: ready" in log.read_text() or daemon.poll() is not None)
        assert f"mta: web inbox on http://127.0.0.1:{web}/" in log.read_text(), log.read_text()
        assert _get(f"http://127.0.0.1:{web}/api/messages") == []
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail(
                "someone@example.org",
                ["alice@localhost"],
                b"Subject: seen on the web\r\n\r\nhi\r\n",
            )
        wait_for(lambda: has_mail(work / "spool" / "maildir" / "alice"))
        listed = _get(f"http://127.0.0.1:{web}/api/messages")
        assert isinstance(listed, list) and len(listed) == 1, log.read_text()
        assert listed[0]["subject"] == "seen on the web"
        assert listed[0]["mail_from"] == "someone@example.org"
        assert listed[0]["rcpt_tos"] == ["alice@localhost"]
    finally:
        daemon.terminate()
        daemon.wait(20)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", web), timeout=1):
        pass


def test_a_web_port_in_use_is_one_line_before_the_start(tmp_path: Path) -> None:
    config = tmp_path / "smtpd.conf"
    config.write_text(
        f"listen on 127.0.0.1 port {free_port()}\n"
        'action "local" maildir\nmatch from any for local action "local"\n'
    )
    with socket.create_server(("127.0.0.1", 0)) as taken:
        web = taken.getsockname()[1]
        command = [*MTA, "-d", "-f", str(config), "--spool", str(tmp_path / "spool")]
        result = subprocess.run(
            [*command, "--web", f"127.0.0.1:{web}"],
            capture_output=True,
            text=True,
            timeout=30,
            env=ENV,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"mta: web inbox on 127.0.0.1:{web}: Address already in use"
    ]
    assert not (tmp_path / "spool").exists()
    command = [*MTA, "-d", "-f", str(config), "--spool", str(tmp_path / "spool")]
    result = subprocess.run(
        [*command, "--web", "::1:8025"], capture_output=True, text=True, timeout=30, env=ENV
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "mta: --web '::1:8025': not [HOST:]PORT (an IPv6 address goes in brackets)"
    ]


def _listed(url: str) -> tuple[list[dict[str, object]], str]:
    """The JSON list of ``/api/messages`` and its ``X-Mta-Dropped``."""
    with urllib.request.urlopen(url + "api/messages", timeout=5) as answer:
        return json.loads(answer.read()), answer.headers["X-Mta-Dropped"]


def _send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(
            "someone@example.org", ["alice@localhost"], f"Subject: {subject}\r\n\r\nhi\r\n"
        )


@contextlib.contextmanager
def _running(
    work: Path, config: str, *extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``mta -d`` ready, and its log; stopped at the end."""
    log = work / "mta.log"
    command = [*MTA, "-d", "-f", config, "--spool", str(work / "spool"), *extra]
    with open(log, "wb") as out:
        daemon = subprocess.Popen(command, stdout=out, stderr=out, env=ENV, cwd=work)
    try:
        wait_for(lambda: "mta: ready" in log.read_text() or daemon.poll() is not None)
        assert daemon.poll() is None, log.read_text()
        yield daemon, log
    finally:
        daemon.terminate()
        daemon.wait(20)


def test_the_configuration_line_serves_a_bounded_inbox(shared: Path) -> None:
    """``web inbox on 127.0.0.1 port P keep 1`` in the default configuration:
    the page answers on that port, the API lists the newest delivery only and
    says one was dropped; a reload that changes the line is refused and the
    inbox keeps answering."""
    work, (port, web, other) = shared, (free_port(), free_port(), free_port())
    shutil.copytree(REPO / "conf", work / "conf")
    conf = work / "conf" / "smtpd.conf"
    text = conf.read_text().replace("port 2525", f"port {port}")
    conf.write_text(f"web inbox on localhost port {web} keep 1\n{text}")
    checked = subprocess.run(
        [*MTA, "-n", "-v", "-f", "conf/smtpd.conf"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=work,
    )
    assert checked.returncode == 0, checked.stderr
    assert f'web inbox on "127.0.0.1" port {web} keep 1' in checked.stdout.splitlines()
    url = f"http://127.0.0.1:{web}/"
    with _running(work, "conf/smtpd.conf") as (daemon, log):
        assert f"mta: web inbox on {url}" in log.read_text()
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert b"<h1>mta inbox</h1>" in answer.read()
        _send(port, "the first")
        wait_for(lambda: len(_listed(url)[0]) == 1)
        _send(port, "the second")
        wait_for(lambda: _listed(url)[1] == "1")
        listed, dropped = _listed(url)
        assert [m["subject"] for m in listed] == ["the second"] and dropped == "1"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert b"1 message (1 older dropped)" in answer.read()
        conf.write_text(f"web inbox on 127.0.0.1 port {other}\n{text}")
        offset = len(log.read_text())
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload" in log.read_text()[offset:])
        assert (
            "mta: config reload failed: the web inbox line cannot change while mta runs"
            " (its socket is bound at start): restart to apply it"
        ) in log.read_text()[offset:]
        assert [m["subject"] for m in _listed(url)[0]] == ["the second"]
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", other), timeout=1):
            pass


def test_web_on_the_command_line_overrides_the_line(tmp_path: Path) -> None:
    port, web, line = free_port(), free_port(), free_port()
    config = tmp_path / "smtpd.conf"
    config.write_text(
        f"web inbox on 127.0.0.1 port {line} keep 5\nlisten on 127.0.0.1 port {port}\n"
        'action "local" maildir\nmatch from any for local action "local"\n'
    )
    with _running(tmp_path, str(config), "--web", str(web)) as (_, log):
        assert f"mta: web inbox on http://127.0.0.1:{web}/" in log.read_text()
        assert _listed(f"http://127.0.0.1:{web}/") == ([], "0")
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", line), timeout=1):
            pass


def test_a_bad_line_is_refused_before_the_start(tmp_path: Path) -> None:
    config = tmp_path / "smtpd.conf"
    config.write_text(
        "web inbox on eth0 port 8025\n"
        f"listen on 127.0.0.1 port {free_port()}\n"
        'action "local" maildir\nmatch from any for local action "local"\n'
    )
    for flag in ("-n", "-d"):
        command = [*MTA, flag, "-f", str(config), "--spool", str(tmp_path / "spool")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=ENV)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f'{config}:1: web inbox on "eth0": not an IP address or localhost'
            " (the web inbox looks up no interface or host names)"
        ]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        web = taken.getsockname()[1]
        config.write_text(config.read_text().replace("eth0 port 8025", f"127.0.0.1 port {web}"))
        command = [*MTA, "-d", "-f", str(config), "--spool", str(tmp_path / "spool")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=ENV)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"mta: web inbox on 127.0.0.1:{web}: Address already in use"
    ]
    assert not (tmp_path / "spool").exists()

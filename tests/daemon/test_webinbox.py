"""The daemon's web inbox: ``--web [HOST:]PORT`` parsed and bound before the
start, every local delivery shown, and ``mta -d --web`` serving it."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import BinaryIO

import pytest

from mta.config import web as webline
from mta.daemon.webinbox import InboxFeed, bind_web, web_address, web_missing
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

"""End to end: stopping the daemon (SIGTERM).  The listeners close at once;
sessions in flight get a grace period to finish their transaction, and those
still open after it are told ``421 4.3.2`` before the connection closes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon
from tests.e2e.test_limits import config
from tests.e2e.test_listeners import CLIENT, MESSAGE, Conversation, envelopes_for, free_ports


def test_sessions_finish_within_the_grace_period(tmp_path: Path) -> None:
    [port] = free_ports(1)
    d = Daemon(tmp_path, config(port))  # grace period: 10 s
    d.start()
    try:
        with Conversation.open("127.0.0.1", port) as c:
            c.reply()
            c.command(f"EHLO {CLIENT}")
            assert c.command("MAIL FROM:<alice@example.org>")[0] == 250
            assert d.process is not None
            d.process.send_signal(signal.SIGTERM)
            assert c.command("RCPT TO:<bob@localhost>")[0] == 250
            assert c.command("DATA")[0] == 354
            c.send(MESSAGE + b".\r\n")
            assert c.reply()[0] == 250
            # no new sessions meanwhile: the listener is closed
            with pytest.raises(ConnectionRefusedError):
                Conversation.open("127.0.0.1", port, timeout=5).close()
            assert c.command("QUIT")[0] == 221
        assert d.process.wait(5) == 0  # it exits once the last session ended
    except BaseException:
        d.stop()
        raise
    assert len(envelopes_for(d, "bob@localhost")) == 1
    assert "mta: received SIGTERM, shutting down" in d.log()


def test_sessions_left_after_the_grace_period_get_421(tmp_path: Path) -> None:
    [port] = free_ports(1)
    # every timeout scaled down: the grace period is 0.1 s (the command deadline 3 s)
    d = Daemon(tmp_path, config(port), env={"MTA_TIMEOUT_SCALE": "0.01"})
    d.start()
    with Conversation.open("127.0.0.1", port) as idle, Conversation.open("127.0.0.1", port) as data:
        idle.reply()
        idle.command(f"EHLO {CLIENT}")
        data.reply()
        data.command(f"EHLO {CLIENT}")
        data.command("MAIL FROM:<alice@example.org>")
        data.command("RCPT TO:<bob@localhost>")
        assert data.command("DATA")[0] == 354
        data.send(b"Subject: unfinished\r\n\r\n")
        assert d.stop() == 0
        assert idle.reply() == (421, "4.3.2 Server shutting down")
        assert idle.closed()
        assert data.reply() == (421, "4.3.2 Server shutting down")
        assert data.closed()
    assert envelopes_for(d, "bob@localhost") == []
    assert list((d.spool / "incoming").iterdir()) == []

"""End to end: limits and timeouts of SMTP sessions.

``smtp limit max-rcpt`` / ``max-mails`` (452 4.5.3), a 1000-recipient
transaction, the per-command deadline shortened with ``MTA_TIMEOUT_SCALE``
(a silent client and a client dribbling one byte at a time are both cut with
``421 4.4.2``; a client that keeps sending commands is not), silence inside
DATA and a transfer below the minimum rate, and the session cap that a low
file descriptor limit makes small.
"""

from __future__ import annotations

import re
import select
import shutil
import smtplib
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.e2e.daemon as daemon_module
from tests.e2e.certs import make_certs
from tests.e2e.daemon import Daemon
from tests.e2e.test_listeners import (
    CLIENT,
    MESSAGE,
    USERS,
    Conversation,
    envelopes,
    envelopes_for,
    free_ports,
)

COMMAND_DEADLINE = 1.0  # seconds, with MTA_TIMEOUT_SCALE below
SCALE = COMMAND_DEADLINE / 300  # the command deadline is 300 s unscaled
DATA_SILENCE = 180 * SCALE  # the data block timeout: 0.6 s


def config(port: int, head: str = "") -> str:
    return f"""
{USERS}
{head}
listen on 127.0.0.1 port {port}
action "local" maildir "/nonexistent/%{{user.username}}" userbase <users>
match from any for domain "localhost" action "local"
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, int]]:
    [port] = free_ports(1)
    d = Daemon(
        tmp_path_factory.mktemp("limited"),
        config(port, "smtp limit max-rcpt 3 max-mails 2"),
    )
    d.start()
    yield d, port
    d.stop()


@pytest.fixture(scope="module")
def fast_ports() -> list[int]:
    return free_ports(3)  # plain, smtps, proxy-v2


@pytest.fixture(scope="module")
def fast(
    tmp_path_factory: pytest.TempPathFactory, fast_ports: list[int]
) -> Iterator[tuple[Daemon, int]]:
    """Default limits, every timeout scaled down (the command deadline is 1 s)."""
    port, smtps, proxy = fast_ports
    directory = tmp_path_factory.mktemp("fast")
    certs = make_certs(directory)
    listeners = (
        f'pki localhost cert "{certs.cert_file}"\npki localhost key "{certs.key_file}"\n'
        f"listen on 127.0.0.1 port {smtps} smtps pki localhost\n"
        f"listen on 127.0.0.1 port {proxy} proxy-v2\n"
    )
    d = Daemon(directory, config(port, listeners), env={"MTA_TIMEOUT_SCALE": str(SCALE)})
    d.start()
    yield d, port
    d.stop()


# -- max-rcpt, max-mails, 1000 recipients ------------------------------------------------------


def test_max_rcpt(limited: tuple[Daemon, int]) -> None:
    d, port = limited
    with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        client.mail("alice@example.org")
        for n in range(3):
            assert client.rcpt(f"bob+rcpt{n}@localhost")[0] == 250
        code, text = client.rcpt("bob+rcpt3@localhost")
        assert (code, text) == (452, b"4.5.3 Too many recipients: Too many recipients")
        assert client.data(MESSAGE)[0] == 250  # the first three are kept
    assert [len(envelopes_for(d, f"bob+rcpt{n}@localhost")) for n in range(4)] == [1, 1, 1, 0]


def test_max_mails(limited: tuple[Daemon, int]) -> None:
    d, port = limited
    with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        for n in range(2):
            assert client.sendmail("alice@example.org", [f"bob+mail{n}@localhost"], MESSAGE) == {}
        code, text = client.mail("alice@example.org")
        assert (code, text) == (452, b"4.5.3 Too many recipients: Too many messages sent")
        assert client.noop()[0] == 250  # the session goes on
    # a new session may send again
    with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT, timeout=10) as client:
        assert client.sendmail("alice@example.org", ["bob+mail2@localhost"], MESSAGE) == {}
    assert all(len(envelopes_for(d, f"bob+mail{n}@localhost")) == 1 for n in range(3))


def test_a_thousand_recipients(fast: tuple[Daemon, int]) -> None:
    d, port = fast
    rcpts = [f"bob+r{n}@localhost" for n in range(1000)]
    with Conversation.open("127.0.0.1", port) as c:
        c.reply()
        assert c.command(f"EHLO {CLIENT}")[0] == 250
        # pipelined, as a real client sends a big transaction
        c.send(
            b"MAIL FROM:<alice@example.org>\r\n"
            + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts)
            + b"RCPT TO:<bob+toomany@localhost>\r\nDATA\r\n"
        )
        assert c.reply()[0] == 250
        codes = [c.reply()[0] for _ in rcpts]
        assert codes == [250] * 1000
        assert c.reply()[0] == 452  # the 1001st: over the default max-rcpt 1000
        assert c.reply()[0] == 354
        c.send(MESSAGE + b".\r\n")
        code, text = c.reply()
        assert code == 250, text
    found = [e for e in envelopes(d) if str(e.rcpt).startswith("bob+r")]
    assert len(found) == 1000 and len({e.msgid for e in found}) == 1
    assert {str(e.rcpt) for e in found} == set(rcpts)


def test_line_limits(limited: tuple[Daemon, int]) -> None:
    d, port = limited
    with Conversation.open("127.0.0.1", port) as c:
        c.reply()
        assert c.command("NOOP " + "x" * 3000) == (500, "5.0.0 Command line too long")
        assert c.closed()
    with Conversation.open("127.0.0.1", port) as c:
        c.reply()
        c.command(f"EHLO {CLIENT}")
        c.command("MAIL FROM:<alice@example.org>")
        c.command("RCPT TO:<bob+longline@localhost>")
        assert c.command("DATA")[0] == 354
        c.send(b"Subject: long\r\n\r\n" + b"y" * 70000 + b"\r\n.\r\n")
        assert c.reply() == (500, "5.0.0 Line too long")
        assert c.closed()
    assert envelopes_for(d, "bob+longline@localhost") == []


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory of process ``pid`` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_does_not_grow_with_message_size(tmp_path: Path) -> None:
    [port] = free_ports(1)
    d = Daemon(tmp_path, config(port, "smtp max-message-size 100M"))
    d.start()
    try:
        assert d.process is not None
        # warm up: one small message, so that everything a message needs is loaded
        with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT, timeout=30) as client:
            client.sendmail("alice@example.org", ["bob+warm@localhost"], MESSAGE)
        before = vm_hwm_kib(d.process.pid)
        line = b"z" * 998 + b"\r\n"
        size = 24 << 20
        with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT, timeout=60) as client:
            client.ehlo(CLIENT)
            client.mail("alice@example.org")
            client.rcpt("bob+huge@localhost")
            client.putcmd("DATA")
            assert client.getreply()[0] == 354
            assert client.sock is not None
            client.sock.sendall(MESSAGE)
            chunk = line * 1024
            for _ in range(size // len(chunk)):
                client.sock.sendall(chunk)
            client.sock.sendall(b".\r\n")
            assert client.getreply()[0] == 250
        grown = vm_hwm_kib(d.process.pid) - before
    finally:
        d.stop()
    [env] = envelopes_for(d, "bob+huge@localhost")
    assert (d.spool / "queue").is_dir()
    assert grown < 8 * 1024, f"peak RSS grew by {grown} KiB for a {size >> 20} MiB message"
    assert env.msgid


# -- the command deadline ------------------------------------------------------------------------


def expect_timeout(c: Conversation, started: float) -> float:
    code, text = c.reply()
    elapsed = time.monotonic() - started
    assert (code, text) == (421, "4.4.2 Timeout, closing connection")
    assert c.closed()
    return elapsed


def test_silent_client_is_closed(fast: tuple[Daemon, int]) -> None:
    _, port = fast
    with Conversation.open("127.0.0.1", port, timeout=10) as c:
        c.reply()
        started = time.monotonic()
        elapsed = expect_timeout(c, started)
    assert COMMAND_DEADLINE * 0.8 <= elapsed < COMMAND_DEADLINE + 2


def test_dribbling_client_is_cut_at_the_deadline(fast: tuple[Daemon, int]) -> None:
    _, port = fast
    with Conversation.open("127.0.0.1", port, timeout=10) as c:
        c.reply()
        started = time.monotonic()
        # one byte every 0.2 s of a line that never ends: an idle timer never fires
        line = b"NOOP " + b"x" * 100
        sent = 0
        while time.monotonic() - started < COMMAND_DEADLINE + 3:
            readable, _, _ = select.select([c.sock], [], [], 0.2)
            if readable:
                break
            c.send(line[sent % len(line) : sent % len(line) + 1])
            sent += 1
        elapsed = expect_timeout(c, started)
    assert sent >= 3  # it did keep sending
    assert COMMAND_DEADLINE * 0.8 <= elapsed < COMMAND_DEADLINE + 1


def test_busy_client_is_not_cut(fast: tuple[Daemon, int]) -> None:
    _, port = fast
    with Conversation.open("127.0.0.1", port, timeout=10) as c:
        c.reply()
        started = time.monotonic()
        while time.monotonic() - started < COMMAND_DEADLINE * 2.5:
            assert c.command("NOOP")[0] == 250
            time.sleep(COMMAND_DEADLINE * 0.4)
        assert c.command("QUIT")[0] == 221


@pytest.mark.parametrize(
    ("which", "limit"), [("smtps", 60 * SCALE), ("proxy-v2", 30 * SCALE)], ids=["tls", "proxy"]
)
def test_silence_before_the_banner(
    fast: tuple[Daemon, int], fast_ports: list[int], which: str, limit: float
) -> None:
    """No TLS ClientHello on an smtps listener, no PROXY header on a proxy-v2 one:
    closed once the (scaled) handshake / header timeout passes, without a word."""
    port = fast_ports[1] if which == "smtps" else fast_ports[2]
    with Conversation.open("127.0.0.1", port, timeout=10) as c:
        started = time.monotonic()
        assert c.closed()
        elapsed = time.monotonic() - started
    assert limit * 0.8 <= elapsed < limit + 1.5


def test_one_disconnect_line_per_session(fast: tuple[Daemon, int], fast_ports: list[int]) -> None:
    d, port = fast
    with Conversation.open("127.0.0.1", port) as c:  # times out
        c.reply()
        assert c.reply()[0] == 421
    with Conversation.open("127.0.0.1", fast_ports[1]) as c:  # not TLS at all
        c.send(b"EHLO " + b"x" * 600 + b"\r\n")
        assert c.closed()
    ended = re.findall(r"^([0-9a-f]{16}) smtp disconnected reason=(\S+)", d.log(), re.M)
    reasons = {reason for _, reason in ended}
    assert {"timeout", "tls-accept-failed"} <= reasons
    sessions = [session for session, _ in ended]
    assert len(sessions) == len(set(sessions)), "a session logged its end twice"


def start_data(c: Conversation, rcpt: str) -> None:
    """Greeted, EHLO, MAIL, RCPT ``rcpt``, DATA: the next bytes are the message."""
    c.reply()
    c.command(f"EHLO {CLIENT}")
    assert c.command("MAIL FROM:<alice@example.org>")[0] == 250
    assert c.command(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.command("DATA")[0] == 354


def test_silence_inside_data(fast: tuple[Daemon, int]) -> None:
    d, port = fast
    with Conversation.open("127.0.0.1", port, timeout=10) as c:
        start_data(c, "bob+silent@localhost")
        c.send(b"Subject: half\r\n\r\nhalf a mess")
        started = time.monotonic()
        elapsed = expect_timeout(c, started)
    assert DATA_SILENCE * 0.8 <= elapsed < DATA_SILENCE + 2
    assert envelopes_for(d, "bob+silent@localhost") == []
    assert list((d.spool / "incoming").iterdir()) == []  # the transaction is gone


def test_dribbling_inside_data_is_cut_by_the_minimum_rate(fast: tuple[Daemon, int]) -> None:
    """A short line every 50 ms (of a data block timeout of 0.6 s): each line
    breaks the silence, but the rate is far below the minimum, so the client
    is cut after about one data block timeout, not after the whole DATA
    limit (3600 s scaled: 12 s)."""
    d, port = fast
    with Conversation.open("127.0.0.1", port, timeout=10) as c:
        start_data(c, "bob+dribble@localhost")
        started = time.monotonic()
        c.send(b"Subject: slow\r\n\r\n")
        while time.monotonic() - started < 3600 * SCALE:
            if select.select([c.sock], [], [], 0.05)[0]:
                break
            c.send(b"x\r\n")
        elapsed = expect_timeout(c, started)
    assert DATA_SILENCE * 0.8 <= elapsed < DATA_SILENCE + 2
    assert re.search(r"smtp timeout in DATA: \d+ bytes in [0-9.]+ s, slower than", d.log())
    assert envelopes_for(d, "bob+dribble@localhost") == []


def test_client_reset_during_data_leaves_nothing(fast: tuple[Daemon, int]) -> None:
    d, port = fast
    c = Conversation.open("127.0.0.1", port)
    try:
        c.reply()
        c.command(f"EHLO {CLIENT}")
        c.command("MAIL FROM:<alice@example.org>")
        assert c.command("RCPT TO:<bob+reset@localhost>")[0] == 250
        assert c.command("DATA")[0] == 354
        c.send(MESSAGE + (b"r" * 998 + b"\r\n") * 2048)  # 2 MB, no end
        ended = d.log().count("smtp disconnected")
        # an abortive close: RST instead of FIN
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        c.close()
    deadline = time.monotonic() + 5
    while d.log().count("smtp disconnected") == ended and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d.log().count("smtp disconnected") > ended
    assert list((d.spool / "incoming").rglob("*")) == []
    assert envelopes_for(d, "bob+reset@localhost") == []


# -- the session cap and the share of one client ------------------------------------------------

FD_LIMIT = 52


@pytest.fixture
def low_fd_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Daemons started from now on have 52 descriptors: a few sessions at most."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is not installed")
    monkeypatch.setattr(
        daemon_module,
        "MTA",
        [prlimit, f"--nofile={FD_LIMIT}:{FD_LIMIT}", sys.executable, "-m", "mta"],
    )


def session_cap(d: Daemon) -> int:
    found = re.search(r"mta: ready, (\d+) session\(s\) at most", d.log())
    assert found is not None
    cap = int(found.group(1))
    assert 2 <= cap <= 8, d.log()
    return cap


def test_session_cap(tmp_path: Path, low_fd_limit: None) -> None:
    [port] = free_ports(1)
    # no limit per client: this one client may fill the cap
    d = Daemon(tmp_path, config(port), env={"MTA_MAX_CONN_PER_CLIENT": "0"})
    d.start()
    opened: list[Conversation] = []
    try:
        assert "per client address unlimited" in d.log()
        cap = session_cap(d)
        for _ in range(cap):
            opened.append(Conversation.open("127.0.0.1", port, timeout=5))
            assert opened[-1].reply()[0] == 220
        waiting = Conversation.open("127.0.0.1", port, timeout=5)  # the kernel accepts it
        opened.append(waiting)
        # no banner while the sessions are all taken
        assert select.select([waiting.sock], [], [], 0.5)[0] == []
        assert d.log().count("smtp: session limit reached") == 1
        assert opened[0].command("QUIT")[0] == 221
        assert waiting.reply()[0] == 220  # served once a session ended
        # and it works under that limit
        waiting.command(f"EHLO {CLIENT}")
        assert waiting.command("MAIL FROM:<alice@example.org>")[0] == 250
        assert waiting.command("RCPT TO:<bob@localhost>")[0] == 250
        assert waiting.command("DATA")[0] == 354
        waiting.send(MESSAGE + b".\r\n")
        assert waiting.reply()[0] == 250
    finally:
        for c in opened:
            c.close()
        wait_log(d, "smtp: sessions below the limit again")
        d.stop()
    assert len(envelopes_for(d, "bob@localhost")) == 1
    log = d.log()
    assert log.count("smtp: session limit reached") == 1, log
    assert log.count("smtp: sessions below the limit again") == 1, log
    assert f"session limit reached: all {cap} sessions taken" in log


def wait_log(d: Daemon, text: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while text not in d.log() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_one_client_cannot_take_every_session(tmp_path: Path, low_fd_limit: None) -> None:
    """By default a loopback client holds half the sessions at most: the next
    connection is refused at once, and another client is still served."""
    [port] = free_ports(1)
    d = Daemon(tmp_path, config(port))
    d.start()
    opened: list[Conversation] = []
    try:
        cap = session_cap(d)
        for _ in range(cap // 2):
            opened.append(Conversation.open("127.0.0.1", port, timeout=5))
            assert opened[-1].reply()[0] == 220
        with Conversation.open("127.0.0.1", port, timeout=5) as over:
            code, text = over.reply()
            assert code == 421
            assert re.fullmatch(
                r"4\.7\.0 \S+ Too many connections from your address, try again later", text
            )
            assert over.closed()
        other = Conversation.open("127.0.0.1", port, timeout=5, source="127.0.0.2")
        opened.append(other)
        assert other.reply()[0] == 220
    finally:
        for c in opened:
            c.close()
        d.stop()
    assert re.search(
        r"smtp: too many connections from 127\.0\.0\.1 \(\d sessions, the most one client may"
        r" hold\): refused with 421",
        d.log(),
    )


def test_a_bad_limit_per_client_is_refused_at_start(tmp_path: Path) -> None:
    [port] = free_ports(1)
    d = Daemon(tmp_path, config(port), env={"MTA_MAX_CONN_PER_CLIENT": "lots"})
    with pytest.raises(RuntimeError, match="mta exited with 1"):
        d.start()
    assert d.log().strip() == (
        "mta: MTA_MAX_CONN_PER_CLIENT must be a whole number of sessions (0: no limit), not 'lots'"
    )

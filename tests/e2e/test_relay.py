"""End to end: one ``mta`` relays through another over loopback.

Instance A accepts mail for ``example.net`` and relays it to instance B's port
(a smarthost URL with an IP address: no DNS); B delivers it to a maildir.
Over STARTTLS with AUTH (certificates from a test CA, checked by A), in
plaintext, a recipient B refuses (a bounce back to A's local sender) and a B
that is down (the envelope stays queued with the error).
"""

from __future__ import annotations

import mailbox
import pathlib
import smtplib
import subprocess
import sys

import pytest

from mta.auth.hashes import make_hash
from tests.e2e.certs import Certs, make_certs
from tests.e2e.daemon import Daemon, free_port, has_mail, start, wait_for

USERS = 'table users { bob = "65534:65534:/nonexistent", alice = "65534:65534:/nonexistent" }'
MESSAGE = (
    b"From: alice@localhost\r\nTo: bob@example.net\r\nSubject: relayed\r\n\r\n"
    b"Hello through the relay.\r\n.a line with a dot\r\nLast line\r\n"
)
BODY = "Hello through the relay.\n.a line with a dot\nLast line\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def receiver(directory: pathlib.Path, shared: pathlib.Path, listen: str) -> tuple[Daemon, int]:
    """Instance B: delivers mail for example.net to maildirs under ``shared``."""
    directory.mkdir()
    return start(
        directory,
        f"""{USERS}
{listen}
action "local" maildir "{shared}/b/%{{user.username}}" userbase <users>
match from any for domain "example.net" action "local"
""",
    )


def sender(
    directory: pathlib.Path, shared: pathlib.Path, relay: str, prelude: str = ""
) -> tuple[Daemon, int]:
    """Instance A: relays everything but its own localhost mail with ``relay``."""
    directory.mkdir()
    return start(
        directory,
        f"""{USERS}
{prelude}
listen on 127.0.0.1 port PORT
action "local" maildir "{shared}/a/%{{user.username}}" userbase <users>
action "out" {relay}
match from any for domain "localhost" action "local"
match from any for any action "out"
""",
    )


def send(port: int, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail("alice@localhost", rcpts, MESSAGE) == {}


def relay_lines(d: Daemon) -> list[str]:
    return [line for line in d.log().splitlines() if " mta delivery " in line]


def test_relay_over_starttls_with_auth(
    tmp_path: pathlib.Path, shared: pathlib.Path, certs: Certs
) -> None:
    creds = tmp_path / "creds"
    creds.write_text(f"alice {make_hash('secret')}\n")
    b, port_b = receiver(
        tmp_path / "b",
        shared,
        f"""pki localhost cert "{certs.cert_file}"
pki localhost key "{certs.key_file}"
table creds file:{creds}
listen on 127.0.0.1 port PORT tls-require pki localhost auth <creds>""",
    )
    a, port_a = sender(
        tmp_path / "a",
        shared,
        f'relay host "smtp+tls://label@127.0.0.1:{port_b}" auth <secrets> ca testca',
        f"""ca testca cert "{certs.ca_file}"
table secrets {{ label = "alice:secret" }}""",
    )
    try:
        send(port_a, ["bob@example.net", "alice@example.net"])
        for user in ("bob", "alice"):
            wait_for(lambda user=user: has_mail(shared / "b" / user))  # type: ignore[misc]
            [message] = list(mailbox.Maildir(str(shared / "b" / user), create=False))
            assert message.get_payload() == BODY
            assert message["Subject"] == "relayed"
            assert message["Return-Path"] == "<alice@localhost>"
        wait_for(lambda: a.queued() == [])
        lines = relay_lines(a)
        assert len(lines) == 2 and all("result=Ok" in line for line in lines), a.log()
        assert 'relay="127.0.0.1 (127.0.0.1)"' in lines[0]
        assert 'source="127.0.0.1"' in lines[0]
        assert "mta tls ciphers=" in a.log()
        # one session, one transaction for both recipients
        assert a.log().count("mta connecting") == 1
        assert "smtp authentication user=alice result=ok" in b.log()
        assert "nrcpt=2" in b.log()
    finally:
        a.stop()
        b.stop()


def test_plain_relay(tmp_path: pathlib.Path, shared: pathlib.Path) -> None:
    b, port_b = receiver(tmp_path / "b", shared, "listen on 127.0.0.1 port PORT")
    a, port_a = sender(tmp_path / "a", shared, f'relay host "smtp://127.0.0.1:{port_b}"')
    try:
        send(port_a, ["bob@example.net"])
        wait_for(lambda: has_mail(shared / "b" / "bob"))
        [message] = list(mailbox.Maildir(str(shared / "b" / "bob"), create=False))
        assert message.get_payload() == BODY
        wait_for(lambda: a.queued() == [])
        [line] = relay_lines(a)
        assert "result=Ok" in line and "mta tls" not in a.log()
    finally:
        a.stop()
        b.stop()


def test_refused_recipient_bounces_to_the_local_sender(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    b, port_b = receiver(tmp_path / "b", shared, "listen on 127.0.0.1 port PORT")
    a, port_a = sender(tmp_path / "a", shared, f'relay host "smtp://127.0.0.1:{port_b}"')
    try:
        send(port_a, ["carol@other.test"])  # B does not relay for other.test: 550
        wait_for(lambda: has_mail(shared / "a" / "alice"))
        [bounce] = list(mailbox.Maildir(str(shared / "a" / "alice"), create=False))
        text = bounce.as_string()
        assert "Action: failed" in text and "carol@other.test" in text and "550" in text
        wait_for(lambda: a.queued() == [])
        [line] = relay_lines(a)
        assert "result=PermFail" in line
        assert not (shared / "b").exists() or not any((shared / "b").iterdir())
    finally:
        a.stop()
        b.stop()


def mtactl(daemon: Daemon, *args: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mta.cli.ctl import main; sys.exit(main())",
            "--spool",
            str(daemon.spool),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_remote_down_keeps_the_envelope_queued(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    port_b = free_port()  # nothing listens there
    a, port_a = sender(tmp_path / "a", shared, f'relay host "smtp://127.0.0.1:{port_b}"')
    try:
        send(port_a, ["bob@example.net"])
        wait_for(lambda: len(relay_lines(a)) == 1)
        [line] = relay_lines(a)
        assert "result=TempFail" in line and 'stat="' in line
        assert "Connection refused" in line, line
        assert len(a.queued()) == 1
        # the route is disabled for a while; the operator can see it and resume it
        routes = mtactl(a, "show", "routes")
        assert routes.startswith(f"127.0.0.1 port={port_b} source=- penalty=1 disabled="), routes
        assert 'error="Connection refused"' in routes
        assert mtactl(a, "resume", "route", "all") == "1 route(s) resumed\n"
        assert mtactl(a, "show", "routes") == ""
    finally:
        a.stop()


def test_a_message_over_the_remote_size_limit_bounces_without_mail_from(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    b, port_b = receiver(
        tmp_path / "b", shared, "smtp max-message-size 100\nlisten on 127.0.0.1 port PORT"
    )
    a, port_a = sender(tmp_path / "a", shared, f'relay host "smtp://127.0.0.1:{port_b}"')
    try:
        send(port_a, ["bob@example.net"])
        wait_for(lambda: has_mail(shared / "a" / "alice"))
        [bounce] = list(mailbox.Maildir(str(shared / "a" / "alice"), create=False))
        text = bounce.as_string()
        assert "Action: failed" in text and "5.3.4" in text and "too large" in text
        [line] = relay_lines(a)
        assert "result=PermFail" in line
        assert "MAIL FROM" not in b.log() and "smtp message" not in b.log()
    finally:
        a.stop()
        b.stop()


def test_the_next_message_reuses_the_open_session(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    b, port_b = receiver(tmp_path / "b", shared, "listen on 127.0.0.1 port PORT")
    a, port_a = sender(tmp_path / "a", shared, f'relay host "smtp://127.0.0.1:{port_b}"')
    try:
        send(port_a, ["bob@example.net"])
        wait_for(lambda: a.queued() == [])
        send(port_a, ["alice@example.net"])  # within the 10 s keep-alive
        wait_for(lambda: has_mail(shared / "b" / "alice"))
        wait_for(lambda: a.queued() == [])
        lines = relay_lines(a)
        assert len(lines) == 2 and all("result=Ok" in line for line in lines), a.log()
        assert a.log().count("mta connecting") == 1
        assert b.log().count("smtp message") == 2
        # stopping A: its idle session says QUIT rather than being cut
        assert a.stop() == 0
        assert "mta disconnected reason=quit messages=2" in a.log()
        wait_for(lambda: "smtp disconnected reason=quit" in b.log(), 5)
    finally:
        a.stop()
        b.stop()


def test_deferred_envelopes_go_as_soon_as_their_domain_takes_mail(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    # mta max-deferred: a message that found example.net unreachable is sent
    # again as soon as another one gets through, not at its next retry (400 s)
    port_b = free_port()
    a, port_a = sender(tmp_path / "a", shared, f'relay host "smtp://127.0.0.1:{port_b}"')
    b: Daemon | None = None
    try:
        send(port_a, ["bob@example.net"])
        wait_for(lambda: len(relay_lines(a)) == 1)
        [stat] = mtactl(a, "show", "hoststats").splitlines()
        name, _when, error = stat.split("|")
        assert (name, error) == ("example.net", "Connection refused")
        b, _ = receiver(tmp_path / "b", shared, f"listen on 127.0.0.1 port {port_b}")
        mtactl(a, "resume", "route", "all")
        send(port_a, ["alice@example.net"])
        wait_for(lambda: has_mail(shared / "b" / "alice") and has_mail(shared / "b" / "bob"))
        wait_for(lambda: a.queued() == [])
        [stat] = mtactl(a, "show", "hoststats").splitlines()
        assert stat.startswith("example.net|") and stat.endswith("Message accepted for delivery")
        bob = [line for line in relay_lines(a) if "to=<bob@example.net>" in line]
        assert "result=TempFail" in bob[0] and "result=Ok" in bob[-1]
        [host] = mtactl(a, "show", "hosts").splitlines()
        assert host.startswith("127.0.0.1 127.0.0.1 refcount=") and "lastconn=" in host, host
    finally:
        a.stop()
        if b is not None:
            b.stop()

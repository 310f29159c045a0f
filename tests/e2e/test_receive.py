"""End to end: the real daemon receiving mail from smtplib over loopback."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.auth.hashes import make_hash
from tests.e2e.certs import Certs, make_certs
from tests.e2e.daemon import Daemon, free_port

MESSAGE = b"From: alice@example.org\r\nTo: bob@localhost\r\nSubject: hi\r\n\r\nHello.\r\n"


def base_config(port: int, extra_listen: str = "", head: str = "", rules: str = "") -> str:
    return f"""
table users {{ bob = "65534:65534:/nonexistent", carol = "65534:65534:/nonexistent" }}
table aliases {{ postmaster = bob, team = "bob, carol" }}
{head}
listen on 127.0.0.1 port {port} {extra_listen}
action "local" maildir "/nonexistent/%{{user.username}}" alias <aliases> userbase <users>
action "out" relay
{rules}
match from any for domain "localhost" action "local"
match from local for any action "out"
"""


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def daemon(tmp_path: Path, port: int) -> Iterator[Daemon]:
    d = Daemon(tmp_path, base_config(port))
    d.start()
    yield d
    d.stop()


def messages(d: Daemon) -> list[bytes]:
    """The plain message files in the queue (no compression or encryption)."""
    return d.contents()


def test_accepts_and_queues(daemon: Daemon, port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        code, banner = client.ehlo("client.example")
        assert code == 250
        assert b"PIPELINING" in banner and b"8BITMIME" in banner
        refused = client.sendmail("alice@example.org", ["bob@localhost"], MESSAGE)
        assert refused == {}
    queued = messages(daemon)
    assert len(queued) == 1
    text = queued[0]
    assert text.startswith(b"Received: from client.example (")
    assert b"Hello.\r\n" in text
    assert "smtp message msgid=" in daemon.log()


def test_unknown_user_refused_at_rcpt(daemon: Daemon, port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example")
        client.mail("alice@example.org")
        code, text = client.rcpt("nobody@localhost")
        assert code == 550
        assert b"nobody@localhost" in text
        code, _ = client.rcpt("team@localhost")
        assert code == 250
    assert messages(daemon) == []


def test_alias_to_two_users_makes_two_envelopes(daemon: Daemon, port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@example.org", ["team@localhost"], MESSAGE)
    [msg] = daemon.queued()
    assert len(daemon.store().envelope_ids(int(msg.name, 16))) == 2


def test_too_big_at_mail_and_at_data(tmp_path: Path, port: int) -> None:
    d = Daemon(tmp_path, base_config(port, head="smtp max-message-size 2K"))
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("x.example")
            assert client.does_esmtp and client.esmtp_features["size"] == "2048"
            code, _ = client.mail("a@example.org", ["SIZE=5000"])
            assert code == 552
            client.rset()
            assert client.mail("a@example.org")[0] == 250  # no SIZE=: checked while streaming
            assert client.rcpt("bob@localhost")[0] == 250
            code, _ = client.data(MESSAGE + b"x" * 3000 + b"\r\n")
            assert code == 552
        assert messages(d) == []
    finally:
        d.stop()


def test_pipelined_transaction(daemon: Daemon, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        sock.sendall(
            b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@localhost>\r\n"
            b"RCPT TO:<nobody@localhost>\r\nDATA\r\n"
        )
        replies = [f.readline() for _ in range(4)]
        assert [r[:3] for r in replies] == [b"250", b"250", b"550", b"354"]
        sock.sendall(MESSAGE + b".\r\nQUIT\r\n")
        assert f.readline().startswith(b"250 2.0.0 ")
        assert f.readline().startswith(b"221 ")
    assert len(messages(daemon)) == 1


def test_smuggling_does_not_split_messages(daemon: Daemon, port: int) -> None:
    smuggled = (
        MESSAGE
        + b"\n.\nMAIL FROM:<evil@example.org>\nRCPT TO:<bob@localhost>\nDATA\nevil\n"
        + b"\r.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@example.org", ["bob@localhost"], smuggled)
    [text] = messages(daemon)
    assert b"MAIL FROM:<evil@example.org>\r\n" in text


# -- TLS and AUTH -----------------------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


def tls_config(port: int, certs: Certs, listen: str, head: str = "") -> str:
    creds = certs.ca_file.parent / "creds"
    creds.write_text(f"alice {make_hash('secret')}\n")
    pki = (
        f'pki localhost cert "{certs.cert_file}"\n'
        f'pki localhost key "{certs.key_file}"\n'
        f'ca testca cert "{certs.ca_file}"\n'
        f"table creds file:{creds}\n"
        f"{head}"
    )
    return base_config(port, extra_listen=listen, head=pki)


def test_starttls_then_auth(tmp_path: Path, port: int, certs: Certs) -> None:
    d = Daemon(tmp_path, tls_config(port, certs, "tls pki localhost auth <creds>"))
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            assert client.has_extn("starttls")
            assert not client.has_extn("auth")
            code, _ = client.mail("alice@example.org")
            assert code == 530  # auth required before MAIL
            client.rset()
            client.starttls(context=certs.client_context())
            client.ehlo("client.example")
            assert not client.has_extn("starttls")
            assert client.has_extn("auth")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
            client.login("alice", "secret")
            client.sendmail("alice@example.org", ["bob@localhost"], MESSAGE)
        [text] = messages(d)
        assert b"with ESMTPSA id" in text
        assert "authentication user=alice result=ok" in d.log()
    finally:
        d.stop()


def test_smtps_listener(tmp_path: Path, port: int, certs: Certs) -> None:
    d = Daemon(tmp_path, tls_config(port, certs, "smtps pki localhost"))
    d.start()
    try:
        with smtplib.SMTP_SSL(
            "127.0.0.1", port, timeout=10, context=certs.client_context()
        ) as client:
            client.sendmail("alice@example.org", ["bob@localhost"], MESSAGE)
        [text] = messages(d)
        assert b"with ESMTPS id" in text and b"TLSv1.3:" in text
    finally:
        d.stop()


def test_tls_require(tmp_path: Path, port: int, certs: Certs) -> None:
    d = Daemon(tmp_path, tls_config(port, certs, "tls-require pki localhost"))
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            code, text = client.mail("alice@example.org")
            assert code == 530 and b"STARTTLS" in text
            client.rset()
            client.starttls(context=certs.client_context())
            client.sendmail("alice@example.org", ["bob@localhost"], MESSAGE)
        assert len(messages(d)) == 1
    finally:
        d.stop()


def test_tls_require_verify_needs_a_client_certificate(
    tmp_path: Path, port: int, certs: Certs
) -> None:
    d = Daemon(tmp_path, tls_config(port, certs, "tls-require verify pki localhost ca testca"))
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, OSError)):
                client.starttls(context=certs.client_context())
                client.ehlo("client.example")
                client.mail("alice@example.org")
        context = certs.client_context()
        context.load_cert_chain(str(certs.client_file))
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.starttls(context=context)
            client.sendmail("alice@example.org", ["bob@localhost"], MESSAGE)
        assert len(messages(d)) == 1
    finally:
        d.stop()

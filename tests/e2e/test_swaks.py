"""End to end with ``swaks``, a real SMTP client: PIPELINING, STARTTLS with a
verified certificate, AUTH PLAIN and LOGIN, TLS on connect (smtps), a PROXY v2
header, the local socket, and 8-bit / SMTPUTF8 messages (the latter with
smtplib, which can send the ``SMTPUTF8`` parameter)."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from collections.abc import Iterator

import pytest

from mta.auth.hashes import make_hash
from mta.envelope import Body, EnvelopeFlag
from tests.e2e.certs import Certs, make_certs
from tests.e2e.daemon import Daemon
from tests.e2e.test_listeners import (
    CLIENT,
    Conversation,
    envelopes_for,
    free_ports,
    received_of,
    the_message,
)

SWAKS = shutil.which("swaks")
pytestmark = pytest.mark.skipif(SWAKS is None, reason="swaks is not installed")


class Ports:
    def __init__(self) -> None:
        self.plain, self.tls, self.smtps, self.proxy = free_ports(4)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports()


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, ports: Ports, certs: Certs
) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("swaks")
    creds = directory / "creds"
    creds.write_text(f"alice {make_hash('secret')}\n")
    config = f"""
table users {{ bob = "65534:65534:/nonexistent", carol = "65534:65534:/nonexistent" }}
table aliases {{ "bøb" = bob }}
table creds file:{creds}
pki localhost cert "{certs.cert_file}"
pki localhost key "{certs.key_file}"
listen on 127.0.0.1 port {ports.plain}
listen on 127.0.0.1 port {ports.tls} tls pki localhost auth <creds>
listen on 127.0.0.1 port {ports.smtps} smtps pki localhost
listen on 127.0.0.1 port {ports.proxy} proxy-v2
action "local" maildir "/nonexistent/%{{user.username}}" alias <aliases> userbase <users>
action "out" relay
match from any for domain "localhost" action "local"
match from local for any action "out"
"""
    d = Daemon(directory, config)
    d.start()
    yield d
    d.stop()


def swaks(*args: str, expect: int = 0) -> str:
    assert SWAKS is not None
    result = subprocess.run(
        [SWAKS, "--helo", CLIENT, "--from", "alice@example.org", "--timeout", "10", *args],
        capture_output=True,
        timeout=30,
        check=False,
    )
    output = result.stdout.decode("utf-8", "replace") + result.stderr.decode("utf-8", "replace")
    assert result.returncode == expect, output
    return output


def test_pipeline(daemon: Daemon, ports: Ports) -> None:
    out = swaks("--server", f"127.0.0.1:{ports.plain}", "--pipeline", "--to", "bob+pipe@localhost")
    assert "<-  250-PIPELINING" in out
    # MAIL, RCPT and DATA went out together, before any of their replies
    sent = out.index(" -> MAIL FROM:<alice@example.org>")
    assert out.index(" -> RCPT TO:<bob+pipe@localhost>") > sent
    assert out.index(" -> DATA") < out.index("<-  250 2.0.0 Ok")
    assert "<-  250 2.0.0 " in out and "Message accepted for delivery" in out
    _, msg = the_message(daemon, "bob+pipe@localhost")
    assert received_of(msg).startswith(f"Received: from {CLIENT} (<unknown> [127.0.0.1])")
    assert b"\r\nX-Mailer: swaks " in msg


def test_pipeline_with_a_refused_recipient(daemon: Daemon, ports: Ports) -> None:
    out = swaks(
        "--server",
        f"127.0.0.1:{ports.plain}",
        "--pipeline",
        "--to",
        "bob+pipe2@localhost,nobody@localhost",
    )
    assert "<** 550 5.1.1 Invalid recipient: <nobody@localhost>" in out
    assert len(envelopes_for(daemon, "bob+pipe2@localhost")) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_and_auth(daemon: Daemon, ports: Ports, certs: Certs, mechanism: str) -> None:
    rcpt = f"bob+{mechanism.lower()}@localhost"
    out = swaks(
        "--server",
        f"localhost:{ports.tls}",
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        str(certs.ca_file),
        "--auth",
        mechanism,
        "--auth-user",
        "alice",
        "--auth-password",
        "secret",
        "--to",
        rcpt,
    )
    assert "<-  220 2.0.0 Ready to start TLS" in out
    assert "~> AUTH" in out and "<~  235 2.0.0 Authentication succeeded" in out
    env, msg = the_message(daemon, rcpt)
    assert env.username == "alice" and EnvelopeFlag.AUTHENTICATED in env.flags
    assert "with ESMTPSA id" in received_of(msg)


def test_auth_refused(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    out = swaks(
        "--server",
        f"localhost:{ports.tls}",
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "wrong",
        "--to",
        "bob+refused@localhost",
        expect=28,  # swaks: authentication failed
    )
    assert "<~* 535 5.7.8 Authentication failed" in out
    assert envelopes_for(daemon, "bob+refused@localhost") == []


def test_auth_needs_tls(daemon: Daemon, ports: Ports) -> None:
    out = swaks(
        "--server",
        f"localhost:{ports.tls}",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "secret",
        "--to",
        "bob+notls@localhost",
        expect=28,  # AUTH is not offered before STARTTLS
    )
    assert "AUTH" not in out.split("<-  250-STARTTLS")[0].split("EHLO")[-1]


def test_tls_on_connect(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    out = swaks(
        "--server",
        f"localhost:{ports.smtps}",
        "--tls-on-connect",
        "--tls-verify",
        "--tls-ca-path",
        str(certs.ca_file),
        "--to",
        "bob+smtps@localhost",
    )
    assert "=== TLS started with cipher TLSv1.3" in out
    _, msg = the_message(daemon, "bob+smtps@localhost")
    assert "with ESMTPS id" in received_of(msg)


def test_proxy_v2(daemon: Daemon, ports: Ports) -> None:
    swaks(
        "--server",
        f"127.0.0.1:{ports.proxy}",
        "--proxy-version",
        "2",
        "--proxy-family",
        "AF_INET",
        "--proxy-source",
        "192.0.2.77",
        "--proxy-source-port",
        "40000",
        "--proxy-dest",
        "192.0.2.25",
        "--proxy-dest-port",
        "25",
        "--to",
        "bob+proxy@localhost",
    )
    env, msg = the_message(daemon, "bob+proxy@localhost")
    assert env.sockaddr == "192.0.2.77"
    assert received_of(msg).startswith(f"Received: from {CLIENT} (<unknown> [192.0.2.77])")


def test_local_socket(daemon: Daemon) -> None:
    swaks("--socket", str(daemon.spool / "enqueue.sock"), "--to", "someone@example.net")
    env, msg = the_message(daemon, "someone@example.net")
    assert env.sockaddr == "local" and env.dispatcher == "out"
    assert " [local])\r\n" in received_of(msg)


def test_8bit_body(daemon: Daemon, ports: Ports) -> None:
    body = "Grüße, ça va? 日本語"
    swaks(
        "--server",
        f"127.0.0.1:{ports.plain}",
        "--to",
        "bob+8bit@localhost",
        "--add-header",
        "Content-Type: text/plain; charset=utf-8",
        "--body",
        body,
    )
    _, msg = the_message(daemon, "bob+8bit@localhost")
    assert body.encode("utf-8") in msg  # every byte kept


def test_smtputf8(daemon: Daemon, ports: Ports) -> None:
    message = (
        "From: Ålice <ålice@exämple.org>\r\nTo: bøb@localhost\r\nSubject: héllo\r\n\r\nGrüße\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", ports.plain, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        assert client.has_extn("smtputf8") and client.has_extn("8bitmime")
        refused = client.sendmail(
            "ålice@exämple.org",
            ["bøb@localhost"],
            message,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
        assert refused == {}
    env, msg = the_message(daemon, "bøb@localhost")
    assert env.smtputf8 and env.body is Body.EIGHTBITMIME
    assert str(env.sender) == "ålice@exämple.org"
    assert env.mda_user == "bob"
    assert message.split(b"\r\n\r\n")[1] in msg and "Subject: héllo".encode() in msg
    # without SMTPUTF8 a UTF-8 address is refused
    with Conversation.open("127.0.0.1", ports.plain) as c:
        c.reply()
        c.command(f"EHLO {CLIENT}")
        code, text = c.command("MAIL FROM:<ålice@exämple.org>")
        assert (code, text) == (553, "5.6.7 Non-ASCII addresses require SMTPUTF8")
        assert c.command("MAIL FROM:<alice@example.org>")[0] == 250
        code, _ = c.command("RCPT TO:<bøb@localhost>")
        assert code == 553

"""End to end: the TLS and AUTH options of ``listen on`` over loopback.

Several ``pki`` on one listener chosen by SNI, ``protocols``, ``ciphers``,
``auth <table>`` with ``received-auth`` and ``senders``, ``auth-optional``
with ``senders ... masquerade``, and ``auth`` without a table (system users,
with a throwaway account: root only).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509

from mta.auth.hashes import make_hash
from mta.envelope import EnvelopeFlag
from tests.e2e.certs import Certs, make_certs
from tests.e2e.daemon import Daemon
from tests.e2e.test_listeners import (
    CLIENT,
    MESSAGE,
    USERS,
    Conversation,
    free_ports,
    proxy_header,
    received_of,
    the_message,
)


class Ports:
    def __init__(self) -> None:
        (
            self.sni,
            self.tls13,
            self.ciphers,
            self.auth,
            self.optional,
            self.verify,
            self.proxied,
        ) = free_ports(7)


MTACTL = [sys.executable, "-c", "import sys; from mta.cli.ctl import main; sys.exit(main())"]
CHACHA = "ECDHE-ECDSA-CHACHA20-POLY1305"
AES128 = "ECDHE-ECDSA-AES128-GCM-SHA256"


def tls_config(p: Ports, certs: Certs, creds: Path) -> str:
    return f"""
{USERS}
pki localhost cert "{certs.cert_file}"
pki localhost key "{certs.key_file}"
pki other cert "{certs.other_cert_file}"
pki other key "{certs.other_key_file}"
ca testca cert "{certs.ca_file}"
table creds file:{creds}
table sendtab {{ alice = "alice@example.org, @alice.test", carol = "carol@example.org", \
dave = "dave@example.org" }}
listen on 127.0.0.1 port {p.sni} tls pki localhost pki other
listen on 127.0.0.1 port {p.tls13} smtps pki localhost protocols "tlsv1.3"
listen on 127.0.0.1 port {p.ciphers} tls pki localhost ciphers "{CHACHA}"
listen on 127.0.0.1 port {p.auth} tls pki localhost auth <creds> received-auth senders <sendtab>
listen on 127.0.0.1 port {p.optional} tls pki localhost auth-optional <creds> \
senders <sendtab> masquerade received-auth
listen on 127.0.0.1 port {p.verify} smtps verify pki localhost ca testca
listen on 127.0.0.1 port {p.proxied} smtps pki localhost proxy-v2
action "local" maildir "/nonexistent/%{{user.username}}" userbase <users>
action "out" relay
match from any for domain "localhost" action "local"
match from local for any action "out"
"""


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
    directory = tmp_path_factory.mktemp("tls")
    creds = directory / "creds"
    # SHA-512 crypt as "smtpctl encrypt" makes on Linux, bcrypt as it makes on OpenBSD
    encrypted = subprocess.run(
        [*MTACTL, "encrypt", "carolpw"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert encrypted.startswith("$6$")
    dave = bcrypt.hashpw(b"davepw", bcrypt.gensalt(rounds=4)).decode()
    creds.write_text(f"alice {make_hash('secret')}\ncarol {encrypted}\ndave {dave}\n")
    d = Daemon(directory, tls_config(ports, certs, creds))
    d.start()
    yield d
    d.stop()


def starttls(c: Conversation, context: ssl.SSLContext, name: str | None) -> Conversation:
    """EHLO, STARTTLS, handshake (SNI ``name``): the conversation inside TLS."""
    c.reply()
    assert c.command(f"EHLO {CLIENT}")[0] == 250
    assert c.command("STARTTLS") == (220, "2.0.0 Ready to start TLS")
    tls = context.wrap_socket(c.sock, server_hostname=name)
    return Conversation(tls)


def peer_names(conv: Conversation) -> list[str]:
    assert isinstance(conv.sock, ssl.SSLSocket)
    der = conv.sock.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


# -- pki chosen by SNI ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sni", "expected"),
    [
        ("mail.example.test", ["mail.example.test"]),
        ("localhost", ["localhost"]),
        (None, ["localhost"]),  # no SNI: the first pki
        ("unknown.example.test", ["localhost"]),  # no certificate names it: the first pki
    ],
)
def test_pki_chosen_by_sni(
    daemon: Daemon, ports: Ports, certs: Certs, sni: str | None, expected: list[str]
) -> None:
    context = certs.client_context()
    if sni is None or sni.startswith("unknown"):
        context.check_hostname = False  # the first certificate does not name it
    with Conversation.open("127.0.0.1", ports.sni) as c:
        tls = starttls(c, context, sni)
        assert peer_names(tls) == expected
        code, text = tls.command(f"EHLO {CLIENT}")
        assert code == 250 and "STARTTLS" not in text
        tls.command("QUIT")
        tls.close()


def test_plaintext_after_starttls_is_not_executed(
    daemon: Daemon, ports: Ports, certs: Certs
) -> None:
    """RFC 3207: commands sent with STARTTLS before the handshake must not run
    inside TLS (the STARTTLS command injection attack)."""
    with Conversation.open("127.0.0.1", ports.sni) as c:
        c.reply()
        c.command(f"EHLO {CLIENT}")
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
        code, _ = c.reply()
        if code != 220:
            return  # refused outright: nothing runs either
        try:
            tls = Conversation(
                certs.client_context().wrap_socket(c.sock, server_hostname="localhost")
            )
        except (ssl.SSLError, ConnectionError):
            # the server closed the session instead: fine as well
            assert "smtp disconnected reason=starttls-injection" in daemon.log()
            return
        code, text = tls.command(f"EHLO {CLIENT}")
        assert code == 250 and f"Hello {CLIENT} [127.0.0.1]" in text  # EHLO's, not MAIL's
        assert tls.command("MAIL FROM:<alice@example.org>")[0] == 250  # no MAIL was pending
        tls.command("QUIT")
        tls.close()


# -- protocols and ciphers -------------------------------------------------------------------


def test_protocols_tlsv13_refuses_a_tls12_client(
    daemon: Daemon, ports: Ports, certs: Certs
) -> None:
    old = certs.client_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError)),
        smtplib.SMTP_SSL("127.0.0.1", ports.tls13, timeout=10, context=old),
    ):
        pass
    with smtplib.SMTP_SSL(
        "127.0.0.1", ports.tls13, local_hostname=CLIENT, timeout=10, context=certs.client_context()
    ) as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() == "TLSv1.3"
        client.sendmail("alice@example.org", ["bob+tls13@localhost"], MESSAGE)
    _, msg = the_message(daemon, "bob+tls13@localhost")
    assert "with ESMTPS id" in received_of(msg) and " (TLSv1.3:TLS_" in received_of(msg)
    assert "smtp disconnected reason=tls-accept-failed" in daemon.log()


def test_ciphers(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    only_aes = certs.client_context()
    only_aes.maximum_version = ssl.TLSVersion.TLSv1_2
    only_aes.set_ciphers(AES128)
    with Conversation.open("127.0.0.1", ports.ciphers) as c, pytest.raises(ssl.SSLError):
        starttls(c, only_aes, "localhost")
    both = certs.client_context()
    both.maximum_version = ssl.TLSVersion.TLSv1_2
    both.set_ciphers(f"{AES128}:{CHACHA}")
    with smtplib.SMTP("localhost", ports.ciphers, local_hostname=CLIENT, timeout=10) as client:
        client.starttls(context=both)
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.cipher()[0] == CHACHA  # type: ignore[index]
        client.sendmail("alice@example.org", ["bob+cipher@localhost"], MESSAGE)
    _, msg = the_message(daemon, "bob+cipher@localhost")
    assert f" (TLSv1.2:{CHACHA}:256:NO)" in received_of(msg)


def test_smtps_verify(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    with (
        pytest.raises((ssl.SSLError, ConnectionError, smtplib.SMTPServerDisconnected)),
        smtplib.SMTP_SSL(
            "localhost", ports.verify, timeout=10, context=certs.client_context()
        ) as client,
    ):
        client.ehlo(CLIENT)  # TLS 1.3: the refusal may only show on the first read
    context = certs.client_context()
    context.load_cert_chain(str(certs.client_file))
    with smtplib.SMTP_SSL(
        "localhost", ports.verify, local_hostname=CLIENT, timeout=10, context=context
    ) as client:
        client.sendmail("alice@example.org", ["bob+verified@localhost"], MESSAGE)
    _, msg = the_message(daemon, "bob+verified@localhost")
    assert ":YES)\r\n\tfor <bob+verified@localhost>" in received_of(msg)


def test_proxy_v2_then_tls_in_one_segment(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    """A proxy forwards the client's ClientHello right behind its PROXY header:
    the TLS handshake must see those bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    with Conversation.open("127.0.0.1", ports.proxied) as c:
        c.send(proxy_header("192.0.2.99", "192.0.2.25") + hello)
        c.sock.settimeout(5)

        def pump() -> bytes:
            """Handshake (then read) through the socket; the decrypted bytes."""
            while True:
                try:
                    if tls.version() is None:
                        tls.do_handshake()
                        continue
                    return tls.read(4096)
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        c.sock.sendall(outgoing.read())
                    data = c.sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed during the handshake") from None
                    incoming.write(data)

        banner = pump()
        assert banner.startswith(b"220 ")
        tls.write(f"EHLO {CLIENT}\r\n".encode())
        c.sock.sendall(outgoing.read())
        reply = b""
        while b"\r\n250 " not in reply:
            reply += pump()
        assert f"Hello {CLIENT} [192.0.2.99],".encode() in reply


# -- auth, received-auth, senders ----------------------------------------------------------------


def tls_client(port: int, certs: Certs) -> smtplib.SMTP:
    client = smtplib.SMTP("localhost", port, local_hostname=CLIENT, timeout=10)
    client.starttls(context=certs.client_context())
    client.ehlo(CLIENT)
    return client


def test_auth_with_senders_and_received_auth(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    with tls_client(ports.auth, certs) as client:
        assert client.has_extn("auth")
        assert client.mail("alice@example.org")[0] == 530  # auth required
        client.rset()
        client.login("alice", "secret")
        code, text = client.mail("mallory@example.org")
        assert (code, text) == (530, b"5.7.0 Sender rejected")
        client.rset()
        assert client.mail("<>")[0] == 530  # the null sender is no address of hers
        client.rset()
        assert client.mail("anything@alice.test")[0] == 250  # "@alice.test": the whole domain
        client.rset()
        message = b"From: Someone <someone@elsewhere.example>\r\nSubject: s\r\n\r\nbody\r\n"
        assert client.sendmail("alice@example.org", ["bob+auth@localhost"], message) == {}
    env, msg = the_message(daemon, "bob+auth@localhost")
    assert env.username == "alice" and EnvelopeFlag.AUTHENTICATED in env.flags
    received = received_of(msg)
    assert "with ESMTPSA id" in received
    assert ":NO) auth=yes user=alice\r\n\tfor <bob+auth@localhost>;" in received
    # no masquerade on this listener: From: is left alone
    assert b"\r\nFrom: Someone <someone@elsewhere.example>\r\n" in msg
    # the command line as the client sent it (smtplib writes "mail FROM:")
    assert 'smtp failed-command command="mail FROM:<mallory@example.org>"' in daemon.log()


def test_senders_per_user_and_unknown_user(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    with tls_client(ports.auth, certs) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("mallory", "secret")  # not in the credentials table
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("carol", "secret")  # alice's password
        client.login("carol", "carolpw")
        assert client.mail("alice@example.org")[0] == 530  # alice's, not carol's
        client.rset()
        assert client.mail("carol@example.org")[0] == 250


def test_auth_optional_and_masquerade(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    with smtplib.SMTP("localhost", ports.optional, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        assert not client.has_extn("auth")  # only offered inside TLS
        assert client.mail("anyone@example.org")[0] == 250  # optional: no AUTH needed
        client.rset()
        client.starttls(context=certs.client_context())
        client.ehlo(CLIENT)
        assert client.has_extn("auth")
        message = b"From: Anyone <anyone@example.org>\r\nSubject: s\r\n\r\nbody\r\n"
        # not authenticated: no senders check, no masquerading
        assert client.sendmail("anyone@example.org", ["bob+anon@localhost"], message) == {}
    env, msg = the_message(daemon, "bob+anon@localhost")
    assert env.username == "" and EnvelopeFlag.AUTHENTICATED not in env.flags
    assert ":NO) auth=no\r\n\tfor <bob+anon@localhost>;" in received_of(msg)
    assert b"\r\nFrom: Anyone <anyone@example.org>\r\n" in msg

    with tls_client(ports.optional, certs) as client:
        client.login("alice", "secret")
        assert client.mail("anyone@example.org")[0] == 530  # authenticated: senders applies
        client.rset()
        message = b"From: Someone <someone@elsewhere.example>\r\nSubject: s\r\n\r\nbody\r\n"
        assert client.sendmail("alice@alice.test", ["bob+masq@localhost"], message) == {}
    _, msg = the_message(daemon, "bob+masq@localhost")
    assert "auth=yes user=alice" in received_of(msg)
    assert b"\r\nFrom: Someone <alice@alice.test>\r\n" in msg  # the envelope sender
    assert b"someone@elsewhere.example" not in msg


def test_bcrypt_credentials(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    with (
        tls_client(ports.optional, certs) as client,
        pytest.raises(smtplib.SMTPAuthenticationError),
    ):
        client.login("dave", "carolpw")
    with tls_client(ports.optional, certs) as client:
        client.login("dave", "davepw")
        assert client.sendmail("dave@example.org", ["bob+bcrypt@localhost"], MESSAGE) == {}
    env, _ = the_message(daemon, "bob+bcrypt@localhost")
    assert env.username == "dave"


# -- auth without a table: system users ----------------------------------------------------------


@pytest.fixture
def system_user() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("creating a system user needs root")
    if not (shutil.which("useradd") and shutil.which("chpasswd") and shutil.which("userdel")):
        pytest.skip("useradd/chpasswd/userdel are not installed")
    name = f"mtat{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    subprocess.run(
        ["useradd", "-M", "-N", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            ["chpasswd"], input=f"{name}:{password}\n".encode(), check=True, capture_output=True
        )
        yield name, password
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["userdel", name], check=True, capture_output=True)


def test_auth_with_system_users(tmp_path: Path, certs: Certs, system_user: tuple[str, str]) -> None:
    name, password = system_user
    [port] = free_ports(1)
    config = f"""
{USERS}
pki localhost cert "{certs.cert_file}"
pki localhost key "{certs.key_file}"
listen on 127.0.0.1 port {port} tls-require pki localhost auth received-auth
action "local" maildir "/nonexistent/%{{user.username}}" userbase <users>
match from any for domain "localhost" action "local"
"""
    d = Daemon(tmp_path, config)
    d.start()
    try:
        with tls_client(port, certs) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login(name, password + "x")
            client.login(name, password)
            assert client.sendmail("alice@example.org", ["bob@localhost"], MESSAGE) == {}
        env, msg = the_message(d, "bob@localhost")
        assert env.username == name
        assert f"auth=yes user={name}" in received_of(msg)
        assert f"smtp authentication user={name} result=permfail" in d.log()
        assert f"smtp authentication user={name} result=ok" in d.log()
    finally:
        d.stop()

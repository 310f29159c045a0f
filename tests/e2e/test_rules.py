"""End to end: ``match`` rules decided at RCPT time, over loopback.

Reverse DNS comes from the test DNS server (tests/net/dnsserver.py, in a
thread of its own) that ``MTA_DNS`` points the daemon to: 127.0.0.1 and
127.0.0.2 have names, 127.0.0.3 has none, and the client picks its source
address to be each of them.  Also: ``match auth``, ``mail-from``, ``rcpt-to
regex``, ``tls``, ``reject`` rules, first match wins, no match is 550, and a
``.forward`` file expanded into new recipients matched as local.
"""

from __future__ import annotations

import os
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mta.auth.hashes import make_hash
from mta.envelope import EnvelopeFlag, EnvelopeKind
from tests.e2e.certs import Certs, make_certs
from tests.e2e.daemon import Daemon
from tests.e2e.test_limits import config as plain_config
from tests.e2e.test_listeners import (
    CLIENT,
    MESSAGE,
    Conversation,
    envelopes_for,
    free_ports,
    message_of,
    received_of,
    the_message,
)
from tests.net.dnsserver import DnsServer

NOBODY = 65534


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    """The test DNS server, running in its own thread and trio loop."""
    server = DnsServer("127.0.0.1")
    server.add("1.0.0.127.in-addr.arpa", "PTR", "good.example.test.")
    server.add("good.example.test", "A", "127.0.0.1")
    server.add("2.0.0.127.in-addr.arpa", "PTR", "other.example.test.")
    server.add("other.example.test", "A", "127.0.0.2")
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        state["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            state["scope"] = nursery.cancel_scope
            await nursery.start(server.serve)
            ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield server
    scope = state["scope"]
    assert isinstance(scope, trio.CancelScope)
    trio.from_thread.run_sync(scope.cancel, trio_token=state["token"])  # type: ignore[arg-type]
    thread.join(10)


class Ports:
    def __init__(self) -> None:
        self.plain, self.tls = free_ports(2)


def rules_config(p: Ports, certs: Certs, directory: Path) -> str:
    creds = directory / "creds"
    creds.write_text(f"alice {make_hash('secret')}\n")
    home = directory / "home" / "dave"
    return f"""
table users {{ bob = "{NOBODY}:{NOBODY}:/nonexistent", carol = "{NOBODY}:{NOBODY}:/nonexistent", \
dave = "{NOBODY}:{NOBODY}:{home}" }}
table goodnames {{ "good.example.test" }}
table senderok {{ "alice@example.org" }}
table rx {{ "^bob\\+.*@regex\\.test$" }}
table creds file:{creds}
pki localhost cert "{certs.cert_file}"
pki localhost key "{certs.key_file}"
listen on 127.0.0.1 port {p.plain}
listen on 127.0.0.1 port {p.tls} tls pki localhost auth-optional <creds>
action "local" maildir "/nonexistent/%{{user.username}}" userbase <users>
action "out" relay
match from any for domain "rejected.test" reject
match from rdns for domain "rdns.test" action "local"
match from rdns <goodnames> for domain "rdnstable.test" action "local"
match !from rdns for domain "nordns.test" action "local"
match from any auth for domain "auth.test" action "local"
match from any mail-from <senderok> for domain "mailfrom.test" action "local"
match from any for rcpt-to regex <rx> action "local"
match from any tls for domain "tls.test" action "local"
match from src 127.0.0.2 for domain "localhost" reject
match from any for domain "localhost" action "local"
match from local for domain "example.net" action "out"
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports()


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, ports: Ports, certs: Certs, dns: DnsServer
) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("rules")
    # dave's .forward: safe ownership and modes, as read_forward demands
    home = directory / "home" / "dave"
    home.mkdir(parents=True)
    os.chmod(directory / "home", 0o755)
    forward = home / ".forward"
    forward.write_text("# dave forwards\ncarol, someone@example.net\n")
    forward.chmod(0o644)
    if os.geteuid() == 0:
        os.chown(home, NOBODY, NOBODY)
        os.chown(forward, NOBODY, NOBODY)
    d = Daemon(
        directory,
        rules_config(ports, certs, directory),
        env={"MTA_DNS": f"{dns.host}:{dns.port}"},
    )
    d.start()
    yield d
    d.stop()


def rcpt_codes(
    port: int, sender: str, rcpts: list[str], source: str = "127.0.0.1"
) -> dict[str, int]:
    with smtplib.SMTP(
        "127.0.0.1", port, local_hostname=CLIENT, timeout=10, source_address=(source, 0)
    ) as client:
        client.ehlo(CLIENT)
        assert client.mail(sender)[0] == 250
        return {rcpt: client.rcpt(rcpt)[0] for rcpt in rcpts}


def test_from_rdns(daemon: Daemon, ports: Ports) -> None:
    rcpts = ["bob@rdns.test", "bob@rdnstable.test", "bob@nordns.test"]
    by_source = {
        source: rcpt_codes(ports.plain, "alice@example.org", rcpts, source)
        for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    }
    assert by_source == {
        "127.0.0.1": {"bob@rdns.test": 250, "bob@rdnstable.test": 250, "bob@nordns.test": 550},
        "127.0.0.2": {"bob@rdns.test": 250, "bob@rdnstable.test": 550, "bob@nordns.test": 550},
        "127.0.0.3": {"bob@rdns.test": 550, "bob@rdnstable.test": 550, "bob@nordns.test": 250},
    }
    log = daemon.log()
    assert "smtp connected address=127.0.0.1 host=good.example.test" in log
    assert "smtp connected address=127.0.0.2 host=other.example.test" in log
    assert "smtp connected address=127.0.0.3 host=<unknown>" in log


def test_rdns_name_in_received_and_envelope(daemon: Daemon, ports: Ports) -> None:
    with smtplib.SMTP("127.0.0.1", ports.plain, local_hostname=CLIENT, timeout=10) as client:
        client.sendmail("alice@example.org", ["bob@rdns.test"], MESSAGE)
    env, msg = the_message(daemon, "bob@rdns.test")
    assert env.hostname == "good.example.test"
    assert received_of(msg).startswith(
        f"Received: from {CLIENT} (good.example.test [127.0.0.1])\r\n"
    )


def test_mail_from_rcpt_to_regex_reject_and_no_match(daemon: Daemon, ports: Ports) -> None:
    codes = rcpt_codes(
        ports.plain,
        "alice@example.org",
        [
            "bob@mailfrom.test",
            "bob+x@regex.test",
            "bob@regex.test",  # the regex wants a sub-address
            "bob@rejected.test",
            "bob@nomatch.test",
            "bob@localhost",
        ],
    )
    assert codes == {
        "bob@mailfrom.test": 250,
        "bob+x@regex.test": 250,
        "bob@regex.test": 550,
        "bob@rejected.test": 550,
        "bob@nomatch.test": 550,
        "bob@localhost": 250,
    }
    assert rcpt_codes(ports.plain, "mallory@example.org", ["bob@mailfrom.test"]) == {
        "bob@mailfrom.test": 550
    }
    # first match wins: the reject rule for 127.0.0.2 comes before the accepting one
    assert rcpt_codes(ports.plain, "a@example.org", ["bob@localhost"], "127.0.0.2") == {
        "bob@localhost": 550
    }


def test_reject_reply_names_the_recipient(daemon: Daemon, ports: Ports) -> None:
    with smtplib.SMTP("127.0.0.1", ports.plain, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        client.mail("alice@example.org")
        code, text = client.rcpt("bob@nomatch.test")
        assert code == 550 and text.endswith(b"<bob@nomatch.test>")
        code, text = client.rcpt("bob@rejected.test")
        assert code == 550 and text.endswith(b"<bob@rejected.test>")


def test_match_tls_and_auth(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    with smtplib.SMTP("localhost", ports.tls, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        client.mail("alice@example.org")
        assert client.rcpt("bob@tls.test")[0] == 550
        assert client.rcpt("bob@auth.test")[0] == 550
        client.rset()
        client.starttls(context=certs.client_context())
        client.ehlo(CLIENT)
        client.mail("alice@example.org")
        assert client.rcpt("bob@tls.test")[0] == 250
        assert client.rcpt("bob@auth.test")[0] == 550
        client.rset()
        client.login("alice", "secret")
        client.mail("alice@example.org")
        assert client.rcpt("bob@auth.test")[0] == 250
        assert client.rcpt("bob@tls.test")[0] == 250
        client.data(MESSAGE)
    [env] = envelopes_for(daemon, "bob@auth.test")
    assert env.username == "alice" and EnvelopeFlag.AUTHENTICATED in env.flags


@pytest.mark.skipif(os.geteuid() != 0, reason="a .forward owned by another user needs root")
def test_forward_file(daemon: Daemon, ports: Ports) -> None:
    with smtplib.SMTP("127.0.0.1", ports.plain, local_hostname=CLIENT, timeout=10) as client:
        assert client.sendmail("alice@example.org", ["dave@localhost"], MESSAGE) == {}
    found = envelopes_for(daemon, "dave@localhost")
    [carol] = [e for e in found if e.kind is EnvelopeKind.MDA]
    [relayed] = [e for e in found if e.kind is EnvelopeKind.MTA]
    assert len(found) == 2
    # a local delivery to carol; its dest is the address that was expanded (OpenSMTPD)
    assert carol.mda_user == "carol" and carol.dispatcher == "local"
    assert str(carol.dest) == "dave@localhost"
    # the expanded address is matched as local: the relay rule takes it
    assert str(relayed.dest) == "someone@example.net" and relayed.dispatcher == "out"
    assert EnvelopeFlag.INTERNAL in relayed.flags
    assert carol.msgid == relayed.msgid
    assert b"Hello.\r\n" in message_of(daemon, carol.msgid)


def test_dead_dns_server_delays_nobody(tmp_path: Path) -> None:
    """A nameserver that never answers: every session gets its banner once the
    (scaled) rDNS timeout passes, all at the same time, not one after another."""
    [port] = free_ports(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never read: queries vanish
        d = Daemon(
            tmp_path,
            plain_config(port),
            env={"MTA_DNS": f"127.0.0.1:{dead.getsockname()[1]}", "MTA_TIMEOUT_SCALE": "0.1"},
        )
        d.start()
        try:
            started = time.monotonic()
            clients = [Conversation.open("127.0.0.1", port) for _ in range(8)]
            try:
                for c in clients:
                    assert c.reply()[0] == 220
                elapsed = time.monotonic() - started
                assert clients[0].command(f"EHLO {CLIENT}")[0] == 250
            finally:
                for c in clients:
                    c.close()
        finally:
            d.stop()
    # the rDNS budget is 0.3 s (3 s scaled by 0.1); eight in a row would take 2.4 s
    assert 0.2 <= elapsed < 1.5
    assert d.log().count("smtp connected address=127.0.0.1 host=<unknown>") == 8


def test_legacy_grammar_configuration(tmp_path: Path) -> None:
    """A pre-6.4 configuration (accept/reject ... deliver to) runs unchanged."""
    [port] = free_ports(1)
    config = f"""
table users {{ bob = "{NOBODY}:{NOBODY}:/nonexistent" }}
listen on 127.0.0.1 port {port} hostname legacy.test tag LEG mask-source
max-message-size 64K
accept tagged LEG from any for domain "localhost" userbase <users> \\
    deliver to maildir "/nonexistent/%{{user.username}}"
reject from any for any
"""
    d = Daemon(tmp_path, config)
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT, timeout=10) as client:
            _, text = client.ehlo(CLIENT)
            assert text.startswith(b"legacy.test Hello ") and b"SIZE 65536" in text
            client.mail("alice@example.org")
            assert client.rcpt("bob@elsewhere.test")[0] == 550  # the reject rule
            assert client.rcpt("bob@localhost")[0] == 250
            assert client.data(MESSAGE)[0] == 250
        env, msg = the_message(d, "bob@localhost")
        assert env.tag == "LEG" and env.mda_user == "bob"
        assert received_of(msg).startswith("Received: \r\n\tby legacy.test (mta) with ESMTP id ")
    finally:
        d.stop()

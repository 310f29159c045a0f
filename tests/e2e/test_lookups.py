"""End to end: listener tables answered by a helper process (``proc:``), as
table-ldap / table-sql users have them.

A slow lookup must never stall other sessions (DESIGN: lookups asynchronous),
and a lookup that fails is a temporary failure, never a permanent refusal.
The daemon only runs helpers from the system's helper directories, so this
installs a throwaway ``table-<name>`` helper there: root only, removed after.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.auth.hashes import make_hash
from mta.tables.proctable import HELPER_DIRS
from tests.e2e.certs import Certs, make_certs
from tests.e2e.daemon import Daemon
from tests.e2e.test_listeners import CLIENT, MESSAGE, USERS, Conversation, free_ports

SLOW = 1.0  # seconds the slow helper takes for each lookup

HELPER = """\
import sys, time
mode = sys.argv[1].lstrip("/")
data = {
    "mailaddrmap": {"alice": "alice@example.org"},
    "credentials": {"alice": "alice:" + HASHED},
    "addrname": {"127.0.0.1": "slow.names.test"},
    "mailaddr": {},
}
for line in sys.stdin:
    if line.rstrip("\\n") == "config|ready":
        break
for service in data:
    print("register|" + service)
print("register|ready", flush=True)
for line in sys.stdin:
    fields = line.rstrip("\\n").split("|", 7)
    op = fields[4]
    if op == "update":
        print(f"update-result|{fields[5]}|ok", flush=True)
        continue
    service, rid, key = fields[5], fields[6], fields[7] if len(fields) > 7 else ""
    if mode == "error":
        print(f"{op}-result|{rid}|error|backend unavailable", flush=True)
        continue
    time.sleep(SLOW)
    value = data.get(service, {}).get(key)
    if value is None:
        print(f"{op}-result|{rid}|not-found", flush=True)
    elif op == "check":
        print(f"{op}-result|{rid}|found", flush=True)
    else:
        print(f"{op}-result|{rid}|found|{value}", flush=True)
"""


@pytest.fixture(scope="module")
def helper() -> Iterator[str]:
    """Install ``table-<name>`` in a helper directory; yield the backend name."""
    if os.geteuid() != 0:
        pytest.skip("installing a table helper in the system's helper directory needs root")
    directory = Path(HELPER_DIRS[0])
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    name = f"mtae2e{uuid.uuid4().hex[:8]}"
    path = directory / f"table-{name}"
    hashed = make_hash("secret")
    path.write_text(f"#!{sys.executable}\nSLOW = {SLOW}\nHASHED = {hashed!r}\n{HELPER}")
    path.chmod(0o755)
    try:
        yield name
    finally:
        path.unlink()
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()


class Ports:
    def __init__(self) -> None:
        (
            self.plain,
            self.slow_auth,
            self.slow_senders,
            self.slow_names,
            self.broken_auth,
            self.broken_senders,
        ) = free_ports(6)


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, helper: str, ports: Ports, certs: Certs
) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("lookups")
    creds = directory / "creds"
    creds.write_text(f"alice {make_hash('secret')}\n")
    p = ports
    config = f"""
{USERS}
table slow {helper}:/slow
table broken {helper}:/error
table creds file:{creds}
pki localhost cert "{certs.cert_file}"
pki localhost key "{certs.key_file}"
listen on 127.0.0.1 port {p.plain}
listen on 127.0.0.1 port {p.slow_auth} tls pki localhost auth <slow>
listen on 127.0.0.1 port {p.slow_senders} tls pki localhost auth <creds> senders <slow>
listen on 127.0.0.1 port {p.slow_names} hostnames <slow>
listen on 127.0.0.1 port {p.broken_auth} tls pki localhost auth <broken>
listen on 127.0.0.1 port {p.broken_senders} tls pki localhost auth <creds> senders <broken>
action "local" maildir "/nonexistent/%{{user.username}}" userbase <users>
match from any for domain "broken.test" rcpt-to <broken> action "local"
match from any for domain "localhost" action "local"
"""
    d = Daemon(directory, config)
    d.start()
    yield d
    d.stop()


def banner_delay(port: int) -> float:
    started = time.monotonic()
    with Conversation.open("127.0.0.1", port) as c:
        assert c.reply()[0] == 220
    return time.monotonic() - started


def while_busy(slow: object, port: int) -> float:
    """Run ``slow`` (a callable that makes the daemon wait for the helper) in a
    thread; meanwhile, how long a new session on ``port`` waits for its banner."""
    assert callable(slow)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            slow()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(SLOW * 0.3)  # the slow lookup is under way
    try:
        delay = banner_delay(port)
    finally:
        thread.join(30)
    assert not errors, errors
    return delay


def tls_client(port: int, certs: Certs) -> smtplib.SMTP:
    client = smtplib.SMTP("localhost", port, local_hostname=CLIENT, timeout=30)
    client.starttls(context=certs.client_context())
    client.ehlo(CLIENT)
    return client


def test_slow_senders_lookup_stalls_no_other_session(
    daemon: Daemon, ports: Ports, certs: Certs
) -> None:
    def slow() -> None:
        with tls_client(ports.slow_senders, certs) as client:
            client.login("alice", "secret")
            started = time.monotonic()
            assert client.mail("alice@example.org")[0] == 250
            assert time.monotonic() - started >= SLOW * 0.9  # it did ask the helper

    assert while_busy(slow, ports.plain) < SLOW * 0.5


def test_slow_hostnames_lookup_stalls_no_other_session(daemon: Daemon, ports: Ports) -> None:
    def slow() -> None:
        with Conversation.open("127.0.0.1", ports.slow_names, timeout=30) as c:
            assert c.reply() == (220, "slow.names.test ESMTP mta")

    assert while_busy(slow, ports.plain) < SLOW * 0.5


def test_slow_auth_lookup_stalls_no_other_session(
    daemon: Daemon, ports: Ports, certs: Certs
) -> None:
    def slow() -> None:
        with tls_client(ports.slow_auth, certs) as client:
            client.login("alice", "secret")

    assert while_busy(slow, ports.plain) < SLOW * 0.5


def test_broken_tables_fail_temporarily(daemon: Daemon, ports: Ports, certs: Certs) -> None:
    with tls_client(ports.broken_auth, certs) as client:
        code, text = client.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")  # alice / secret
        assert (code, text) == (454, b"4.7.0 Temporary authentication failure")
    with tls_client(ports.broken_senders, certs) as client:
        client.login("alice", "secret")
        code, _ = client.mail("alice@example.org")
        assert code == 451  # a lookup error: try again later, not "Sender rejected"
    with smtplib.SMTP("127.0.0.1", ports.plain, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        client.mail("alice@example.org")
        code, text = client.rcpt("bob@broken.test")
        assert code == 451 and text.endswith(b"<bob@broken.test>")
        assert client.rcpt("bob@localhost")[0] == 250
        assert client.data(MESSAGE)[0] == 250

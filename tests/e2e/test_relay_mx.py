"""End to end: one ``mta`` relays by MX (``action "out" relay``, no host) to
another ``mta`` listening on port 25, inside a network namespace of the test's own.

Routing by MX means port 25 on the addresses the DNS gives, so the module runs
everything that takes part in a fresh network namespace: dnsmasq on
127.0.0.1:53 with the zone below, the receiver B on port 25 of several
loopback addresses (127.0.0.3-5 and three IPv6 ULAs added to ``lo``), and the
sender A (``MTA_DNS=127.0.0.1:53``), which listens on nothing but its local
socket.  Nothing reaches the machine's network or its resolver.

The namespace is made by ``unshare --net`` running ``cat``, which lives until
its stdin closes; the other processes enter it with ``nsenter --net``.  Unlike
``ip netns add`` this leaves no named namespace behind (in ``/run/netns``) when
the test run is killed, needs no mount namespace per command, and lets
parallel runs never collide.  Mail goes in through A's local enqueue socket
with ``mta-sendmail``: a Unix socket is reached by its path, from any network
namespace, so the test process itself stays in the machine's namespace.

The four processes are shared by the module's tests (starting them takes most
of its time); each test has its own destination domain, recipient maildir and
log lines (``rcpt=<...>``, addresses of its own), so they stay independent.

Runs as root only (namespaces, port 25, deliveries as uid 65534); skipped when
not root or when namespaces cannot be made.
"""

from __future__ import annotations

import mailbox
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import attrs
import pytest

from tests.e2e.daemon import Daemon, has_mail, wait_for
from tests.enqueue.daemons import run_sendmail
from tests.relay.dnsmasq import serve_dnsmasq

V6_PREFIX = "fd00:6d74:61::"  # a ULA of our own ("mta"), on lo inside the namespace
DEAD = "127.0.0.2"  # an address of lo where nothing listens
LISTEN = ["127.0.0.3", f"{V6_PREFIX}3", "127.0.0.4", f"{V6_PREFIX}4", "127.0.0.5", f"{V6_PREFIX}5"]

ZONE = [
    "--local=/test/",  # names of .test are answered here alone: unknown => NXDOMAIN
    # 1. the best MX is dead: the next one takes the mail
    "--mx-host=pref.test,dead.pref.test,10",
    "--mx-host=pref.test,live.pref.test,20",
    f"--host-record=dead.pref.test,{DEAD}",
    "--host-record=live.pref.test,127.0.0.3",
    # 2. no MX: the domain's own address (implicit MX)
    "--host-record=implicit.test,127.0.0.3",
    # 3. an MX with an IPv6 address only
    "--mx-host=v6.test,mx.v6.test,10",
    f"--host-record=mx.v6.test,{V6_PREFIX}3",
    # 4. mta limit inet4: a dual-stack MX (both addresses listening), used over
    # IPv6 for dual.test (no limit), over IPv4 for dual4.test
    "--mx-host=dual.test,mx.dual4.test,10",
    "--mx-host=dual4.test,mx.dual4.test,10",
    f"--host-record=mx.dual4.test,127.0.0.4,{V6_PREFIX}4",
    # mta limit inet6: the best MX has an IPv4 address only (listening), the next
    # an IPv6 one; and a domain whose MXs have IPv4 addresses only
    "--mx-host=dual6.test,mx4.dual6.test,10",
    "--mx-host=dual6.test,mx6.dual6.test,20",
    "--host-record=mx4.dual6.test,127.0.0.5",
    f"--host-record=mx6.dual6.test,{V6_PREFIX}5",
    "--mx-host=v4only.test,mx.v4only.test,10",
    "--host-record=mx.v4only.test,127.0.0.3",
    # 5. Null MX (RFC 7505)
    "--mx-host=nullmx.test,.,0",
]
DOMAINS = ["pref.test", "implicit.test", "v6.test", "dual.test", "dual4.test", "dual6.test"]

HELO = "a.sender.test"
B_NAME = "mx.b.test"
BODY = "Hello by MX.\n.a line with a dot\nLast line\n"


def tool(name: str) -> str:
    """The path of a util-linux / iproute2 tool (``/usr/sbin`` may not be on PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        pytest.skip(f"{name} is not installed (util-linux / iproute2)")
    return found


class Namespace:
    """A new network namespace, held by ``unshare --net cat`` until :meth:`close`
    (or until the test process dies and cat's stdin closes)."""

    def __init__(self, timeout: float = 10.0) -> None:
        unshare, self.nsenter, self.ip = tool("unshare"), tool("nsenter"), tool("ip")
        self.holder = subprocess.Popen(
            [unshare, "--net", "--", "cat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.path = f"/proc/{self.holder.pid}/ns/net"
        ours = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + timeout
        # until cat runs, the process may still be in our namespace: never use it before
        while not self._entered(ours):
            if self.holder.poll() is not None:
                assert self.holder.stderr is not None
                error = self.holder.stderr.read().decode(errors="replace").strip()
                self.close()
                pytest.skip(f"cannot create a network namespace: {error}")
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("unshare --net did not start cat")
            time.sleep(0.01)

    def _entered(self, ours: int) -> bool:
        try:
            cmdline = pathlib.Path(f"/proc/{self.holder.pid}/cmdline").read_bytes()
            return cmdline.split(b"\0")[0] == b"cat" and os.stat(self.path).st_ino != ours
        except OSError:
            return False

    @property
    def prefix(self) -> list[str]:
        """What runs a command inside the namespace (nsenter execs it: same pid)."""
        return [self.nsenter, f"--net={self.path}", "--"]

    def ip_cmd(self, *args: str) -> None:
        subprocess.run([*self.prefix, self.ip, *args], check=True, timeout=10, capture_output=True)

    def close(self) -> None:
        """End cat: the namespace goes once no process is left in it."""
        assert self.holder.stdin is not None and self.holder.stderr is not None
        self.holder.stdin.close()
        try:
            self.holder.wait(5)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait(5)
        self.holder.stderr.close()


@attrs.frozen
class Lab:
    sender: Daemon  # A: relays by MX
    receiver: Daemon  # B: port 25, delivers to maildirs
    shared: pathlib.Path  # maildirs: b/DOMAIN/USER for B, a/USER for A

    def maildir(self, domain: str, user: str = "bob") -> pathlib.Path:
        return self.shared / "b" / domain / user


def sender_config(shared: pathlib.Path) -> str:
    return f"""table users {{ alice = "65534:65534:/nonexistent" }}
mta limit for domain "dual4.test" inet4
mta limit for domain "dual6.test" inet6
mta limit for domain "v4only.test" inet6
action "local" maildir "{shared}/a/%{{user.username}}" userbase <users>
action "out" relay helo {HELO}
match from any for domain "localhost" action "local"
match from local for any action "out"
"""


def receiver_config(shared: pathlib.Path) -> str:
    listen = "\n".join(f"listen on {address} port 25 hostname {B_NAME}" for address in LISTEN)
    domains = ", ".join(f'"{d}"' for d in DOMAINS)
    return f"""table users {{ bob = "65534:65534:/nonexistent" }}
table domains {{ {domains} }}
{listen}
action "local" maildir "{shared}/b/%{{rcpt.domain}}/%{{user.username}}" userbase <users>
match from any for domain <domains> action "local"
"""


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, port 25, deliveries as another uid")
    namespace = Namespace()
    try:
        namespace.ip_cmd("link", "set", "lo", "up")
        for n in (3, 4, 5):
            namespace.ip_cmd("addr", "add", f"{V6_PREFIX}{n}/128", "dev", "lo", "nodad")
        yield namespace
    finally:
        namespace.close()


@pytest.fixture(scope="module")
def lab(netns: Namespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # deliveries run as uid 65534: a sticky world-writable directory (tests/conftest.py)
    shared = pathlib.Path(tempfile.mkdtemp(prefix="mta-deliver-", dir="/tmp"))
    shared.chmod(0o1777)
    top = tmp_path_factory.mktemp("relay-mx")
    daemons: list[Daemon] = []
    try:
        with serve_dnsmasq(ZONE, prefix=netns.prefix):
            for name, config, env in (
                ("b", receiver_config(shared), {"MTA_DNS": "none"}),
                ("a", sender_config(shared), {"MTA_DNS": "127.0.0.1:53"}),
            ):
                (top / name).mkdir()
                daemon = Daemon(top / name, config, env=env, paused=(), prefix=netns.prefix)
                daemon.start()
                daemons.append(daemon)
            b, a = daemons
            yield Lab(a, b, shared)
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        shutil.rmtree(shared, ignore_errors=True)


def send(lab: Lab, rcpt: str) -> str:
    """Submit a message for ``rcpt`` to A with mta-sendmail (over A's local
    socket, from outside the namespace); its Message-ID."""
    message_id = f"<{uuid.uuid4().hex}@localhost>"
    message = (
        f"From: alice@localhost\nTo: {rcpt}\nSubject: by MX\nMessage-ID: {message_id}\n\n{BODY}"
    ).encode()
    done = run_sendmail(["-oi", "-f", "alice@localhost", rcpt], message, lab.sender.spool)
    assert done.returncode == 0, done.stderr
    assert not any((lab.sender.spool / "offline").glob("*")), "mta-sendmail went offline"
    return message_id


def relay_line(lab: Lab, rcpt: str) -> str:
    """A's one ``mta delivery`` line for ``rcpt``, once it is logged."""
    wait_for(lambda: f"rcpt=<{rcpt}>" in lab.sender.log())
    lines = [
        line
        for line in lab.sender.log().splitlines()
        if " mta delivery " in line and f"rcpt=<{rcpt}>" in line
    ]
    assert len(lines) == 1, lab.sender.log()
    return lines[0]


def connections(lab: Lab, address: str) -> int:
    """How many times A tried to connect to ``address`` port 25."""
    host = f"[{address}]" if ":" in address else address
    return lab.sender.log().count(f"mta connecting address=smtp://{host}:25 ")


def delivered(lab: Lab, domain: str, message_id: str) -> str:
    """The message B delivered to bob@``domain``, checked intact; its first
    Received header (B's own)."""
    maildir = lab.maildir(domain)
    wait_for(lambda: has_mail(maildir))
    [message] = list(mailbox.Maildir(str(maildir), create=False))
    assert message["Message-ID"] == message_id
    assert message["Subject"] == "by MX" and message["To"] == f"bob@{domain}"
    assert message["Return-Path"] == "<alice@localhost>"
    assert message.get_payload() == BODY
    received = message.get_all("Received")
    assert received is not None and len(received) == 2, received
    # B's, for the session from A (its helo), then A's, for the local submission
    assert received[0].startswith(f"from {HELO} ") and f"by {B_NAME} (mta)" in received[0]
    assert f"<bob@{domain}>" in received[0]
    assert "(mta)" in received[1] and "[local]" in received[1]
    return str(received[0])


def test_best_mx_dead_next_mx_delivers(lab: Lab) -> None:
    message_id = send(lab, "bob@pref.test")
    delivered(lab, "pref.test", message_id)
    line = relay_line(lab, "bob@pref.test")
    assert 'relay="127.0.0.3 (live.pref.test)"' in line and "result=Ok" in line, line
    # the MX 10 was tried first and refused the connection
    assert connections(lab, DEAD) == 1, lab.sender.log()
    log = lab.sender.log()
    assert log.index(f"address=smtp://{DEAD}:25 host=dead.pref.test") < log.index(
        "address=smtp://127.0.0.3:25 host=live.pref.test"
    )


def test_implicit_mx(lab: Lab) -> None:
    message_id = send(lab, "bob@implicit.test")
    delivered(lab, "implicit.test", message_id)
    line = relay_line(lab, "bob@implicit.test")
    assert 'relay="127.0.0.3 (implicit.test)"' in line and "result=Ok" in line, line


def test_mx_with_an_ipv6_address_only(lab: Lab) -> None:
    message_id = send(lab, "bob@v6.test")
    received = delivered(lab, "v6.test", message_id)
    line = relay_line(lab, "bob@v6.test")
    assert f'relay="{V6_PREFIX}3 (mx.v6.test)"' in line and "result=Ok" in line, line
    assert connections(lab, f"{V6_PREFIX}3") == 1
    assert f"[{V6_PREFIX}" in received, received  # B saw an IPv6 client


def test_mta_limit_inet4_uses_the_ipv4_address(lab: Lab) -> None:
    message_id = send(lab, "bob@dual4.test")
    received = delivered(lab, "dual4.test", message_id)
    line = relay_line(lab, "bob@dual4.test")
    assert 'relay="127.0.0.4 (mx.dual4.test)"' in line and "result=Ok" in line, line
    assert connections(lab, f"{V6_PREFIX}4") == 0
    assert f"[{V6_PREFIX}" not in received, received
    # without the limit, the same MX is reached over IPv6 (tried first)
    message_id = send(lab, "bob@dual.test")
    delivered(lab, "dual.test", message_id)
    line = relay_line(lab, "bob@dual.test")
    assert f'relay="{V6_PREFIX}4 (mx.dual4.test)"' in line and "result=Ok" in line, line


def test_mta_limit_inet6_skips_an_mx_without_ipv6(lab: Lab) -> None:
    message_id = send(lab, "bob@dual6.test")
    delivered(lab, "dual6.test", message_id)
    line = relay_line(lab, "bob@dual6.test")
    assert f'relay="{V6_PREFIX}5 (mx6.dual6.test)"' in line and "result=Ok" in line, line
    assert connections(lab, "127.0.0.5") == 0  # the best MX, listening but IPv4 only


def test_mta_limit_inet6_with_ipv4_mxs_only_is_a_temporary_failure(lab: Lab) -> None:
    send(lab, "bob@v4only.test")
    line = relay_line(lab, "bob@v4only.test")
    assert "result=TempFail" in line and "family mismatch" in line, line
    # still queued, and no connection was tried
    assert any(e.rcpt.domain == "v4only.test" for e in lab.sender.store().iter_envelopes())
    assert "host=mx.v4only.test" not in lab.sender.log()


def test_null_mx_bounces_to_the_local_sender(lab: Lab) -> None:
    message_id = send(lab, "bob@nullmx.test")
    line = relay_line(lab, "bob@nullmx.test")
    assert "result=PermFail" in line and "Domain does not accept mail" in line, line
    assert 'relay=""' in line  # no connection was tried
    alice = lab.shared / "a" / "alice"
    wait_for(lambda: has_mail(alice))
    [bounce] = list(mailbox.Maildir(str(alice), create=False))
    text = bounce.as_string()
    assert "Action: failed" in text and "bob@nullmx.test" in text, text
    assert "Domain does not accept mail" in text and "Status: 5.1." in text, text
    assert message_id in text  # the original's headers come back
    # the envelope is gone
    wait_for(
        lambda: not any(e.rcpt.domain == "nullmx.test" for e in lab.sender.store().iter_envelopes())
    )
    assert "nullmx.test" not in lab.receiver.log()

"""End to end: the options of ``listen on`` without TLS, over loopback.

One daemon serves many listeners at once (addresses, interface names,
families, ``hostname``, ``hostnames``, ``tag``, ``mask-src``, ``no-dsn``,
``proxy-v2``) plus the local enqueue socket, and each test talks to the
listener it is about.  The helpers at the top (raw SMTP conversations, an
smtplib client for the Unix socket, reading the spool back) are shared by the
other end-to-end modules.
"""

from __future__ import annotations

import ipaddress
import shutil
import smtplib
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from mta.envelope import DsnNotify, Envelope, EnvelopeFlag, EnvelopeKind
from mta.net.proxy import SIGNATURE
from mta.server.listeners import BACKLOG
from mta.spool.paths import SpoolPaths
from mta.spool.store import Store
from tests.e2e.daemon import Daemon

CLIENT = "client.example"
MESSAGE = b"From: alice@example.org\r\nTo: bob@localhost\r\nSubject: hi\r\n\r\nHello.\r\n"

# -- shared helpers ------------------------------------------------------------------


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = has_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not IPV6, reason="this machine has no IPv6 loopback (::1)")


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free on 127.0.0.1 (and ::1)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class Conversation:
    """A raw SMTP conversation over a socket, for what smtplib cannot do."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file: BinaryIO = sock.makefile("rb")

    @classmethod
    def open(
        cls, host: str, port: int, *, timeout: float = 10, source: str | None = None
    ) -> Conversation:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            if source is not None:
                sock.bind((source, 0))
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def reply(self) -> tuple[int, str]:
        """One whole (possibly multi-line) reply: its code and its lines joined by LF."""
        lines: list[str] = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("connection closed" + (f" after {lines}" if lines else ""))
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text[4:])
            if text[3:4] != "-":
                return int(text[:3]), "\n".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> tuple[int, str]:
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF or reset)."""
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UnixSMTP(smtplib.SMTP):
    """smtplib over the daemon's local enqueue socket (a Unix socket)."""

    def __init__(self, path: Path, timeout: float = 10) -> None:
        self.path = path
        super().__init__(local_hostname=CLIENT, timeout=timeout)
        self.connect(str(path))

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(host)
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(
        self, host: str = "", port: int = 0, source_address: object = None
    ) -> tuple[int, bytes]:
        self.sock = self._get_socket(host, port, self.timeout)
        self.file = None
        code, msg = self.getreply()
        return code, msg


def store(d: Daemon, key: bytes | None = None, compress: bool = False) -> Store:
    """The daemon's committed queue through the spool API (no recovery run)."""
    return Store(SpoolPaths(str(d.spool)), compress=compress, key=key)


def envelopes(d: Daemon, key: bytes | None = None) -> list[Envelope]:
    return sorted(store(d, key).iter_envelopes(), key=lambda e: (e.msgid, str(e.rcpt)))


def message_of(d: Daemon, msgid: int, key: bytes | None = None) -> bytes:
    with store(d, key).open_message(msgid) as f:
        return f.read()


def envelopes_for(d: Daemon, rcpt: str, key: bytes | None = None) -> list[Envelope]:
    """The envelopes whose RCPT was ``rcpt`` (each test uses its own recipients)."""
    return [e for e in envelopes(d, key) if str(e.rcpt) == rcpt]


def the_message(d: Daemon, rcpt: str) -> tuple[Envelope, bytes]:
    """The one envelope for ``rcpt`` and its message."""
    [env] = envelopes_for(d, rcpt)
    return env, message_of(d, env.msgid)


def received_of(message: bytes) -> str:
    """Our ``Received:`` header (the first one), as text with its CRLFs."""
    text = message.decode("utf-8", "replace")
    assert text.startswith("Received: ")
    end = text.index(";\r\n\t")
    return text[: text.index("\r\n", end + 3) + 2]


def send(
    host: str,
    port: int,
    rcpt: str,
    *,
    sender: str = "alice@example.org",
    message: bytes = MESSAGE,
    source: str | None = None,
) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(
        host,
        port,
        local_hostname=CLIENT,
        timeout=10,
        source_address=(source, 0) if source else None,
    ) as client:
        return client.sendmail(sender, [rcpt], message)


USERS = 'table users { bob = "65534:65534:/nonexistent", carol = "65534:65534:/nonexistent" }'


# -- the listeners daemon ------------------------------------------------------------


class Ports:
    def __init__(self) -> None:
        (
            self.localhost,
            self.lo,
            self.named,
            self.v6,
            self.inet4,
            self.inet6,
            self.hostnames,
            self.proxy,
            self.any4,
            self.any6,
        ) = free_ports(10)


def listeners_config(p: Ports) -> str:
    v6 = (
        f"listen on ::1 port {p.v6}\nlisten on lo inet6 port {p.inet6}\n"
        f"listen on :: port {p.any6}\n"
        if IPV6
        else ""
    )
    return f"""
{USERS}
table names {{ 127.0.0.1 = "v4.names.test", "[::1]" = "v6.names.test", \
192.0.2.25 = "proxied.names.test" }}
listen on localhost port {p.localhost}
listen on lo port {p.lo}
listen on 127.0.0.1 port {p.named} hostname mx.one.test tag TAGGED mask-src no-dsn
listen on lo inet4 port {p.inet4}
listen on lo port {p.hostnames} hostnames <names>
listen on 127.0.0.1 port {p.proxy} proxy-v2 hostnames <names> hostname fallback.names.test
listen on 0.0.0.0 port {p.any4}
listen on socket tag SOCKTAG mask-src
{v6}
action "local" maildir "/nonexistent/%{{user.username}}" userbase <users>
action "tagged" maildir "/nonexistent/tagged/%{{user.username}}" userbase <users>
action "out" relay
match tag TAGGED from any for domain "localhost" action "tagged"
match from any for domain "localhost" action "local"
match from local for any action "out"
"""


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, ports: Ports) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("listeners"), listeners_config(ports))
    d.start()
    yield d
    d.stop()


def banner(host: str, port: int) -> tuple[int, str]:
    with Conversation.open(host, port) as c:
        return c.reply()


def refused(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return True
    return False


# -- addresses, interfaces, families, port -----------------------------------------------


def test_listen_on_localhost_and_an_address(daemon: Daemon, ports: Ports) -> None:
    code, text = banner("127.0.0.1", ports.localhost)
    assert code == 220 and text.endswith(" ESMTP mta")
    assert send("127.0.0.1", ports.localhost, "bob@localhost") == {}
    assert f"smtp: listening on 127.0.0.1:{ports.localhost}" in daemon.log()
    env, _ = the_message(daemon, "bob@localhost")
    assert env.sockaddr == "127.0.0.1" and env.dispatcher == "local"


def test_listen_on_lo_binds_every_loopback_address(daemon: Daemon, ports: Ports) -> None:
    assert banner("127.0.0.1", ports.lo)[0] == 220
    if IPV6:
        assert banner("::1", ports.lo)[0] == 220
    else:
        assert refused("::1", ports.lo)


@needs_ipv6
def test_listen_on_ipv6_address_and_inet6(daemon: Daemon, ports: Ports) -> None:
    code, text = banner("::1", ports.v6)
    assert code == 220
    assert refused("127.0.0.1", ports.v6)
    assert banner("::1", ports.inet6)[0] == 220
    assert refused("127.0.0.1", ports.inet6)  # inet6 only
    with Conversation.open("::1", ports.v6) as c:
        c.reply()
        code, text = c.command(f"EHLO {CLIENT}")
        assert code == 250 and f"Hello {CLIENT} [::1]," in text
    assert send("::1", ports.inet6, "carol@localhost") == {}
    env, msg = the_message(daemon, "carol@localhost")
    assert env.sockaddr == "::1"
    assert received_of(msg).startswith(f"Received: from {CLIENT} (<unknown> [::1])\r\n")


def test_listen_on_the_unspecified_addresses(daemon: Daemon, ports: Ports) -> None:
    assert banner("127.0.0.1", ports.any4)[0] == 220
    assert f"smtp: listening on 0.0.0.0:{ports.any4}" in daemon.log()
    if IPV6:
        assert refused("::1", ports.any4)
        assert banner("::1", ports.any6)[0] == 220
        assert refused("127.0.0.1", ports.any6)  # IPV6_V6ONLY: "::" is IPv6 only


def test_inet4_only(daemon: Daemon, ports: Ports) -> None:
    assert banner("127.0.0.1", ports.inet4)[0] == 220
    if IPV6:
        assert refused("::1", ports.inet4)


# -- hostname, hostnames, tag, mask-src, no-dsn --------------------------------------------


def test_hostname_tag_and_mask_src(daemon: Daemon, ports: Ports) -> None:
    with Conversation.open("127.0.0.1", ports.named) as c:
        assert c.reply() == (220, "mx.one.test ESMTP mta")
        code, text = c.command(f"HELO {CLIENT}")
        assert (code, text) == (250, f"mx.one.test Hello {CLIENT} [127.0.0.1], pleased to meet you")
    assert send("127.0.0.1", ports.named, "bob+tag@localhost") == {}
    env, msg = the_message(daemon, "bob+tag@localhost")
    assert env.tag == "TAGGED"
    assert env.dispatcher == "tagged"  # "match tag TAGGED" chose the action
    assert env.smtpname == "mx.one.test"
    received = received_of(msg)
    # mask-src: no "from" part at all, the rest as usual
    assert received.startswith("Received: \r\n\tby mx.one.test (mta) with ESMTP id ")
    assert "127.0.0.1" not in received and CLIENT not in received
    assert "\r\n\tfor <bob+tag@localhost>;\r\n\t" in received
    # the same recipient on an untagged listener takes the other rule
    assert send("127.0.0.1", ports.localhost, "bob+untagged@localhost") == {}
    env, msg = the_message(daemon, "bob+untagged@localhost")
    assert (env.tag, env.dispatcher) == ("", "local")
    assert received_of(msg).startswith(f"Received: from {CLIENT} (<unknown> [127.0.0.1])\r\n")


def test_hostname_in_received_and_completed_addresses(daemon: Daemon, ports: Ports) -> None:
    message = b"From: alice\r\nTo: bob\r\nSubject: bare\r\n\r\nbody\r\n"
    assert send("127.0.0.1", ports.named, "bob+bare@localhost", message=message) == {}
    _, msg = the_message(daemon, "bob+bare@localhost")
    assert "\tby mx.one.test (mta) with ESMTP id " in received_of(msg)
    assert b"\r\nFrom: alice@mx.one.test\r\n" in msg
    assert b"\r\nTo: bob@mx.one.test\r\n" in msg


def test_no_dsn(daemon: Daemon, ports: Ports) -> None:
    with Conversation.open("127.0.0.1", ports.named) as c:
        c.reply()
        code, text = c.command(f"EHLO {CLIENT}")
        assert code == 250 and "DSN" not in text.split("\n")
        code, _ = c.command("MAIL FROM:<alice@example.org> RET=HDRS")
        assert code == 555
        assert c.command("MAIL FROM:<alice@example.org> ENVID=abc")[0] == 555
        assert c.command("MAIL FROM:<alice@example.org>")[0] == 250
        code, text = c.command("RCPT TO:<bob@localhost> NOTIFY=SUCCESS")
        assert code == 555 and "NOTIFY=SUCCESS" in text
        assert c.command("RCPT TO:<bob@localhost> ORCPT=rfc822;bob@localhost")[0] == 555
    # the other listeners have DSN
    with Conversation.open("127.0.0.1", ports.localhost) as c:
        c.reply()
        code, text = c.command(f"EHLO {CLIENT}")
        assert "DSN" in text.split("\n")
        assert c.command("MAIL FROM:<alice@example.org> RET=HDRS ENVID=e1")[0] == 250
        assert c.command("RCPT TO:<bob+dsn@localhost> NOTIFY=SUCCESS,FAILURE")[0] == 250
        assert c.command("DATA")[0] == 354
        c.send(MESSAGE + b".\r\n")
        assert c.reply()[0] == 250
    env, _ = the_message(daemon, "bob+dsn@localhost")
    assert env.dsn_envid == "e1" and env.dsn_ret.value == "HDRS"
    assert env.dsn_notify == DsnNotify.SUCCESS | DsnNotify.FAILURE


def test_hostnames_by_local_address(daemon: Daemon, ports: Ports) -> None:
    assert banner("127.0.0.1", ports.hostnames) == (220, "v4.names.test ESMTP mta")
    if IPV6:
        assert banner("::1", ports.hostnames) == (220, "v6.names.test ESMTP mta")
    assert send("127.0.0.1", ports.hostnames, "bob+names@localhost") == {}
    env, msg = the_message(daemon, "bob+names@localhost")
    assert env.smtpname == "v4.names.test"
    assert "\tby v4.names.test (mta) with ESMTP id " in received_of(msg)
    # a listener without hostname/hostnames uses the server's name
    _, text = banner("127.0.0.1", ports.localhost)
    assert not text.startswith(("v4.names.test", "mx.one.test"))


# -- proxy-v2 ---------------------------------------------------------------------------------


def proxy_header(source: str, destination: str, sport: int = 40000, dport: int = 25) -> bytes:
    src = ipaddress.ip_address(source)
    dst = ipaddress.ip_address(destination)
    family = 0x11 if src.version == 4 else 0x21
    addresses = src.packed + dst.packed + struct.pack("!HH", sport, dport)
    return SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(addresses)) + addresses


def proxy_local_header() -> bytes:
    return SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


def test_proxy_v2_uses_the_proxied_addresses(daemon: Daemon, ports: Ports) -> None:
    with Conversation.open("127.0.0.1", ports.proxy) as c:
        # the header and the first command in one segment, as proxies send them
        c.send(proxy_header("192.0.2.10", "192.0.2.25") + f"EHLO {CLIENT}\r\n".encode())
        code, text = c.reply()
        assert (code, text) == (220, "proxied.names.test ESMTP mta")  # hostnames by destination
        code, text = c.reply()
        assert code == 250 and f"Hello {CLIENT} [192.0.2.10]," in text
        assert c.command("MAIL FROM:<alice@example.org>")[0] == 250
        # the rules see the proxied client: not local, so no relaying
        assert c.command("RCPT TO:<someone@example.net>")[0] == 550
        assert c.command("RCPT TO:<bob+proxy@localhost>")[0] == 250
        assert c.command("DATA")[0] == 354
        c.send(MESSAGE + b".\r\n")
        assert c.reply()[0] == 250
    env, msg = the_message(daemon, "bob+proxy@localhost")
    assert env.sockaddr == "192.0.2.10"
    assert env.smtpname == "proxied.names.test"
    assert received_of(msg).startswith(f"Received: from {CLIENT} (<unknown> [192.0.2.10])\r\n")
    assert "smtp connected address=192.0.2.10 " in daemon.log()


def test_hostname_when_hostnames_has_no_entry(daemon: Daemon, ports: Ports) -> None:
    with Conversation.open("127.0.0.1", ports.proxy) as c:
        c.send(proxy_header("192.0.2.10", "192.0.2.26"))  # no entry for 192.0.2.26
        assert c.reply() == (220, "fallback.names.test ESMTP mta")


def test_proxy_v2_ipv6_and_local_command(daemon: Daemon, ports: Ports) -> None:
    with Conversation.open("127.0.0.1", ports.proxy) as c:
        c.send(proxy_header("2001:db8::10", "2001:db8::25"))
        assert c.reply()[0] == 220
        _, text = c.command(f"EHLO {CLIENT}")
        assert f"Hello {CLIENT} [2001:db8::10]," in text
    with Conversation.open("127.0.0.1", ports.proxy) as c:
        c.send(proxy_local_header())  # a health check: the real endpoints count
        assert c.reply() == (220, "v4.names.test ESMTP mta")
        _, text = c.command(f"EHLO {CLIENT}")
        assert f"Hello {CLIENT} [127.0.0.1]," in text
        assert c.command("QUIT")[0] == 221


@pytest.mark.parametrize(
    "garbage",
    [
        b"EHLO client.example\r\n",
        b"PROXY TCP4 192.0.2.10 192.0.2.25 40000 25\r\n",
        SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 4) + b"\x00" * 4,  # too short
        SIGNATURE + bytes([0x31, 0x11]) + struct.pack("!H", 12) + b"\x00" * 12,  # version 3
    ],
)
def test_proxy_v2_garbage_closes_the_connection(
    daemon: Daemon, ports: Ports, garbage: bytes
) -> None:
    with Conversation.open("127.0.0.1", ports.proxy, timeout=5) as c:
        c.send(garbage)
        assert c.closed()  # no banner, nothing at all
    assert "smtp bad-input result=" in daemon.log()


def test_proxy_v2_listener_says_nothing_before_the_header(daemon: Daemon, ports: Ports) -> None:
    with Conversation.open("127.0.0.1", ports.proxy) as c:
        c.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            c.file.read(1)


# -- the local enqueue socket ------------------------------------------------------------------


def test_local_socket_session(daemon: Daemon) -> None:
    path = daemon.spool / "enqueue.sock"
    with UnixSMTP(path) as client:
        code, text = client.ehlo(CLIENT)
        assert code == 250 and b"[local]" in text.split(b"\n")[0]
        assert not client.has_extn("auth")  # already authenticated
        # local and authenticated: relaying is allowed
        assert (
            client.sendmail("me", ["someone@example.net"], b"Subject: no date\r\n\r\nhi\r\n") == {}
        )
    env, msg = the_message(daemon, "someone@example.net")
    assert env.sockaddr == "local" and env.kind is EnvelopeKind.MTA
    assert env.tag == "SOCKTAG"  # listen on socket tag SOCKTAG mask-src mask-src
    assert EnvelopeFlag.AUTHENTICATED in env.flags
    assert env.hostname == env.smtpname  # rdns of a local session is the server's name
    received = received_of(msg)
    # "[local]" in the from-part is checked in test_swaks; mask-src takes it away here
    assert received.startswith(f"Received: \r\n\tby {env.smtpname} (mta) with ESMTPA id ")
    headers = msg.split(b"\r\n\r\n", 1)[0].decode()
    assert "\r\nDate: " in headers
    assert "\r\nMessage-ID: <" in headers and f"@{env.smtpname}>" in headers
    assert str(env.sender) == f"me@{env.smtpname}"  # a bare sender gets the server's name


def test_local_socket_keeps_date_and_message_id(daemon: Daemon) -> None:
    message = (
        b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <given@example.org>\r\n"
        b"Subject: dated\r\n\r\nhi\r\n"
    )
    with UnixSMTP(daemon.spool / "enqueue.sock") as client:
        client.sendmail("me@example.org", ["bob+dated@localhost"], message)
    _, msg = the_message(daemon, "bob+dated@localhost")
    headers = msg.split(b"\r\n\r\n", 1)[0]
    assert headers.count(b"\r\nDate: ") == 1 and headers.count(b"Message-ID: ") == 1
    assert b"Message-ID: <given@example.org>" in headers


# -- what DATA does to the message --------------------------------------------------------------


def test_bcc_removed_and_loop_detected(daemon: Daemon, ports: Ports) -> None:
    message = (
        b"From: alice@example.org\r\nTo: bob@localhost\r\nBcc: secret@example.org,\r\n"
        b" other@example.org\r\nSubject: bcc\r\n\r\nbody\r\n"
    )
    assert send("127.0.0.1", ports.localhost, "bob+bcc@localhost", message=message) == {}
    _, msg = the_message(daemon, "bob+bcc@localhost")
    assert b"Bcc" not in msg and b"secret@" not in msg and b"other@" not in msg
    assert b"\r\nTo: bob@localhost\r\nSubject: bcc\r\n" in msg and msg.endswith(b"\r\n\r\nbody\r\n")
    hops = b"".join(b"Received: from hop%02d.example\r\n" % n for n in range(100))
    with smtplib.SMTP("127.0.0.1", ports.localhost, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        client.mail("alice@example.org")
        client.rcpt("bob+loop@localhost")
        code, text = client.data(hops + MESSAGE)
        assert (code, text) == (500, b"5.4.6 Routing loop detected: Loop detected")
        one_less = hops.split(b"\r\n", 1)[1]  # 99 are fine
        assert client.sendmail("a@example.org", ["bob+hops@localhost"], one_less + MESSAGE) == {}
    assert envelopes_for(daemon, "bob+loop@localhost") == []
    assert len(envelopes_for(daemon, "bob+hops@localhost")) == 1


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_large_listen_backlog(daemon: Daemon, ports: Ports) -> None:
    result = subprocess.run(
        ["ss", "-ltnH", f"sport = :{ports.localhost}"],
        capture_output=True,
        text=True,
        check=True,
    )
    [line] = result.stdout.splitlines()
    backlog = int(line.split()[2])  # Send-Q of a listening socket: its backlog
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert backlog == min(BACKLOG, somaxconn)
    assert backlog >= min(1024, somaxconn)

"""End to end: names from the hosts file (``MTA_HOSTS``), DNS switched off.

The receiving side names a loopback client as OpenSMTPD does through the
system resolver (``127.0.0.1 localhost``): in the ``smtp connected`` log
line, the ``Received:`` header, the envelope and the ``from rdns`` match
conditions; an edit of the file counts at the next connection.  The relay
side finds a ``relay host`` named in the hosts file without DNS.
"""

from __future__ import annotations

import mailbox
import os
import smtplib
from pathlib import Path

from tests.e2e.daemon import Daemon, free_port, has_mail, start, wait_for
from tests.e2e.test_listeners import IPV6, the_message

CLIENT = "client.example"
CLIENT_A = "a.example"  # the relaying instance's HELO name
USERS = 'table users { bob = "65534:65534:/nonexistent", alice = "65534:65534:/nonexistent" }'
MESSAGE = b"From: alice@example.org\r\nTo: bob@rdns.test\r\nSubject: hi\r\n\r\nHello.\r\n"
RCPTS = ["bob@rdns.test", "bob@table.test", "bob@nordns.test"]


def receiving_config(port: int) -> str:
    v6 = f"listen on ::1 port {port}\n" if IPV6 else ""
    return f"""{USERS}
table names {{ "localhost" }}
listen on 127.0.0.1 port {port}
{v6}action "local" maildir "/nonexistent/%{{user.username}}" userbase <users>
match from rdns for domain "rdns.test" action "local"
match from rdns <names> for domain "table.test" action "local"
match !from rdns for domain "nordns.test" action "local"
"""


def rcpt_codes(host: str, port: int) -> dict[str, int]:
    with smtplib.SMTP(host, port, local_hostname=CLIENT, timeout=10) as client:
        client.ehlo(CLIENT)
        assert client.mail("alice@example.org")[0] == 250
        return {rcpt: client.rcpt(rcpt)[0] for rcpt in RCPTS}


def rewrite(path: Path, text: str) -> None:
    """Replace the file's text, its mtime moved on (coarse file system clocks)."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_loopback_clients_are_named_by_the_hosts_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 other\n::1 localhost ip6-localhost\n")
    port = free_port()
    (tmp_path / "d").mkdir()
    d = Daemon(tmp_path / "d", receiving_config(port), env={"MTA_HOSTS": str(hosts)})
    d.start()
    try:
        named = {"bob@rdns.test": 250, "bob@table.test": 250, "bob@nordns.test": 550}
        assert rcpt_codes("127.0.0.1", port) == named
        with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT, timeout=10) as client:
            assert client.sendmail("alice@example.org", ["bob@rdns.test"], MESSAGE) == {}
        env, msg = the_message(d, "bob@rdns.test")
        assert env.hostname == "localhost"
        assert msg.startswith(f"Received: from {CLIENT} (localhost [127.0.0.1])\r\n".encode())
        assert "smtp connected address=127.0.0.1 host=localhost" in d.log()
        if IPV6:
            assert rcpt_codes("::1", port) == named
            assert "smtp connected address=::1 host=localhost" in d.log()

        # an edit counts at the next connection: another name, not in <names>
        rewrite(hosts, "127.0.0.1 renamed.example.test\n")
        assert rcpt_codes("127.0.0.1", port) == {
            "bob@rdns.test": 250,
            "bob@table.test": 550,
            "bob@nordns.test": 550,
        }
        assert "smtp connected address=127.0.0.1 host=renamed.example.test" in d.log()

        # no hosts file and no DNS: no name, as before
        hosts.unlink()
        assert rcpt_codes("127.0.0.1", port) == {
            "bob@rdns.test": 550,
            "bob@table.test": 550,
            "bob@nordns.test": 250,
        }
        assert "smtp connected address=127.0.0.1 host=<unknown>" in d.log()
        assert "dns:" not in d.log()  # nothing failed: nothing to warn about
    finally:
        d.stop()


def test_relay_host_named_in_the_hosts_file(tmp_path: Path, shared: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 smarthost.lab\n")
    (tmp_path / "b").mkdir()
    b, port_b = start(
        tmp_path / "b",
        f"""{USERS}
listen on 127.0.0.1 port PORT
action "local" maildir "{shared}/b/%{{user.username}}" userbase <users>
match from any for domain "example.net" action "local"
""",
        MTA_HOSTS=str(hosts),
    )
    (tmp_path / "a").mkdir()
    a, port_a = start(
        tmp_path / "a",
        f"""{USERS}
listen on 127.0.0.1 port PORT
action "out" relay host "smtp://smarthost.lab:{port_b}" helo {CLIENT_A}
match from any for domain "example.net" action "out"
""",
        MTA_HOSTS=str(hosts),
    )
    try:
        with smtplib.SMTP("127.0.0.1", port_a, local_hostname=CLIENT, timeout=10) as client:
            assert client.sendmail("alice@example.org", ["bob@example.net"], MESSAGE) == {}
        wait_for(lambda: has_mail(shared / "b" / "bob"))
        [message] = list(mailbox.Maildir(str(shared / "b" / "bob"), create=False))
        # B's header names A's connection from the hosts file too
        received = message.get_all("Received") or []
        assert received[0].startswith(f"from {CLIENT_A} (localhost [127.0.0.1])")
        wait_for(lambda: a.queued() == [])
        [line] = [line for line in a.log().splitlines() if " mta delivery " in line]
        assert "result=Ok" in line and 'relay="127.0.0.1 (smarthost.lab)"' in line, a.log()
    finally:
        a.stop()
        b.stop()

"""A test server's log lines include those its worker threads log, and several
servers at once keep them apart (through the public names and ``mtactl``)."""

from __future__ import annotations

import pathlib
import smtplib

from mta.testing import MailServer
from tests.testing.control import mtactl

REFUSED = "update refused, previous contents kept"


def config(senders: pathlib.Path) -> str:
    """Mail from the senders listed in the file ``senders`` only (relayed: no
    recipient is looked up; no test here gets as far as DATA)."""
    return f"""table allowed file:{senders}
listen on 127.0.0.1 port 0
action "out" relay host "smtp://127.0.0.1:9"
match from any mail-from <allowed> for any action "out"
"""


def accepts(server: MailServer, sender: str) -> bool:
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail(sender)
        code, _ = client.rcpt("bob@example.com")
        return code == 250


def refusals(server: MailServer) -> list[str]:
    return [line for line in server.log_lines if REFUSED in line]


def test_a_line_logged_in_a_worker_thread_is_in_log_lines(tmp_path: pathlib.Path) -> None:
    senders = tmp_path / "senders"
    senders.write_text("alice@example.org\n")
    with MailServer(config(senders)) as server:
        assert accepts(server, "alice@example.org")
        senders.unlink()  # the update cannot read it: the old contents stay
        result = mtactl(server, "update", "table", "allowed")
        assert result.returncode == 1, result.stdout
        [line] = refusals(server)  # logged by the thread that read the file
        assert line.startswith("table allowed: update refused") and str(senders) in line
        assert accepts(server, "alice@example.org")
        assert not accepts(server, "mallory@example.org")


def test_two_servers_at_once_keep_their_worker_thread_lines_apart(
    tmp_path: pathlib.Path,
) -> None:
    files = [tmp_path / "one" / "senders", tmp_path / "two" / "senders"]
    for file in files:
        file.parent.mkdir()
        file.write_text("alice@example.org\n")
    with MailServer(config(files[0])) as one, MailServer(config(files[1])) as two:
        for file in files:
            file.unlink()
        assert mtactl(one, "update", "table", "allowed").returncode == 1
        assert mtactl(two, "update", "table", "allowed").returncode == 1
        [of_one] = refusals(one)
        [of_two] = refusals(two)
    assert str(files[0]) in of_one and str(files[1]) not in of_one
    assert str(files[1]) in of_two and str(files[0]) not in of_two

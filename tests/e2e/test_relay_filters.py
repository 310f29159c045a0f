"""End to end: a relay action's filter (issue 14).  Instance A relays to
instance B with ``action "out" relay host smtp://127.0.0.1:PORT filter f``;
f is protocol_filter.py registered for ``report|smtp-out|*`` and logs every
line it receives.  It hears the relay session from link-connect to
link-disconnect with the ids A logs; a filter that dies never holds a relay
up (tests/filters/test_relay_oracle.py holds the events to OpenSMTPD 6.8's)."""

from __future__ import annotations

import getpass
import json
import mailbox
import pathlib
import re
import shlex
import smtplib
import sys
import time
from collections.abc import Mapping

from tests.e2e.daemon import Daemon, has_mail, start, wait_for

FILTER = pathlib.Path(__file__).parents[1] / "filters" / "protocol_filter.py"
USERS = 'table users { bob = "65534:65534:/nonexistent", alice = "65534:65534:/nonexistent" }'
MESSAGE = b"From: alice@localhost\r\nSubject: relayed\r\n\r\nHello.\r\n.a dot line\r\n"
REPORTS = {"subsystem": "smtp-out", "reports": ["*"], "phases": []}


def receiver(directory: pathlib.Path, shared: pathlib.Path) -> tuple[Daemon, int]:
    """Instance B: delivers mail for its users at example.net (carol is none)."""
    directory.mkdir()
    return start(
        directory,
        f"""{USERS}
listen on 127.0.0.1 port PORT
action "local" maildir "{shared}/b/%{{user.username}}" userbase <users>
match from any for domain "example.net" action "local"
""",
    )


def sender(
    directory: pathlib.Path, shared: pathlib.Path, port_b: int, command: str
) -> tuple[Daemon, int]:
    """Instance A: its listener and its relay action both name filter f (run as
    the test's own user: run by root, a filter naming none runs as nobody, who
    cannot reach this Python)."""
    directory.mkdir()
    return start(
        directory,
        f"""{USERS}
filter "f" proc-exec "{command}" user {getpass.getuser()}
mta limit session-keepalive 0
listen on 127.0.0.1 port PORT filter "f"
action "local" maildir "{shared}/a/%{{user.username}}" userbase <users>
action "out" relay host "smtp://127.0.0.1:{port_b}" filter "f"
match from any for domain "localhost" action "local"
match from any for any action "out"
""",
    )


def protocol_filter(
    directory: pathlib.Path, script: Mapping[str, object]
) -> tuple[str, pathlib.Path]:
    """The command running protocol_filter.py with ``script``, and its log."""
    directory.mkdir(parents=True, exist_ok=True)
    path, log = directory / "f.json", directory / "f.log"
    path.write_text(json.dumps(script))
    return " ".join(shlex.quote(str(p)) for p in (sys.executable, FILTER, log, path)), log


def send(port: int, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@localhost", rcpts, MESSAGE)


def received(log: pathlib.Path) -> list[list[str]]:
    """The lines the filter received, split in fields."""
    text = log.read_text() if log.exists() else ""
    return [line[2:].split("|") for line in text.splitlines() if line.startswith("< ")]


def test_the_relay_filter_hears_the_relay_session(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    b, port_b = receiver(tmp_path / "b", shared)
    command, log = protocol_filter(tmp_path / "f", REPORTS)
    a, port_a = sender(tmp_path / "a", shared, port_b, command)
    try:
        send(port_a, ["bob@example.net", "carol@example.net"])
        wait_for(lambda: has_mail(shared / "b" / "bob"))
        wait_for(lambda: any(f[4] == "link-disconnect" for f in received(log) if len(f) > 4))
        lines = received(log)
        a_log = a.log()
    finally:
        a.stop()
        b.stop()
    [message] = list(mailbox.Maildir(str(shared / "b" / "bob"), create=False))
    assert message["Subject"] == "relayed"

    # the proc serves both subsystems; it registered smtp-out reports only
    config = [f[1:] for f in lines if f[0] == "config"]
    assert ["subsystem", "smtp-in"] in config and ["subsystem", "smtp-out"] in config
    reports = [f for f in lines if f[0] == "report"]
    assert {f[3] for f in reports} == {"smtp-out"}
    assert {f[1] for f in reports} == {"0.7"}
    [session] = {f[5] for f in reports}
    assert f"{session} mta connecting address=smtp://127.0.0.1:{port_b}" in a_log

    msgid = re.search(r" smtp message msgid=([0-9a-f]{8}) ", a_log)
    assert msgid is not None
    m = msgid[1]
    envelope = re.compile(r" smtp envelope evpid=([0-9a-f]{16}) from=<[^>]*> to=<([^>]*)>")
    evpids = {to: evpid for evpid, to in envelope.findall(a_log)}
    events = [(f[4], f[6:]) for f in reports]
    params = dict(events)  # the last of each
    helo = params["link-identify"][1]
    commit_size = params["tx-commit"][1]
    clients = [values[0] for name, values in events if name == "protocol-client"]
    rcpts = [line[9:-1] for line in clients if line.startswith("RCPT TO:<")]
    assert sorted(rcpts) == ["bob@example.net", "carol@example.net"]
    tx_rcpt = {
        "bob@example.net": [("tx-rcpt", [m, "ok", "bob@example.net"])],
        "carol@example.net": [
            ("tx-rollback", [m]),
            ("tx-reset", [m]),
            ("tx-rcpt", [m, "permfail", "carol@example.net"]),
        ],
    }
    # B offers PIPELINING: MAIL, both RCPTs and DATA go in one write; the
    # envelopes are reported as each RCPT's reply is read (after tx-begin)
    assert [e for e in events if not e[0].startswith("protocol-")] == [
        ("link-connect", params["link-connect"]),
        ("link-greeting", params["link-greeting"]),
        ("link-identify", ["EHLO", helo]),
        ("tx-begin", [m]),
        ("tx-mail", [m, "ok", "alice@localhost"]),
        *(("tx-envelope", [m, evpids[rcpts[0]]]), *tx_rcpt[rcpts[0]]),
        *(("tx-envelope", [m, evpids[rcpts[1]]]), *tx_rcpt[rcpts[1]]),
        ("tx-data", [m, "ok"]),
        ("tx-commit", [m, commit_size]),
        ("tx-reset", [m]),
        ("link-disconnect", []),
    ]
    rdns, fcrdns, src, dest = params["link-connect"]
    # no hosts file here (MTA_HOSTS=none): the address stands for the name
    assert (rdns, fcrdns, dest) == ("127.0.0.1", "pass", f"127.0.0.1:{port_b}")
    assert src.startswith("127.0.0.1:") and src != dest
    assert int(commit_size) > len(MESSAGE)  # with A's Received header
    size = clients[1].rpartition("SIZE=")[2]
    assert clients == [
        f"EHLO {helo}",
        f"MAIL FROM:<alice@localhost> SIZE={size}",
        *(f"RCPT TO:<{rcpt}>" for rcpt in rcpts),
        "DATA",
        ".",
        "QUIT",
    ]
    servers = [values[0] for name, values in events if name == "protocol-server"]
    assert servers[0] == f"220 {params['link-greeting'][0]} ESMTP mta"
    assert servers[-1] == "221 2.0.0 Bye"
    assert any(line.startswith("550 ") and "carol@example.net" in line for line in servers)


DIES = """
import sys
for line in sys.stdin:
    if line.strip() == "config|ready":
        break
print("register|report|smtp-out|*", flush=True)
print("register|ready", flush=True)
sys.stdin.readline()
sys.exit(3)
"""


def test_a_relay_filter_that_dies_holds_no_relay_up(
    tmp_path: pathlib.Path, shared: pathlib.Path
) -> None:
    b, port_b = receiver(tmp_path / "b", shared)
    script = tmp_path / "dies.py"
    script.write_text(DIES)
    a, port_a = sender(tmp_path / "a", shared, port_b, f"{sys.executable} {script}")
    try:
        began = time.monotonic()
        for _ in range(3):
            send(port_a, ["bob@example.net"])
        wait_for(lambda: len(list((shared / "b" / "bob" / "new").glob("*"))) == 3)
        assert time.monotonic() - began < 15
        wait_for(lambda: a.log().count("result=Ok") == 3)
        assert "filter f: exited with status 3" in a.log()
    finally:
        a.stop()
        b.stop()

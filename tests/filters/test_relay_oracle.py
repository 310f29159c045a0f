"""A relay action's filter against OpenSMTPD 6.8: the same message relayed by
both servers to the same remote (smtp_sink.py: no PIPELINING, so both send
one command at a time), with protocol_filter.py registered for every
``smtp-out`` report; the filter must hear the same events, with the same
parameters, in the same order.

Normalised: what normalise_filter_log replaces (timestamps, ids, ports), the
protocol version (6.8 speaks 0.6, mta 0.7 by default: the handshake's
``smtpd-version`` / ``protocol`` lines and the version field), and the order
of the recipients: 6.8 sends them in its task's order, which is not the
order they came in (each RCPT's events are compared as a block, blocks
sorted by address).  ``tx-commit``'s size is each server's own message (the
Received header differs) and is checked against what the remote received.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from tests.filters.opensmtpd_oracle import (
    Run,
    Scenario,
    normalise_filter_log,
    opensmtpd_unavailable,
    protocol_filter,
    run_mta,
    run_opensmtpd,
)

SCRIPT = {"subsystem": "smtp-out", "reports": ["*"], "phases": []}
MESSAGE = "From: <alice@ext.test>\r\nSubject: relayed\r\n\r\nbody\r\n..a dot line\r\nend\r\n."
DIALOGUE = (
    "EHLO client.test",
    "MAIL FROM:<alice@ext.test>",
    "RCPT TO:<bob@far.test>",
    "RCPT TO:<nobody@far.test>",
    "RCPT TO:<carol@far.test>",
    "DATA",
    MESSAGE,
    "QUIT",
)
LOG = "logs/out.log"


def scenario() -> Scenario:
    files, command = protocol_filter(SCRIPT, "out")
    config = f"""
table users {{ alice = "65534:65534:/nonexistent" }}
filter "out" proc-exec "{command}"
mta limit session-keepalive 0
listen on 127.0.0.1 port @PORT@
action "local" maildir "@DIR@/mail/%{{user.username}}" userbase <users>
action "relay" relay host "smtp://127.0.0.1:@SINK@" filter "out"
match from any for domain "ext.test" action "local"
match from any for domain "far.test" action "relay"
"""
    return Scenario(
        config=config,
        dialogues=[DIALOGUE],
        files=files,
        collect=[LOG],
        sink=["nobody@far.test"],
    )


_VERSION = re.compile(r"^(< report)\|[^|]+\|")
_HANDSHAKE_VERSIONS = ("< config|smtpd-version|", "< config|protocol|")
_RCPT = re.compile(r"\|protocol-client\|[^|]+\|RCPT TO:<([^>]*)>")


def events(run: Run) -> list[str]:
    """The filter's log, normalised (see the module docstring); tx-commit's size
    is checked against what the sink received, then left out."""
    lines = normalise_filter_log(run.files[LOG])
    lines = [
        _VERSION.sub(r"\1|V|", line) for line in lines if not line.startswith(_HANDSHAKE_VERSIONS)
    ]
    [received] = run.sink
    size = str(len(received["content"].encode("latin-1")))
    commits = [line for line in lines if "|tx-commit|" in line]
    assert [line.rsplit("|", 1)[1] for line in commits] == [size], (run.server, commits)
    lines = [line.rsplit("|", 1)[0] + "|SIZE" if "|tx-commit|" in line else line for line in lines]
    return _sorted_recipients(lines)


def _sorted_recipients(lines: list[str]) -> list[str]:
    """Each RCPT's events (from its protocol-client line up to the next
    protocol-client line) as a block, the blocks in address order."""
    starts = [i for i, line in enumerate(lines) if _RCPT.search(line)]
    if not starts:
        return lines
    end = next(i for i in range(starts[-1] + 1, len(lines)) if "|protocol-client|" in lines[i])
    bounds = [*starts, end]
    blocks = [lines[a:b] for a, b in itertools.pairwise(bounds)]
    blocks.sort(key=lambda block: _address(block[0]))
    # the envelope ids were numbered in the order seen: renumber them by position
    flat = [line for block in blocks for line in block]
    return lines[: starts[0]] + _renumber(flat) + lines[end:]


def _address(line: str) -> str:
    found = _RCPT.search(line)
    assert found is not None
    return found.group(1)


def _renumber(lines: list[str]) -> list[str]:
    names: dict[str, str] = {}
    pattern = re.compile(r"\|tx-envelope\|(ID\d+)\|(MSGID\d+)\|(ID\d+)$")

    def rename(match: re.Match[str]) -> str:
        name = names.setdefault(match[3], f"EVP{len(names) + 1}")
        return f"|tx-envelope|{match[1]}|{match[2]}|{name}"

    return [pattern.sub(rename, line) for line in lines]


@pytest.fixture(scope="module")
def opensmtpd() -> Run:
    why = opensmtpd_unavailable()
    if why is not None:
        pytest.skip(why)
    return run_opensmtpd(scenario())


@pytest.fixture(scope="module")
def mta() -> Run:
    return run_mta(scenario())


def relayed(run: Run) -> list[dict[str, Any]]:
    return [{"sender": r["sender"], "rcpts": sorted(r["rcpts"])} for r in run.sink]


def test_both_relay_the_message_to_the_accepted_recipients(opensmtpd: Run, mta: Run) -> None:
    expected = [{"sender": "alice@ext.test", "rcpts": ["bob@far.test", "carol@far.test"]}]
    assert relayed(opensmtpd) == expected
    assert relayed(mta) == expected


def test_the_relay_filter_hears_what_it_hears_from_opensmtpd(opensmtpd: Run, mta: Run) -> None:
    assert events(mta) == events(opensmtpd)


def test_what_opensmtpd_reports_to_a_relay_filter(opensmtpd: Run) -> None:
    """The record, stated: only smtp-out in the handshake; a refused recipient's
    tx-rollback and tx-reset before its tx-rcpt, and the transaction going on."""
    lines = events(opensmtpd)
    assert [line for line in lines if "config|subsystem" in line] == ["< config|subsystem|smtp-out"]
    shape = [line.split("|")[4] for line in lines if line.startswith("< report|")]
    assert shape == [
        "link-connect",
        "protocol-server",
        "link-greeting",
        "protocol-client",
        "link-identify",
        "protocol-server",
        "protocol-server",
        "protocol-client",
        "protocol-server",
        "tx-begin",
        "tx-mail",
        *("protocol-client", "tx-envelope", "protocol-server", "tx-rcpt"),  # bob
        *("protocol-client", "tx-envelope", "protocol-server", "tx-rcpt"),  # carol
        *("protocol-client", "tx-envelope", "protocol-server"),  # nobody
        *("tx-rollback", "tx-reset", "tx-rcpt"),
        "protocol-client",
        "protocol-server",
        "tx-data",
        "protocol-client",
        "protocol-server",
        "tx-commit",
        "tx-reset",
        "protocol-client",
        "protocol-server",
        "link-disconnect",
    ]
    connect = next(line for line in lines if "|link-connect|" in line)
    assert connect.endswith("|localhost|pass|127.0.0.1:PORT|127.0.0.1:PORT")

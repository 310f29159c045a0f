"""The filter cases observed on OpenSMTPD 6.8: each filter-result kind, junk, the
data-line changes and the misbehaviours, run with protocol_filter.py.

:data:`CASES` are the cases; :func:`scenario` makes one a Scenario (one
``proc-exec`` filter ``f`` on the listener, delivery to nobody's maildir,
the listener named ``mx.test`` so the machine's name never shows);
:func:`observe` reduces a Run to what was observed: the normalised
transcript, the delivered messages, whether the server exited, and the
``filter-response`` reports the filter saw (6.8's account of each decision).
``record_observations.py`` writes them for every case into
``oracle_observations.json``: the expected results for mta's filters, except
where DESIGN.md decides otherwise (6.8 exits when a filter dies or
misbehaves; mta fails the affected sessions temporarily and restarts it)."""

from __future__ import annotations

import socket
from typing import Any

import attrs

from tests.filters.opensmtpd_oracle import (
    Run,
    Scenario,
    normalise,
    normalise_filter_log,
    protocol_filter,
)

__all__ = ["CASES", "Case", "observe", "scenario"]

MESSAGE = "From: <a@ext.test>\r\nSubject: x\r\n\r\nbody|with|pipes\r\n..a dot line\r\nend\r\n."
EHLO = "EHLO client.test"
MAIL = "MAIL FROM:<a@ext.test>"
RCPT = "RCPT TO:<nobody@localhost>"
FULL = (EHLO, MAIL, RCPT, "DATA", MESSAGE, "QUIT")


@attrs.frozen
class Case:
    """One observation: a protocol_filter.py script and a dialogue; ``full_log``
    keeps the whole filter log (normalised) in the record; ``mta_differs``
    says why mta is not held to 6.8's answer (DESIGN.md decides otherwise)."""

    name: str
    script: dict[str, Any]
    dialogue: tuple[str, ...] = FULL
    full_log: bool = False
    reply_timeout: float = 10.0
    note: str = ""
    mta_differs: str = ""  # why mta must not do what 6.8 did (DESIGN.md), if it must not


MISBEHAVES = (
    "6.8 exits when a filter dies or breaks the protocol; mta (DESIGN.md) fails the "
    "affected sessions temporarily and restarts the filter"
)


def _respond(phase: str, response: str | list[str]) -> dict[str, Any]:
    return {"responses": {phase: response}}


# /work/shared/reference/opensmtpd-6.8-filter-trace.txt: the phases registered there,
# and its client's commands (Python's smtplib, which writes them in lower case)
TRACE_PHASES = ["connect", "helo", "ehlo", "mail-from", "rcpt-to", "data", "data-line", "commit"]
TRACE_DIALOGUE = (
    "ehlo client.test",
    "mail FROM:<a@ext.test> size=31",
    "rcpt TO:<nobody@localhost>",
    "data",
    "Subject: x\r\n\r\nbody|with|pipes\r\n.",
    "quit",
)

CASES: tuple[Case, ...] = (
    Case(
        "trace",
        {"phases": TRACE_PHASES},
        TRACE_DIALOGUE,
        full_log=True,
        note="the session of opensmtpd-6.8-filter-trace.txt",
    ),
    Case("proceed", {}, full_log=True, note="every phase proceeds, data-lines echoed"),
    Case("connect-reject", _respond("connect", "reject|550 5.7.1 go away"), (EHLO, MAIL, "QUIT")),
    Case("connect-disconnect", _respond("connect", "disconnect|421 4.7.0 bye now"), (EHLO,)),
    Case("connect-junk", _respond("connect", "junk")),
    Case("ehlo-reject", _respond("ehlo", "reject|550 5.7.1 bad helo"), (EHLO, MAIL, "QUIT")),
    Case("ehlo-rewrite", _respond("ehlo", "rewrite|rewritten.test")),
    Case(
        "mail-reject", _respond("mail-from", "reject|550 5.7.1 not you"), (EHLO, MAIL, RCPT, "QUIT")
    ),
    Case("mail-reject-451", _respond("mail-from", "reject|451 4.7.1 later"), (EHLO, MAIL, "QUIT")),
    Case(
        "mail-reject-421", _respond("mail-from", "reject|421 4.7.1 closing"), (EHLO, MAIL, "QUIT")
    ),
    Case(
        "mail-disconnect-550",
        _respond("mail-from", "disconnect|550 5.7.1 out"),
        (EHLO, MAIL, "QUIT"),
    ),
    Case("mail-reject-no-code", _respond("mail-from", "reject|hello"), (EHLO, MAIL, "QUIT")),
    Case("mail-reject-250", _respond("mail-from", "reject|250 fine"), (EHLO, MAIL, "QUIT")),
    Case("mail-rewrite", _respond("mail-from", "rewrite|<b@ext.test>")),
    Case("mail-rewrite-bare", _respond("mail-from", "rewrite|b@ext.test"), (EHLO, MAIL, "QUIT")),
    Case("mail-junk", _respond("mail-from", "junk")),
    Case(
        "mail-junk-first-transaction",
        _respond("mail-from", ["junk", "proceed"]),
        (EHLO, MAIL, RCPT, "DATA", MESSAGE, MAIL, RCPT, "DATA", MESSAGE, "QUIT"),
        note="junk at mail-from comes before the transaction exists: it marks the session",
    ),
    Case(
        "rcpt-reject",
        _respond("rcpt-to", "reject|550 5.7.1 no such"),
        (EHLO, MAIL, RCPT, "DATA", "QUIT"),
    ),
    Case(
        "rcpt-reject-second",
        _respond("rcpt-to", ["proceed", "reject|550 5.7.1 one is enough"]),
        (EHLO, MAIL, RCPT, "RCPT TO:<nobody@localhost>", "DATA", MESSAGE, "QUIT"),
    ),
    Case(
        "rcpt-rewrite",
        _respond("rcpt-to", "rewrite|<nobody@localhost>"),
        (EHLO, MAIL, "RCPT TO:<someone@far.test>", "DATA", MESSAGE, "QUIT"),
        note="the rewritten recipient is checked against the rules and delivered to",
    ),
    Case("rcpt-junk", _respond("rcpt-to", "junk")),
    Case(
        "data-reject",
        _respond("data", "reject|554 5.7.1 no data"),
        (EHLO, MAIL, RCPT, "DATA", "QUIT"),
    ),
    Case("data-junk", _respond("data", "junk")),
    Case("commit-reject", _respond("commit", "reject|554 5.7.1 spam")),
    Case("commit-disconnect", _respond("commit", "disconnect|421 4.7.1 spam bye")),
    Case(
        "commit-junk",
        _respond("commit", "junk"),
        note="6.8: fatalx, the daemon exits",
        mta_differs=MISBEHAVES,
    ),
    Case("quit-reject", _respond("quit", "reject|550 5.7.1 stay"), (EHLO, "QUIT", "NOOP", "QUIT")),
    Case(
        "data-rewrite",
        _respond("data", "rewrite|x"),
        (EHLO, MAIL, RCPT, "DATA", "RSET", "QUIT"),
        note="DATA's check runs on the new parameter and refuses it (500); the transaction stays",
    ),
    Case(
        "noop-rewrite",
        {"phases": ["noop", "rset"], "responses": {"noop": "rewrite|x", "rset": "rewrite|y"}},
        (EHLO, "NOOP", "RSET", "QUIT"),
        note="as for DATA: NOOP and RSET take no parameter",
    ),
    Case(
        "commit-rewrite",
        _respond("commit", "rewrite|x"),
        reply_timeout=3.0,
        note="500 at the end of DATA, then 6.8 answers nothing more (the session waits)",
        mta_differs="6.8 leaves the session waiting after its 500; mta rolls the "
        "transaction back and goes on (mta.server.requests)",
    ),
    Case("dataline-header", {"data_line": {"header": ["X-Filtered: yes"]}}),
    Case("dataline-body", {"data_line": {"body": ["replaced|body", "..dotted", ""]}}),
    Case(
        "result-report",
        _respond("mail-from", "report|hello there"),
        (EHLO, MAIL, "QUIT"),
        note="filter-result report is protocol 0.7: 6.8 exits (Invalid directive)",
        mta_differs="protocol 0.7's report result: 6.8 does not know it",
    ),
    Case(
        "exit-at-mail",
        {"misbehave": {"phase": "mail-from", "mode": "exit"}},
        (EHLO, MAIL),
        mta_differs=MISBEHAVES,
    ),
    Case(
        "garbage-at-mail",
        {"misbehave": {"phase": "mail-from", "mode": "garbage"}},
        (EHLO, MAIL),
        mta_differs=MISBEHAVES,
    ),
    Case(
        "hang-at-mail",
        {"misbehave": {"phase": "mail-from", "mode": "hang"}},
        (EHLO, MAIL),
        reply_timeout=3.0,
        note="no answer: the client waits (smtpd's session timeout is 300 s)",
    ),
    Case(
        "garbage-at-handshake",
        {"misbehave": {"phase": "ready", "mode": "garbage"}},
        (EHLO,),
        mta_differs=MISBEHAVES,
    ),
    Case("slow-dataline", {"misbehave": {"phase": "data-line", "mode": "slow", "delay": 0.05}}),
)

CONFIG = """\
filter f proc-exec "{command}"
listen on 127.0.0.1 port @PORT@ hostname mx.test filter f
action "local" maildir "@DIR@/mail/%{{user.username}}"
match from any for domain "localhost" action "local"
"""


def scenario(case: Case) -> Scenario:
    files, command = protocol_filter(case.script)
    return Scenario(
        config=CONFIG.format(command=command),
        files=files,
        dialogues=[list(case.dialogue)],
        collect=["logs/filter.log"],
        reply_timeout=case.reply_timeout,
        delivery_timeout=10.0,
    )


def observe(case: Case, run: Run) -> dict[str, Any]:
    """What a run of ``case`` showed, as recorded in oracle_observations.json."""
    view = normalise(run)
    lines = normalise_filter_log(run.files.get("logs/filter.log", ""))
    host = socket.gethostname()
    lines = [line.replace(f"config|admd|{host}", "config|admd|HOSTNAME") for line in lines]
    observed: dict[str, Any] = {
        "transcript": view["transcripts"][0] if view["transcripts"] else [],
        "delivered": [m for messages in view["delivered"].values() for m in messages],
        "server_exited": view["exit"] is not None,
        "filter_responses": [line for line in lines if "|filter-response|" in line],
    }
    if case.full_log:
        observed["filter_log"] = lines
    return observed

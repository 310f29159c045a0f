"""Builtin filters (``filter NAME phase P match [!]COND DECISION``) run by OpenSMTPD 6.8
and by mta on the same scenarios, in the same private namespace (the scenario's
/etc/hosts, its DNS zone), and compared once normalised (opensmtpd_oracle.normalise).

A scenario per decision (reject, disconnect, junk, rewrite, bypass, report) puts
one builtin filter per phase in a chain, each with a condition of its own (src,
rdns, fcrdns, helo, mail-from, rcpt-to; static, file and regex tables; negated or
not), and dialogues that meet each condition and miss it.  A protocol_filter.py
process heads the chain: it registers no phase, only the ``filter-response``
and ``filter-report`` events, so each server's own account of each decision
is compared too (the protocol version aside: 6.8 speaks 0.6, mta 0.7).  The
dialogues never send a command after one that was refused before its reply:
6.8 refuses pipelining, mta supports it (DESIGN.md).

Where mta differs by design, a test of its own states both answers:

- a client without a name, tested against an ``rdns`` table: 6.8 looks the
  text ``<unknown>`` up (so ``rdns regex ".*"`` matches it), mta treats no name
  as no match (mta.filters.builtin);
- a reject text without an enhanced status code: 6.8 sends it as it is, mta
  adds ``x.0.0`` (RFC 2034; mta.filters.verdict);
- a rewrite at commit: 6.8 answers 500 and then leaves the session waiting, mta
  rolls the transaction back and goes on (observations.py ``commit-rewrite``,
  tests/server/test_session_filters.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tests.filters.opensmtpd_oracle import (
    LOCALHOST,
    Run,
    Scenario,
    normalise,
    normalise_filter_log,
    opensmtpd_unavailable,
    protocol_filter,
    run_mta,
    run_opensmtpd,
)

OBSERVER_FILES, OBSERVER = protocol_filter(
    {"reports": ["filter-report", "filter-response"], "phases": []}, "obs"
)
TAIL = """\
action "local" maildir "@DIR@/mail/%{user.username}"
match from any for domain "localhost" action "local"
"""
MESSAGE = "From: <a@ext.test>\r\nSubject: x\r\n\r\nbody\r\n."
EHLO = "EHLO client.test"
MAIL = "MAIL FROM:<a@ext.test>"
RCPT = "RCPT TO:<nobody@localhost>"


def transaction(mail: str = MAIL, rcpt: str = RCPT) -> list[str]:
    return [mail, rcpt, "DATA", MESSAGE]


def scenario(
    filters: str,
    dialogues: Sequence[Sequence[str]],
    *,
    sources: Sequence[str] = (),
    files: Mapping[str, str] | None = None,
    hosts: str = LOCALHOST,
    dns: Sequence[str] | None = None,
) -> Scenario:
    """The builtin ``filters`` (one per line, ``filter NAME ...``) in a chain
    behind the observer, in the order written, on a listener named mx.test."""
    names = re.findall(r"^filter (\S+) ", filters, re.MULTILINE)
    config = (
        f'filter obs proc-exec "{OBSERVER}"\n'
        + filters
        + f"listen on 127.0.0.1 port @PORT@ hostname mx.test filter {{ obs, {', '.join(names)} }}\n"
        + TAIL
    )
    return Scenario(
        config=config,
        dialogues=dialogues,
        files={**OBSERVER_FILES, **(files or {})},
        collect=["logs/obs.log"],
        sources=sources,
        hosts=hosts,
        dns=dns,
    )


_VERSION = re.compile(r"^(< report\|)[^|]+\|")


def view(run: Run) -> dict[str, Any]:
    """What is compared: the normalised run, with the observer's log reduced to
    the filter-response and filter-report events it received."""
    seen = normalise(run)
    lines = normalise_filter_log(run.files.get("logs/obs.log", ""))
    seen["files"] = [
        _VERSION.sub(r"\1V|", line)
        for line in lines
        if "|filter-response|" in line or "|filter-report|" in line
    ]
    return seen


def both(scenario: Scenario) -> tuple[dict[str, Any], dict[str, Any]]:
    """The views of 6.8's run and of mta's (each checked to have run through)."""
    why = opensmtpd_unavailable()
    if why is not None:
        pytest.skip(why)
    oracle, mta = run_opensmtpd(scenario), run_mta(scenario, namespace=True)
    for run in (oracle, mta):
        assert run.exit is None and run.delivered_all, f"{run.server}:\n{run.log}"
    return view(oracle), view(mta)


# -- the scenarios ---------------------------------------------------------------------

REJECT = scenario(
    """\
table spammers file:@DIR@/spammers
table patterns file:@DIR@/patterns
table commithelo { "commit.test" }
filter r_src phase connect match src { 127.0.0.2 } reject "550 5.7.1 source refused"
filter r_rdns phase connect match rdns regex "^bad-" reject "550 5.7.1 name refused"
filter r_helo phase helo match helo regex "^bad[.]" reject "550 5.7.1 helo refused"
filter r_ehlo phase ehlo match !helo regex "[.]test$" reject "550 5.7.1 ehlo refused"
filter r_mail phase mail-from match mail-from <spammers> reject "550 5.7.1 sender refused"
filter r_rcpt phase rcpt-to match rcpt-to regex <patterns> reject "550 5.7.1 recipient refused"
filter r_data phase data match mail-from regex "^data-" reject "554 5.7.1 no data from you"
filter r_commit phase commit match helo <commithelo> reject "554 5.7.1 message refused"
""",
    [
        [EHLO, "QUIT"],  # from 127.0.0.2: src
        [EHLO, "QUIT"],  # from 127.0.0.3, named bad-host.test: rdns regex
        [EHLO, "QUIT"],  # from 127.0.0.4, named good-host.test: passes
        ["HELO bad.test", "HELO good.test", "QUIT"],
        ["EHLO client.example", EHLO, "QUIT"],
        [
            EHLO,
            "MAIL FROM:<spammer@bad.test>",
            "MAIL FROM:<x@junk.test>",
            "MAIL FROM:<Spammer@BAD.test>",
            MAIL,
            "RCPT TO:<root@localhost>",
            "RCPT TO:<abuse@localhost>",
            RCPT,
            "DATA",
            MESSAGE,
            "QUIT",
        ],
        [EHLO, "MAIL FROM:<data-x@ext.test>", RCPT, "DATA", "RSET", "QUIT"],
        ["EHLO commit.test", *transaction(), "QUIT"],
    ],
    sources=["127.0.0.2", "127.0.0.3", "127.0.0.4"],
    files={
        "spammers": "spammer@bad.test\n@junk.test\n",
        "patterns": "^root@\n^abuse@\n",
    },
    hosts=LOCALHOST + "127.0.0.3 bad-host.test\n127.0.0.4 good-host.test\n",
)

DISCONNECT = scenario(
    """\
table droprcpt { "drop@localhost", "@gone.test" }
filter d_src phase connect match src regex "^127[.]0[.]0[.]2$" disconnect "421 4.7.0 go away"
filter d_helo phase ehlo match helo regex "^drop" disconnect "421 4.7.1 bye"
filter d_mail phase mail-from match mail-from regex "^gone@" disconnect "550 5.7.1 gone"
filter d_rcpt phase rcpt-to match rcpt-to <droprcpt> disconnect "451 4.7.1 try later"
filter d_data phase data match mail-from regex "^nodata@" disconnect "554 5.7.1 no data"
filter d_commit phase commit match mail-from regex "^drop@" disconnect "421 4.7.1 dropped"
""",
    [
        [EHLO, "QUIT"],  # from 127.0.0.2
        ["EHLO drop.test", "QUIT"],
        [EHLO, "MAIL FROM:<gone@ext.test>", "QUIT"],
        [EHLO, MAIL, RCPT, "RCPT TO:<drop@localhost>", "QUIT"],
        [EHLO, MAIL, "RCPT TO:<x@gone.test>", "QUIT"],
        [EHLO, "MAIL FROM:<nodata@ext.test>", RCPT, "DATA", "QUIT"],
        [EHLO, *transaction("MAIL FROM:<drop@ext.test>"), "QUIT"],
        [EHLO, *transaction(), "QUIT"],
    ],
    sources=["127.0.0.2"],
)

JUNK = scenario(
    """\
filter j_src phase connect match src { 127.0.0.2 } junk
filter j_helo phase helo match helo regex "^junky" junk
filter j_mail phase mail-from match mail-from regex "^junk@" junk
filter j_rcpt phase rcpt-to match rcpt-to { "daemon@localhost" } junk
filter j_data phase data match mail-from regex "^datajunk@" junk
""",
    [
        [EHLO, *transaction(), "QUIT"],  # from 127.0.0.2: the session is junk
        ["HELO junky.test", *transaction(), *transaction(), "QUIT"],
        # junk at mail-from: before the transaction exists, so the session's
        [EHLO, *transaction("MAIL FROM:<junk@ext.test>"), *transaction(), "QUIT"],
        # junk at rcpt-to and data: the transaction's only
        [EHLO, *transaction(rcpt="RCPT TO:<daemon@localhost>"), *transaction(), "QUIT"],
        [EHLO, *transaction("MAIL FROM:<datajunk@ext.test>"), *transaction(), "QUIT"],
    ],
    sources=["127.0.0.2"],
)

REWRITE = scenario(
    """\
filter w_conn phase connect match src { 127.0.0.2 } rewrite "10.0.0.1"
filter w_helo phase helo match helo regex "^old" rewrite "new.test"
filter w_ehlo phase ehlo match helo regex "^old" rewrite "newer.test"
filter w_mail phase mail-from match mail-from regex "^alias@" rewrite "<b@ext.test>"
filter w_rcpt phase rcpt-to match rcpt-to regex "^postmaster@" rewrite "<nobody@localhost>"
filter w_away phase rcpt-to match rcpt-to regex "^away@" rewrite "<someone@far.test>"
filter w_bare phase rcpt-to match rcpt-to regex "^bare@" rewrite "nobody@localhost"
filter w_data phase data match mail-from regex "^datarw@" rewrite "x"
""",
    [
        [EHLO, *transaction(), "QUIT"],  # from 127.0.0.2: a rewrite at connect is ignored
        [
            "HELO old.test",
            *transaction("MAIL FROM:<alias@ext.test>", "RCPT TO:<postmaster@localhost>"),
            "QUIT",
        ],
        [
            "EHLO old.test",
            MAIL,
            "RCPT TO:<away@localhost>",  # rewritten to a recipient no rule accepts
            "RCPT TO:<bare@localhost>",  # rewritten to no path: a syntax error
            RCPT,
            "DATA",
            MESSAGE,
            "QUIT",
        ],
        [EHLO, "MAIL FROM:<datarw@ext.test>", RCPT, "DATA", "QUIT"],  # DATA takes no argument
    ],
    sources=["127.0.0.2"],
)

BYPASS = scenario(
    """\
table vip { "vip@ext.test" }
filter b_conn phase connect match src { 127.0.0.2 } bypass
filter r_conn phase connect match src regex "^127[.]0[.]0[.][23]$" reject "550 5.7.1 not there"
filter b_mail phase mail-from match mail-from <vip> bypass
filter r_mail phase mail-from match !mail-from regex "^ok@" reject "550 5.7.1 senders refused"
filter r_rcpt phase rcpt-to match mail-from <vip> reject "550 5.7.1 no bypass here"
""",
    [
        [EHLO, "QUIT"],  # from 127.0.0.2: bypassed
        [EHLO, "QUIT"],  # from 127.0.0.3: refused
        [
            EHLO,
            "MAIL FROM:<vip@ext.test>",  # bypasses r_mail...
            RCPT,  # ...but not the rcpt-to phase
            "RSET",
            MAIL,
            *transaction("MAIL FROM:<ok@ext.test>"),
            "QUIT",
        ],
    ],
    sources=["127.0.0.2", "127.0.0.3"],
)

REPORT = scenario(
    """\
filter p_conn phase connect match src regex "^127[.]" report "connect seen"
filter p_helo phase ehlo match helo regex "^client" report "helo seen|with a pipe"
filter p_mail phase mail-from match mail-from regex "^a@" report "sender seen"
filter r_mail phase mail-from match mail-from regex "^a@" reject "550 5.7.1 after the report"
filter p_rcpt phase rcpt-to match rcpt-to regex "^nobody@" report "recipient seen"
filter p_data phase data match src regex "." report "data seen"
filter p_commit phase commit match src regex "." report "commit seen"
""",
    [[EHLO, MAIL, *transaction("MAIL FROM:<b@ext.test>"), "QUIT"]],
)

# names from the scenario's DNS zone (dnsmasq): 127.0.0.2 is client.example.test
# and back, 127.0.0.5 says forged.example.test, which is 127.0.0.9, 127.0.0.6 has
# no name; 127.0.0.1 is localhost (/etc/hosts)
ZONE = [
    "--local=/test/",
    "--local=/in-addr.arpa/",
    "--host-record=client.example.test,127.0.0.2",
    "--ptr-record=5.0.0.127.in-addr.arpa,forged.example.test",
    "--host-record=forged.example.test,127.0.0.9",
    "--host-record=other.sample.test,127.0.0.7",
]

RDNS = scenario(
    """\
table names { "*.example.test" }
filter n_rdns phase connect match !rdns reject "550 5.7.1 no name"
filter n_fc phase ehlo match !fcrdns reject "550 5.7.1 not confirmed"
filter t_rdns phase mail-from match rdns <names> junk
filter x_rdns phase rcpt-to match rdns regex "^other[.]" reject "550 5.7.1 not you"
""",
    [
        ["EHLO a.test", "QUIT"],
        ["EHLO a.test", *transaction(), "QUIT"],
        ["EHLO a.test", "QUIT"],
        ["EHLO a.test", MAIL, RCPT, "QUIT"],
        ["EHLO a.test", *transaction(), "QUIT"],
    ],
    sources=["127.0.0.6", "127.0.0.2", "127.0.0.5", "127.0.0.7", "127.0.0.1"],
    dns=ZONE,
)

SCENARIOS = {
    "reject": REJECT,
    "disconnect": DISCONNECT,
    "junk": JUNK,
    "rewrite": REWRITE,
    "bypass": BYPASS,
    "report": REPORT,
    "rdns-fcrdns": RDNS,
}


@functools.cache
def compared(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``both`` for a scenario of SCENARIOS, run once for the module's tests."""
    return both(SCENARIOS[name])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_mta_decides_as_opensmtpd(name: str) -> None:
    oracle, mta = compared(name)
    assert mta == oracle


def test_the_scenarios_show_their_decisions() -> None:
    """A few of 6.8's answers stated plainly, so that the comparison above is
    known to cover each decision (two servers agreeing on nothing would pass)."""
    oracle, _ = compared("reject")
    # the file table's user@domain and @domain entries, matched whatever the case
    assert oracle["transcripts"][5].count("550 5.7.1 sender refused") == 3
    assert oracle["transcripts"][5].count("550 5.7.1 recipient refused") == 2
    oracle, _ = compared("rewrite")
    assert "250 mx.test Hello new.test [127.0.0.1], pleased to meet you" in oracle["transcripts"][1]
    oracle, _ = compared("junk")
    spam = [m for m in oracle["delivered"]["nobody"] if "\nX-Spam: Yes\n" in m]
    assert (len(spam), len(oracle["delivered"]["nobody"])) == (6, 8)
    assert len(oracle["delivered"]["daemon"]) == 1
    assert "\nX-Spam: Yes\n" in oracle["delivered"]["daemon"][0]
    oracle, _ = compared("report")
    assert (
        "< report|V|TS|smtp-in|filter-report|ID1|builtin|p_helo|helo seen|with a pipe"
        in (oracle["files"])
    )


def test_a_nameless_client_is_unknown_to_6_8_and_matches_no_rdns_table_in_mta() -> None:
    """Differs by design: 6.8 looks ``<unknown>`` up in the table."""
    oracle, mta = both(
        scenario(
            'filter u phase ehlo match rdns regex ".*" reject "550 5.7.1 any name"\n',
            [["EHLO a.test", "QUIT"], ["EHLO a.test", "QUIT"]],
            sources=["127.0.0.6", "127.0.0.2"],
            dns=ZONE,
        )
    )
    assert oracle["transcripts"][0][2] == "550 5.7.1 any name"
    assert mta["transcripts"][0][2] == "250-mx.test Hello a.test [127.0.0.6], pleased to meet you"
    # a client with a name: the same
    assert oracle["transcripts"][1] == mta["transcripts"][1]
    assert oracle["transcripts"][1][2] == "550 5.7.1 any name"


def test_mta_adds_an_enhanced_status_code_to_a_reject_text_without_one() -> None:
    """Differs by design (RFC 2034): the rest of the session is the same."""
    oracle, mta = both(
        scenario(
            'filter r phase mail-from match mail-from regex "^a@" reject "550 go away"\n'
            'filter t phase rcpt-to match rcpt-to regex "^x@" reject "451 later"\n',
            [[EHLO, MAIL, "MAIL FROM:<b@ext.test>", "RCPT TO:<x@localhost>", "QUIT"]],
        )
    )
    assert oracle["transcripts"][0][9:14:2] == ["550 go away", "250 2.0.0 Ok", "451 later"]
    assert mta["transcripts"][0][9:14:2] == ["550 5.0.0 go away", "250 2.0.0 Ok", "451 4.0.0 later"]
    enhanced = re.compile(r"^([45]\d\d )[45]\.0\.0 ")  # on the refusals
    assert [enhanced.sub(r"\1", line) for line in mta["transcripts"][0]] == oracle["transcripts"][0]
    # the filter-response reports carry the filter's text as it was written
    assert mta["files"] == oracle["files"]

"""The harness proved on a configuration without filters: OpenSMTPD 6.8 and mta
answer the same dialogues alike and deliver the same content, once
normalised (opensmtpd_oracle.normalise).

The scenario avoids one place where 6.8 is wrong and mta is not: 6.8's
Received header names in ``for <...>`` the last recipient given, even one it
refused (``tx->evp`` is overwritten by the failed RCPT), so here the refused
recipient comes before the accepted one."""

from __future__ import annotations

import pytest

from tests.filters.opensmtpd_oracle import (
    Scenario,
    namespace_unavailable,
    normalise,
    opensmtpd_unavailable,
    run_mta,
    run_opensmtpd,
)

CONFIG = """\
listen on 127.0.0.1 port @PORT@
action "local" maildir "@DIR@/mail/%{user.username}"
match from any for domain "localhost" action "local"
"""

MESSAGE = "From: a@ext.test\r\nSubject: plain\r\n\r\nbody|with|pipes\r\n..a dot line\r\nlast\r\n."

PLAIN = Scenario(
    config=CONFIG,
    dialogues=[
        [
            "EHLO client.test",
            "MAIL FROM:<a@ext.test>",
            "RCPT TO:<someone@far.test>",  # refused: no rule matches
            "RCPT TO:<nobody@localhost>",
            "DATA",
            MESSAGE,
            "QUIT",
        ],
        [
            "HELO again.test",
            "MAIL FROM:<>",
            "RCPT TO:<nobody@localhost>",
            "DATA",
            "x: y\r\n.",
            "QUIT",
        ],
    ],
)


@pytest.mark.parametrize("namespace", [False, True], ids=["outside", "namespace"])
def test_mta_alone_runs_the_scenario(namespace: bool) -> None:
    """The mta side needs no root outside a namespace: two sessions, two messages
    in nobody's maildir (run as root, mta delivers as nobody; unprivileged, as
    the test's user); in one (root), the same."""
    if namespace and (why := namespace_unavailable()) is not None:
        pytest.skip(why)
    run = run_mta(PLAIN, namespace=namespace)
    assert run.exit is None and run.delivered_all
    assert [t[-1] for t in run.transcripts] == ["221 2.0.0 Bye", "221 2.0.0 Bye"]
    assert (
        sum(line.endswith(" Message accepted for delivery") for t in run.transcripts for line in t)
        == 2
    )
    assert list(run.delivered) == ["nobody"]
    assert len(run.delivered["nobody"]) == 2
    # where it listened: port 25 of its own network namespace, or a free port here
    assert ("smtp: listening on 127.0.0.1:25\n" in run.log) == namespace


def test_opensmtpd_and_mta_agree_without_filters() -> None:
    why = opensmtpd_unavailable()
    if why is not None:
        pytest.skip(why)
    oracle = run_opensmtpd(PLAIN)
    assert oracle.exit is None and oracle.delivered_all, oracle.log
    assert normalise(oracle) == normalise(run_mta(PLAIN))

"""The normaliser of opensmtpd_oracle: it hides what legitimately differs
between OpenSMTPD and mta, and nothing else."""

from __future__ import annotations

import attrs

from tests.filters.opensmtpd_oracle import Run, normalise, normalise_filter_log

RECEIVED = (
    "Received: from c.test (localhost [127.0.0.1])\n"
    "\tby mx.test ({software}) with ESMTP id {msgid}\n"
    "\tfor <nobody@localhost>;\n"
    "\t{date}\n"
)
DATE1 = "Mon, 7 Dec 2026 17:03:28 +0000 (UTC)"
DATE2 = "Tue, 8 Dec 2026 01:00:00 +0000 (UTC)"


def run(
    server: str,
    msgid: str,
    *,
    date: str = DATE1,
    host: str = "mx.test",
    body: str = "body\n",
    received_id: str | None = None,
    extra: list[str] | None = None,
) -> Run:
    software = "OpenSMTPD" if server == "opensmtpd" else "mta"
    message = (
        "Return-Path: <a@ext.test>\nDelivered-To: nobody@localhost\n"
        + RECEIVED.format(software=software, msgid=received_id or msgid, date=date)
        + f"Subject: x\nDate: {date}\nMessage-ID: <0123456789abcdef@{host}>\n\n{body}"
    )
    transcript = [
        f"220 {host} ESMTP {software}",
        ">>> EHLO c.test",
        f"250-{host} Hello c.test [127.0.0.1], pleased to meet you",
        *(extra or []),
        "250 HELP",
        ">>> RCPT TO:<x@far.test>",
        "550 5.1.1 Invalid recipient: <x@far.test>"
        if server == "mta"
        else "550 Invalid recipient: <x@far.test>",
        ">>> .",
        f"250 2.0.0 {msgid} Message accepted for delivery",
    ]
    return Run(
        server=server,
        workdir=f"/tmp/{server}-dir",
        transcripts=[transcript],
        delivered={"nobody": [message]},
        files={"logs/f.log": f"path /tmp/{server}-dir/x"},
        log="anything",
        exit=None,
        delivered_all=True,
    )


def test_what_legitimately_differs_is_hidden() -> None:
    oracle = run("opensmtpd", "188647ed")
    ours = run("mta", "9ab111a6", date=DATE2, extra=["250-PIPELINING", "250-SMTPUTF8"])
    assert normalise(oracle) == normalise(ours)
    view = normalise(oracle)
    assert view["transcripts"][0][0] == "220 mx.test ESMTP SOFTWARE"
    assert view["transcripts"][0][-1] == "250 2.0.0 MSGID1 Message accepted for delivery"
    message = view["delivered"]["nobody"][0]
    assert "\tby mx.test (SOFTWARE) with ESMTP id MSGID1\n" in message
    assert "\tDATE\n" in message and "\nDate: DATE\n" in message
    assert "Message-ID: <GENERATED@mx.test>" in message
    assert view["files"] == {"logs/f.log": "path @DIR@/x"}


def test_what_is_behaviour_is_kept() -> None:
    oracle = normalise(run("opensmtpd", "188647ed"))
    assert normalise(run("mta", "9ab111a6", host="other.test")) != oracle
    assert normalise(run("mta", "9ab111a6", body="other\n")) != oracle
    # the Received header names another message than the one accepted
    assert normalise(run("mta", "9ab111a6", received_id="00000001")) != oracle
    # a date in the body is content
    assert normalise(run("mta", "9ab111a6", body=f"{DATE2}\n")) != normalise(
        run("opensmtpd", "188647ed", body=f"{DATE1}\n")
    )
    # another extension than mta's own two
    assert normalise(run("mta", "9ab111a6", extra=["250-CHUNKING"])) != oracle


def test_the_order_of_deliveries_is_not_compared() -> None:
    one, two = run("opensmtpd", "188647ed"), run("opensmtpd", "188647ee", body="2\n")
    both = attrs.evolve(
        one, delivered={"nobody": one.delivered["nobody"] + two.delivered["nobody"]}
    )
    swapped = attrs.evolve(
        one, delivered={"nobody": two.delivered["nobody"] + one.delivered["nobody"]}
    )
    assert normalise(both) == normalise(swapped)


def test_filter_logs() -> None:
    log = (
        "< config|admd|mx.test\n"
        "< report|0.6|1796663008.663741|smtp-in|link-connect|de49ca932ceadb56|localhost|pass|"
        "127.0.0.1:39760|127.0.0.1:25\n"
        "< filter|0.6|1796663008.663825|smtp-in|connect|de49ca932ceadb56|146e95a85d08b965|"
        "localhost|127.0.0.1\n"
        "> filter-result|de49ca932ceadb56|146e95a85d08b965|proceed\n"
        "< report|0.6|1796663008.665895|smtp-in|tx-begin|de49ca932ceadb56|188647ed\n"
        "< report|0.6|1796663008.664763|smtp-in|protocol-server|de49ca932ceadb56|"
        "250-SIZE 36700160\n"
        "< filter|0.6|1796663008.667998|smtp-in|data-line|de49ca932ceadb56|146e95ae5a1f2bc0|"
        "\tby mx.test (OpenSMTPD) with ESMTP id 188647ed\n"
        "< filter|0.6|1796663008.668004|smtp-in|data-line|de49ca932ceadb56|146e95ae5a1f2bc0|"
        f"\t{DATE1}\n"
        "# exit 0 at mail-from\n"
    )
    assert normalise_filter_log(log) == [
        "< config|admd|mx.test",
        "< report|0.6|TS|smtp-in|link-connect|ID1|localhost|pass|127.0.0.1:PORT|127.0.0.1:PORT",
        "< filter|0.6|TS|smtp-in|connect|ID1|ID2|localhost|127.0.0.1",
        "> filter-result|ID1|ID2|proceed",
        "< report|0.6|TS|smtp-in|tx-begin|ID1|MSGID1",
        "< report|0.6|TS|smtp-in|protocol-server|ID1|250-SIZE 36700160",
        "< filter|0.6|TS|smtp-in|data-line|ID1|ID3|\tby mx.test (SOFTWARE) with ESMTP id MSGID1",
        "< filter|0.6|TS|smtp-in|data-line|ID1|ID3|\tDATE",
        "# exit 0 at mail-from",
    ]

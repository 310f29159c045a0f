"""oracle_observations.json (what OpenSMTPD 6.8 did in each case of
observations.py) is up to date with the cases, and, where 6.8 can run here,
still what 6.8 does: the expected results the mta filter tests use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.filters.observations import CASES, Case, observe, scenario
from tests.filters.opensmtpd_oracle import opensmtpd_unavailable, run_opensmtpd

RECORD = Path(__file__).with_name("oracle_observations.json")
RECORDED: dict[str, dict[str, Any]] = {
    case["name"]: case for case in json.loads(RECORD.read_text())["cases"]
}


def split_log(lines: list[str]) -> tuple[list[str], list[str]]:
    """A filter's log as two sequences whose order is fixed: the reports, and the
    rest (handshake, requests, answers).  Between the two, order may vary: 6.8
    sends them from different channels (e.g. the 354's report and data-lines)."""
    reports = [line for line in lines if line.lstrip("< ").startswith("report")]
    return reports, [line for line in lines if not line.lstrip("< ").startswith("report")]


def test_every_case_is_recorded_as_it_is_defined() -> None:
    assert list(RECORDED) == [case.name for case in CASES]
    for case in CASES:
        record = RECORDED[case.name]
        assert (record["script"], record["dialogue"]) == (case.script, list(case.dialogue))


def test_the_record_shows_what_the_cases_are_about() -> None:
    """A few facts of the record, stated plainly (the rest is in the JSON)."""
    junk = RECORDED["connect-junk"]["delivered"][0]
    assert junk.split("\n")[2] == "X-Spam: Yes"  # after Return-Path and Delivered-To
    assert RECORDED["mail-reject-no-code"]["transcript"][-3:] == [
        "421 Internal server error",
        ">>> QUIT",
        "<<< closed",
    ]
    assert RECORDED["commit-junk"]["server_exited"]
    body = RECORDED["dataline-body"]["delivered"][0].partition("\n\n")[2]
    assert body == "replaced|body\n.dotted\n\n"


# the lines a filter receives in /work/shared/reference/opensmtpd-6.8-filter-trace.txt
# (a real 6.8 session, recorded by hand), by kind and event or phase
REFERENCE_TRACE = [
    *("config smtpd-version", "config smtp-session-timeout", "config subsystem"),
    *("config admd", "config ready", "report link-connect", "filter connect"),
    *("report filter-response", "report protocol-server", "report link-greeting"),
    *("report protocol-client", "filter ehlo", "report filter-response"),
    *("report link-identify", *["report protocol-server"] * 6, "report protocol-client"),
    *("filter mail-from", "report filter-response", "report protocol-server"),
    *("report tx-begin", "report tx-mail", "report protocol-client", "filter rcpt-to"),
    *("report filter-response", "report tx-envelope", "report protocol-server"),
    *("report tx-rcpt", "report protocol-client", "filter data", "report filter-response"),
    *(*["filter data-line"] * 4, "report protocol-server", "report tx-data"),
    *(*["filter data-line"] * 4, "report protocol-client", "filter commit"),
    *("report filter-response", "report protocol-server", "report tx-commit"),
    *("report tx-reset", "report protocol-client", "report filter-response"),
    *("report protocol-server", "report link-disconnect"),
]


def shape(lines: list[str]) -> list[str]:
    """What the filter received, by kind and event or phase."""
    fields = [line[2:].split("|") for line in lines if line.startswith("< ")]
    return [f"{f[0]} {f[4]}" if f[0] in ("report", "filter") else f"{f[0]} {f[1]}" for f in fields]


def test_the_trace_case_has_the_reference_shape() -> None:
    """The same session as the reference trace, through protocol_filter.py, shows
    the same lines, in the same order within reports and within the rest."""
    recorded = RECORDED["trace"]["filter_log"]
    assert split_log(shape(recorded)) == split_log(REFERENCE_TRACE)
    assert len(shape(recorded)) == len(REFERENCE_TRACE)
    assert "< report|0.6|TS|smtp-in|protocol-client|ID1|mail FROM:<a@ext.test> size=31" in recorded
    # 6.8 gives the filter the bare address, without the parameters
    assert "< filter|0.6|TS|smtp-in|mail-from|ID1|ID4|a@ext.test" in recorded
    assert "< filter|0.6|TS|smtp-in|data-line|ID1|ID8|body|with|pipes" in recorded


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_opensmtpd_still_does_what_was_recorded(case: Case) -> None:
    why = opensmtpd_unavailable()
    if why is not None:
        pytest.skip(why)
    observed = observe(case, run_opensmtpd(scenario(case)))
    expected = {k: v for k, v in RECORDED[case.name].items() if k in observed}
    if "filter_log" in observed:
        assert split_log(observed.pop("filter_log")) == split_log(expected.pop("filter_log"))
    assert observed == expected

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
    reports = [line for line in lines if line.startswith("< report|")]
    return reports, [line for line in lines if not line.startswith("< report|")]


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

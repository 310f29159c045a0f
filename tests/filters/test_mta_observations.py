"""mta's filters held to OpenSMTPD 6.8's answers (oracle_observations.json): the
same cases, run against ``mta -d``, must give the same transcripts, deliveries,
and filter-response reports (the protocol version aside), except where
DESIGN.md decides otherwise (the case's ``mta_differs``).

Until mta runs filter processes the filter never hears from it (its log stays
empty) and the cases are skipped, saying so."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.filters.observations import CASES, Case, observe, scenario
from tests.filters.opensmtpd_oracle import run_mta

RECORD = Path(__file__).with_name("oracle_observations.json")
RECORDED: dict[str, dict[str, Any]] = {
    case["name"]: case for case in json.loads(RECORD.read_text())["cases"]
}
_VERSION = re.compile(r"^(< report\|)[^|]+\|")
COMPARED = ("transcript", "delivered", "server_exited", "filter_responses")


def comparable(observed: dict[str, Any]) -> dict[str, Any]:
    view = {key: observed[key] for key in COMPARED}
    view["filter_responses"] = [_VERSION.sub(r"\1V|", line) for line in view["filter_responses"]]
    return view


@pytest.fixture(scope="module")
def mta_runs_filters() -> None:
    """Skips the module's tests (one mta run decides) while mta does not start
    filter processes."""
    probe = next(case for case in CASES if case.name == "proceed")
    if not run_mta(scenario(probe)).files.get("logs/filter.log"):
        pytest.skip("mta does not run filter processes yet (the filter never started)")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_mta_answers_as_opensmtpd_did(case: Case, mta_runs_filters: None) -> None:
    if case.mta_differs:
        pytest.skip(f"mta differs by design: {case.mta_differs}")
    observed = observe(case, run_mta(scenario(case)))
    assert comparable(observed) == comparable(RECORDED[case.name])

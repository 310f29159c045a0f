"""Tests for mta.relay.timeouts: RFC 5321 4.5.3.2 client timeouts per step."""

from __future__ import annotations

import pytest

from mta.relay.timeouts import ClientTimeouts, Step


def test_rfc_5321_values() -> None:
    timeouts = ClientTimeouts()
    assert {step: timeouts.seconds(step) for step in Step} == {
        Step.GREETING: 300.0,
        Step.HELLO: 300.0,
        Step.STARTTLS: 300.0,
        Step.TLS_HANDSHAKE: 300.0,
        Step.AUTH: 300.0,
        Step.MAIL: 300.0,
        Step.RCPT: 300.0,
        Step.DATA_INIT: 120.0,
        Step.DATA_BLOCK: 180.0,
        Step.DATA_TERM: 600.0,
        Step.RSET: 300.0,
        Step.QUIT: 300.0,
    }


def test_scaled_by_the_test_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTA_TIMEOUT_SCALE", "0.01")
    timeouts = ClientTimeouts.from_env()
    assert timeouts.seconds(Step.DATA_TERM) == pytest.approx(6.0)
    assert timeouts.seconds(Step.DATA_INIT) == pytest.approx(1.2)
    monkeypatch.setenv("MTA_TIMEOUT_SCALE", "zero")
    with pytest.raises(ValueError):
        ClientTimeouts.from_env()

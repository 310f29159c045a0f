"""Timeouts: RFC 5321 defaults and the one scaling knob."""

from __future__ import annotations

import pytest

from mta.server.timeouts import Timeouts, scale_from_env


def test_defaults_follow_rfc5321() -> None:
    t = Timeouts()
    assert t.command >= 300  # the server waits at least 5 minutes for a command
    assert t.data_block >= 180


def test_scale() -> None:
    assert scale_from_env({}) == 1.0
    assert scale_from_env({"MTA_TIMEOUT_SCALE": "0.01"}) == 0.01
    scaled = Timeouts().scaled(0.5)
    assert scaled.command == 150 and scaled.tls_handshake == 30


@pytest.mark.parametrize("bad", ["x", "0", "-1", "nan"])
def test_bad_scale_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError, match="MTA_TIMEOUT_SCALE"):
        scale_from_env({"MTA_TIMEOUT_SCALE": bad})

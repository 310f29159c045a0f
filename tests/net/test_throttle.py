"""Tests for mta.net.throttle: a repeated warning logged at most once per
interval, the rest at debug level, the count of those said with the next one."""

from __future__ import annotations

import logging

import pytest

from mta.net.throttle import Throttle


def test_once_per_interval_then_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    throttle = Throttle(logging.getLogger("mta.test"), 60.0, clock=lambda: now[0])
    logged = []
    with caplog.at_level(logging.DEBUG, "mta"):
        for step in (0.0, 1.0, 30.0, 28.9):  # t = 100, 101, 131, 159.9
            now[0] += step
            logged.append(throttle.warning("dns: lookup for %s failed: %s", "192.0.2.1", "timeout"))
        now[0] = 160.0
        logged.append(throttle.warning("dns: lookup for %s failed: %s", "192.0.2.2", "timeout"))
        now[0] = 170.0
        logged.append(throttle.warning("dns: lookup for %s failed: %s", "192.0.2.3", "timeout"))
        now[0] = 1000.0
        logged.append(throttle.warning("dns: lookup for %s failed: %s", "192.0.2.4", "timeout"))
    assert logged == [True, False, False, False, True, False, True]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "dns: lookup for 192.0.2.1 failed: timeout"),
        ("DEBUG", "dns: lookup for 192.0.2.1 failed: timeout"),
        ("DEBUG", "dns: lookup for 192.0.2.1 failed: timeout"),
        ("DEBUG", "dns: lookup for 192.0.2.1 failed: timeout"),
        (
            "WARNING",
            "dns: lookup for 192.0.2.2 failed: timeout"
            " (and 3 more like it since the last warning, logged at debug level)",
        ),
        ("DEBUG", "dns: lookup for 192.0.2.3 failed: timeout"),
        (
            "WARNING",
            "dns: lookup for 192.0.2.4 failed: timeout"
            " (and 1 more like it since the last warning, logged at debug level)",
        ),
    ]
    assert throttle.suppressed == 0

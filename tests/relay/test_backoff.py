"""Route back-off: penalties, delays, expiry and recovery, with times passed in."""

from __future__ import annotations

from mta.delivery.result import Result
from mta.relay.backoff import DELAY_ROUTE_MAX, RouteBackoff, RouteKey, route_delay

KEY: RouteKey = ("192.0.2.1", 25, None)
REFUSED = Result.tempfail("Connection refused")


def test_delays_grow_quadratically_up_to_an_hour() -> None:
    assert [route_delay(p) for p in (1, 2, 3, 4, 15, 16, 100)] == [
        15,
        60,
        135,
        240,
        3375,
        3600,
        3600,
    ]


def test_a_failed_route_is_held_until_its_delay_has_passed() -> None:
    backoff = RouteBackoff()
    assert backoff.held(KEY, 1000.0) is None
    assert backoff.failed(KEY, 1000.0, REFUSED) == 15
    assert backoff.held(KEY, 1000.0) is REFUSED
    assert backoff.held(KEY, 1014.9) is REFUSED
    assert backoff.held(KEY, 1015.0) is None
    # other ports and other sources are other routes
    assert backoff.held(("192.0.2.1", 587, None), 1001.0) is None
    assert backoff.held(("192.0.2.1", 25, "192.0.2.100"), 1001.0) is None


def test_failures_in_a_row_raise_the_penalty_and_a_success_clears_it() -> None:
    backoff = RouteBackoff()
    now = 0.0
    delays = []
    for _ in range(20):
        delay = backoff.failed(KEY, now, REFUSED)
        delays.append(delay)
        now += delay
    assert delays[:4] == [15, 60, 135, 240] and delays[-1] == DELAY_ROUTE_MAX
    backoff.succeeded(KEY)
    assert len(backoff) == 0 and backoff.held(KEY, now) is None
    assert backoff.failed(KEY, now, REFUSED) == 15


def test_the_last_error_is_kept() -> None:
    backoff = RouteBackoff()
    backoff.failed(KEY, 0.0, REFUSED)
    timeout = Result.tempfail("Connection timeout")
    backoff.failed(KEY, 20.0, timeout)
    assert backoff.held(KEY, 21.0) is timeout


def test_a_clock_that_went_back_does_not_hold_a_route_for_ever() -> None:
    backoff = RouteBackoff()
    backoff.failed(KEY, 100_000.0, REFUSED)
    assert backoff.held(KEY, 100_000.0 - DELAY_ROUTE_MAX) is None


def test_long_expired_routes_are_forgotten_when_there_are_many() -> None:
    backoff = RouteBackoff()
    for n in range(5000):
        backoff.failed((f"10.0.{n // 256}.{n % 256}", 25, None), 0.0, REFUSED)
    assert len(backoff) == 5000  # all still recent
    backoff.failed(("192.0.2.9", 25, None), 2 * DELAY_ROUTE_MAX, REFUSED)
    assert len(backoff) == 1


def test_disabled_routes_are_listed_and_can_be_enabled_by_hand() -> None:
    backoff = RouteBackoff()
    down = Result.tempfail("Connection refused")
    backoff.failed(("192.0.2.2", 25, None), 1000, down)
    backoff.failed(("192.0.2.1", 25, "198.51.100.1"), 990, down)
    backoff.failed(("192.0.2.1", 25, "198.51.100.1"), 1005, down)  # penalty 2: 60 s
    listed = backoff.disabled(1010)
    assert [(d.key, d.penalty, d.seconds_left) for d in listed] == [
        (("192.0.2.1", 25, "198.51.100.1"), 2, 55),
        (("192.0.2.2", 25, None), 1, 5),
    ]
    assert listed[0].error == down
    assert backoff.disabled(2000) == []  # expired ones are not
    assert backoff.enable("192.0.2.1") == 1
    assert backoff.held(("192.0.2.1", 25, "198.51.100.1"), 1010) is None
    assert backoff.enable() == 1 and len(backoff) == 0

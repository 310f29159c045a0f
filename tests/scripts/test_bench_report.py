"""The benchmark's report (scripts/benchlib/report.py): every run kept, the medians
count, ratios of medians, and the targets printed as PASS/FAIL lines (throughput
against aiosmtpd and the floor, memory per idle session, delivery at 4 sessions,
relay at every concurrency).  No timing is asserted."""

from __future__ import annotations

from typing import Any

import pytest

from tests import oracles

report = oracles.scripts_module("benchlib.report")


def _peer(name: str, runs: dict[int, list[float]], **kw: Any) -> Any:
    result = report.PeerResult(name, **kw)
    for c, rates in runs.items():
        for i, rate in enumerate(rates):
            result.record(c, rate, 1.0 + i)
    return result


def test_median_of_nothing_is_none_and_of_an_even_count_the_middle() -> None:
    assert report.median([]) is None
    assert report.median([3.0, 1.0, 2.0]) == 2.0
    assert report.median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_the_median_run_counts_not_the_best() -> None:
    mta = _peer("mta", {4: [100.0, 900.0, 300.0]})
    assert mta.runs[4] == [100.0, 900.0, 300.0]  # in the order they ran
    assert mta.rates[4] == 300.0
    assert mta.cpu_ms[4] == 2.0  # the median of 1.0, 2.0, 3.0


def test_ratios_and_verdicts_come_from_the_medians() -> None:
    mta = _peer("mta", {4: [300.0, 1000.0, 290.0], 100: [310.0, 320.0, 100.0]})
    aio = _peer("aiosmtpd", {4: [200.0, 100.0, 190.0], 100: [200.0, 210.0, 205.0]})
    floor = _peer("floor", {4: [400.0, 380.0, 390.0], 100: [500.0, 400.0, 450.0]})
    got = [(v.passed, v.text) for v in report.verdicts(mta, aio, [4, 100], floor)]
    assert got == [
        (True, "4 sessions: mta/aiosmtpd = 1.58x >= 1.5x"),  # 300 / 190
        (True, "100 sessions: mta/aiosmtpd = 1.51x >= 1.5x"),  # 310 / 205
        (True, "4 sessions: mta/floor = 0.77x >= 0.75x"),  # 300 / 390
        (False, "100 sessions: mta/floor = 0.69x >= 0.75x"),  # 310 / 450
        (True, "no collapse: mta at 100 sessions (310.0/s) >= at 4 (300.0/s)"),
    ]
    text = report.format_report(
        [mta, aio, floor], concurrencies=[4, 100], messages=10, size=1, idle=0, tool="t", repeat=3
    )
    assert "median of 3 runs" in text and "best" not in text
    assert "       4 sessions, mta        300.0, 1000.0, 290.0" in text
    assert "     100 sessions, floor      500.0, 400.0, 450.0" in text
    assert "FAIL  100 sessions: mta/floor = 0.69x >= 0.75x" in text
    assert "server CPU ms/message (median): mta 2.00 at 4, 2.00 at 100" in text


def test_a_peer_without_runs_is_not_measured() -> None:
    mta = _peer("mta", {4: [300.0]})
    floor = report.PeerResult("floor", failures=["start: boom"])
    verdicts = report.verdicts(mta, _peer("aiosmtpd", {4: [100.0]}), [4], floor)
    assert [(v.passed, v.text) for v in verdicts] == [
        (True, "4 sessions: mta/aiosmtpd = 3.00x >= 1.5x"),
        (False, "4 sessions: mta/floor >= 0.75x: not measured"),
    ]


@pytest.mark.parametrize(
    ("before", "idle", "greeted", "verdict"),
    [
        (10_000, 10_000 + 7 * 1000, 1000, "PASS  mta: memory per idle session = 7.0 KiB < 8 KiB"),
        (10_000, 10_000 + 9 * 500, 500, "FAIL  mta: memory per idle session = 9.0 KiB < 8 KiB"),
        (10_000, 20_000, 0, "FAIL  mta: memory per idle session < 8 KiB: not measured"),
    ],
)
def test_memory_per_idle_session_has_a_target(
    before: int, idle: int, greeted: int, verdict: str
) -> None:
    mta = report.PeerResult("mta", rss_before_kib=before, rss_idle_kib=idle, idle_greeted=greeted)
    aio = report.PeerResult("aiosmtpd", rss_before_kib=1, rss_idle_kib=2, idle_greeted=1)
    text = report.format_report([mta, aio], concurrencies=[], messages=1, size=1, idle=1, tool="t")
    assert verdict in text
    kib = report.per_idle_kib(mta)
    assert kib == ((idle - before) / greeted if greeted else None)


def _delivery(name: str, runs: dict[int, list[float]]) -> Any:
    result = report.DeliveryResult(name)
    for c, seconds in runs.items():
        for s in seconds:
            result.record(c, s, s / 2, s * 3)
    return result


def test_delivery_counts_the_median_run_and_has_its_target_at_4_sessions() -> None:
    mta = _delivery("mta", {4: [10.0, 5.0, 8.0], 10: [10.0, 10.0, 10.0]})
    osmtpd = _delivery("opensmtpd", {4: [6.0, 7.0, 8.0], 10: [100.0, 120.0, 110.0]})
    assert mta.seconds(4) == 8.0 and mta.rate(4, 800) == 100.0
    assert mta.sent_seconds(4) == 4.0 and mta.cpu_ms(4) == 24.0
    text = report.format_delivery(
        [mta, osmtpd],
        concurrencies=[4, 10],
        messages=800,
        size=1,
        tool="t",
        reference="OpenSMTPD 6.8",
        repeat=3,
    )
    assert "median of 3 runs" in text
    # 800/8 = 100/s against 800/7 = 114.3/s: 0.88x, under the 1.0x target
    assert "FAIL  delivery at 4 sessions: mta/opensmtpd = 0.88x >= 1.0x" in text
    assert "delivery at 10 sessions" not in text  # reported, without a target
    assert "server CPU ms/message (median): mta 24.00 at 4, 30.00 at 10" in text
    assert "mta at 4: 10.00, 5.00, 8.00" in text
    only_10 = report.format_delivery(
        [mta, osmtpd], concurrencies=[10], messages=800, size=1, tool="t", reference="r"
    )
    assert "-     delivery: the target is at 4 sessions" in only_10


def test_relay_has_its_target_at_every_concurrency() -> None:
    mta = _delivery("mta", {4: [10.0], 10: [10.0]})
    osmtpd = _delivery("opensmtpd", {4: [100.0], 10: [5.0]})
    verdicts = [
        report.delivery_verdict(mta, osmtpd, c, 1000, report.RELAY)
        for c in report.RELAY.targeted([4, 10])
    ]
    assert [(v.passed, v.text) for v in verdicts] == [
        (True, "relay at 4 sessions: mta/opensmtpd = 10.00x >= 1.0x"),
        (False, "relay at 10 sessions: mta/opensmtpd = 0.50x >= 1.0x"),
    ]

"""Timeouts: RFC 5321 defaults, the one scaling knob, and the pace of DATA."""

from __future__ import annotations

import pytest

from mta.server.timeouts import DataPace, Timeouts, scale_from_env


def test_defaults_follow_rfc5321() -> None:
    t = Timeouts()
    assert t.command >= 300  # the server waits at least 5 minutes for a command
    assert t.data_block >= 180


def test_scale() -> None:
    assert scale_from_env({}) == 1.0
    assert scale_from_env({"MTA_TIMEOUT_SCALE": "0.01"}) == 0.01
    scaled = Timeouts().scaled(0.5)
    assert scaled.command == 150 and scaled.tls_handshake == 30
    assert scaled.min_data_rate == pytest.approx(1000)  # the same transfer in half the time


@pytest.mark.parametrize("bad", ["x", "0", "-1", "nan"])
def test_bad_scale_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError, match="MTA_TIMEOUT_SCALE"):
        scale_from_env({"MTA_TIMEOUT_SCALE": bad})


def cut_at(pace: DataPace, arrivals: list[tuple[float, int]]) -> float | None:
    """Feed ``pace`` reads of (seconds after the last, bytes); the time the
    deadline passed, or None if every read came in time."""
    now = pace.started
    for gap, size in arrivals:
        deadline = pace.deadline(now)
        if now + gap > deadline:
            return deadline
        pace.took(now, now + gap, size)
        now += gap
    return None


def test_a_byte_every_five_seconds_is_cut_after_the_data_block_timeout() -> None:
    t = Timeouts()
    pace = DataPace(t, 1000.0)
    cut = cut_at(pace, [(5.0, 1)] * 1000)
    assert cut is not None
    assert t.data_block - 5 < cut - 1000.0 <= t.data_block + 1  # not the hour of data_total
    assert pace.received == 36
    assert pace.failure(cut) == "slower than 500 bytes/s"


def test_an_honest_slow_link_is_never_cut() -> None:
    """Almost 3 minutes before the first block, then 600 bytes/s in 6 KB blocks
    for 50 minutes, with a pause of a minute every ten."""
    pace = DataPace(Timeouts(), 0.0)
    blocks = [(170.0, 6000)] + ([(10.0, 6000)] * 60 + [(60.0, 6000)]) * 5
    assert cut_at(pace, blocks) is None
    assert pace.received == 306 * 6000


def test_silence_is_cut_after_the_data_block_timeout() -> None:
    t = Timeouts()
    pace = DataPace(t, 0.0)
    assert cut_at(pace, [(1.0, 100_000), (t.data_block + 1, 10)]) == 1.0 + t.data_block
    assert pace.failure(1.0 + t.data_block) == "no data for 180 s"


def test_no_deadline_goes_past_the_whole_transfer_limit() -> None:
    t = Timeouts()
    pace = DataPace(t, 0.0)
    assert cut_at(pace, [(1.0, 1_000_000)] * 4000) == t.data_total
    assert pace.failure(t.data_total) == "longer than 3600 s in all"


def test_a_fast_start_banks_no_more_than_the_data_block_timeout() -> None:
    t = Timeouts()
    pace = DataPace(t, 0.0)
    pace.took(0.0, 1.0, 10_000_000)  # 20000 s worth of bytes
    assert pace.deadline(1.0) == 1.0 + t.data_block

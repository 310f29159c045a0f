"""Tests for mta.smtp.dates: OpenSMTPD's time_to_text format."""

from __future__ import annotations

import datetime as dt
import email.utils
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.smtp.dates import format_date


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (
            dt.datetime(2025, 1, 5, 12, 34, 56, tzinfo=ZoneInfo("Europe/Paris")),
            "Sun, 5 Jan 2025 12:34:56 +0100 (CET)",
        ),
        (
            dt.datetime(2025, 7, 14, 8, 0, 1, tzinfo=ZoneInfo("Europe/Paris")),
            "Mon, 14 Jul 2025 08:00:01 +0200 (CEST)",
        ),
        (
            dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
            "Fri, 31 Dec 1999 23:59:59 +0000 (UTC)",
        ),
        (
            dt.datetime(2024, 2, 29, 0, 0, 0, tzinfo=ZoneInfo("America/St_Johns")),
            "Thu, 29 Feb 2024 00:00:00 -0330 (NST)",
        ),
        (
            dt.datetime(2024, 3, 2, 9, 5, 7, tzinfo=ZoneInfo("Asia/Kolkata")),
            "Sat, 2 Mar 2024 09:05:07 +0530 (IST)",
        ),
        (
            dt.datetime(2024, 3, 2, 9, 5, 7, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "Sat, 2 Mar 2024 09:05:07 -0500 (UTC-05:00)",
        ),
    ],
)
def test_exact_text(when: dt.datetime, text: str) -> None:
    assert format_date(when) == text


def test_zone_name_that_cannot_sit_in_a_comment_is_left_out() -> None:
    zone = dt.timezone(dt.timedelta(hours=1), "evil)\r\nX-Header: yes")
    when = dt.datetime(2025, 1, 5, 12, 34, 56, tzinfo=zone)
    assert format_date(when) == "Sun, 5 Jan 2025 12:34:56 +0100"


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError):
        format_date(dt.datetime(2025, 1, 5, 12, 34, 56))


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [dt.UTC, ZoneInfo("Europe/Paris"), ZoneInfo("America/St_Johns"), ZoneInfo("Asia/Tokyo")]
        ),
    )
)
def test_round_trips_through_the_stdlib_parser(when: dt.datetime) -> None:
    text = format_date(when)
    parsed = email.utils.parsedate_to_datetime(text)
    # timestamps, not ==: Python never finds an ambiguous (fold) time equal across zones
    assert parsed.timestamp() == when.replace(microsecond=0).timestamp()
    assert parsed.utcoffset() == when.utcoffset()
    assert text.isascii()

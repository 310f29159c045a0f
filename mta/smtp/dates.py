"""RFC 5322 date-time text as OpenSMTPD writes it (``time_to_text`` in to.c).

``Sun, 5 Jan 2025 12:34:56 +0100 (CET)``: English names whatever the locale,
day of month without padding, the numeric offset, then the zone name as a
comment.  Used in our ``Received:`` header and in the ``Date:`` header added to
local submissions.  The caller passes an aware datetime; there is no clock here.
"""

from __future__ import annotations

import datetime as _dt

__all__ = ["format_date"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # datetime.weekday() order
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# What may appear inside the "(zone)" comment: printable ASCII without the
# characters that would end or escape a comment.
_ZONE_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-:_/. ")


def format_date(when: _dt.datetime) -> str:
    """``when`` as ``Sun, 5 Jan 2025 12:34:56 +0100 (CET)``.

    The zone comment is the datetime's ``tzname()``; it is left out when the
    zone has no name or its name holds characters a comment cannot carry.
    Raises ValueError for a naive datetime.
    """
    offset = when.utcoffset()
    if offset is None:
        raise ValueError("format_date needs an aware datetime")
    seconds = int(offset.total_seconds())
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    text = (
        f"{_DAYS[when.weekday()]}, {when.day} {_MONTHS[when.month - 1]} {when.year} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f"{sign}{seconds // 3600:02d}{(seconds % 3600) // 60:02d}"
    )
    zone = when.tzname()
    if zone and set(zone) <= _ZONE_OK and zone.strip():
        text += f" ({zone})"
    return text

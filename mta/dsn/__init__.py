"""Delivery status notifications (bounces): composed as bytes, without I/O.

:func:`compose` writes a notification from a :class:`Report`; :func:`wanted`
says whether an envelope's sender gets one; :func:`report_for` builds the
report from envelopes.  See :mod:`mta.dsn.compose`.
"""

from mta.dsn.compose import (
    RecipientReport,
    Report,
    ReportType,
    boundary_of,
    compose,
    recipient_report,
    report_for,
    status_text,
    wanted,
)
from mta.dsn.text import bounce_duration

__all__ = [
    "RecipientReport",
    "Report",
    "ReportType",
    "bounce_duration",
    "boundary_of",
    "compose",
    "recipient_report",
    "report_for",
    "status_text",
    "wanted",
]

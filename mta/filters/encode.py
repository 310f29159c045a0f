"""The lines smtpd writes to a filter, as bytes ending in LF:

- :func:`encode_handshake` the ``config|...`` lines of a :class:`Handshake`,
  ``config|ready`` last (``lka_filter.c`` ``lka_proc_config``);
- :func:`encode_report` ``report|<version>|<sec.usec>|<subsystem>|<event>|<session>[|<params>]``
  (``report_smtp_broadcast``: no ``|`` after the session when the event has no
  parameter);
- :func:`encode_filter` ``filter|<version>|<sec.usec>|smtp-in|<phase>|<session>|<token>|<param>``
  (``filter_protocol_query`` / ``filter_data_query``: the parameter field is always
  there, empty for ``data``, ``commit``, ``starttls``, ...);
- :func:`encode_filter_connect` the ``connect`` request, ``<rdns>|<src>``.

The clock is the caller's: each takes a :class:`~mta.filters.protocol.Timestamp`.
What the session passes as a filter parameter is what smtpd passes: the HELO/EHLO
name, the raw AUTH arguments, the *bare* address for ``mail-from`` / ``rcpt-to``
(``filter_protocol`` strips ``<``, ``>`` and the ESMTP parameters), each DATA line
without CRLF and still dot-escaped, then ``.``.  Values go through
:func:`~mta.filters.protocol.field`, so none can break a line, and are written by
:func:`~mta.filters.protocol.wire`: a client's bytes that were not UTF-8 reach the
filter as they came, as with smtpd.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from mta.filters.events import ReportPayload
from mta.filters.protocol import (
    DEFAULT_VERSION,
    SMTP_OUT_EVENTS,
    Address,
    FilterPhase,
    ProtocolVersion,
    Subsystem,
    Timestamp,
    field,
    format_id,
    format_source,
    wire,
)

__all__ = [
    "SESSION_TIMEOUT",
    "SMTPD_VERSIONS",
    "Handshake",
    "encode_data_lines",
    "encode_filter",
    "encode_filter_connect",
    "encode_handshake",
    "encode_report",
]

SESSION_TIMEOUT = 300
"""``config|smtp-session-timeout``: OpenSMTPD's ``SMTPD_SESSION_TIMEOUT``, seconds."""

SMTPD_VERSIONS = {ProtocolVersion.V0_6: "6.8.0p2", ProtocolVersion.V0_7: "7.8.0"}
"""The ``config|smtpd-version`` announced by default: an OpenSMTPD release that
speaks the protocol version, so that a filter comparing it sees a consistent pair.
No filter library checked reads it (libopensmtpd hands it to the filter's config
callback; the Go filters skip every config line)."""


def _check_subsystems(
    instance: Handshake,
    attribute: attrs.Attribute[frozenset[Subsystem]],
    value: frozenset[Subsystem],
) -> None:
    if not value:
        raise ValueError("a filter serves at least one subsystem")


def _check_timeout(instance: Handshake, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0x7FFFFFFF:  # libopensmtpd: strtonum(0, INT_MAX) or it dies
        raise ValueError(f"session timeout out of range: {value}")


@attrs.frozen
class Handshake:
    """What smtpd tells a filter before it registers.  ``admd`` is the
    authentication domain (the ``admd`` option, else the server's hostname);
    ``smtpd_version`` defaults to :data:`SMTPD_VERSIONS`.  A 0.6 handshake has no
    ``config|protocol`` line, as 6.8 sent none."""

    subsystems: frozenset[Subsystem] = attrs.field(validator=_check_subsystems)
    admd: str
    session_timeout: int = attrs.field(default=SESSION_TIMEOUT, validator=_check_timeout)
    version: ProtocolVersion = DEFAULT_VERSION
    smtpd_version: str | None = None


def _line(*fields: str) -> bytes:
    return wire("|".join(fields)) + b"\n"


def encode_handshake(handshake: Handshake) -> bytes:
    """``config|smtpd-version``, ``config|protocol`` (0.7 only),
    ``config|smtp-session-timeout``, ``config|subsystem`` (smtp-in first),
    ``config|admd``, ``config|ready``."""
    version = handshake.smtpd_version or SMTPD_VERSIONS[handshake.version]
    lines = [_line("config", "smtpd-version", field(version, last=True))]
    if handshake.version is not ProtocolVersion.V0_6:
        lines.append(_line("config", "protocol", handshake.version.value))
    lines.append(_line("config", "smtp-session-timeout", str(handshake.session_timeout)))
    lines += [
        _line("config", "subsystem", sub.value) for sub in Subsystem if sub in handshake.subsystems
    ]
    lines.append(_line("config", "admd", field(handshake.admd, last=True)))
    lines.append(_line("config", "ready"))
    return b"".join(lines)


def encode_report(
    version: ProtocolVersion,
    timestamp: Timestamp,
    subsystem: Subsystem,
    session: int,
    payload: ReportPayload,
) -> bytes:
    """One report line; ``smtp-out`` has no ``filter-report`` / ``filter-response``."""
    if subsystem is Subsystem.SMTP_OUT and payload.EVENT not in SMTP_OUT_EVENTS:
        raise ValueError(f"no {payload.EVENT.value} event in smtp-out")
    head = (
        "report",
        version.value,
        str(timestamp),
        subsystem.value,
        payload.EVENT.value,
        format_id(session),
    )
    return _line(*head, *payload.params(version))


def _filter_head(
    version: ProtocolVersion, timestamp: Timestamp, phase: FilterPhase, session: int, token: int
) -> bytes:
    fields = ("filter", version.value, str(timestamp), Subsystem.SMTP_IN.value, phase.value)
    return "|".join((*fields, format_id(session), format_id(token), "")).encode("ascii")


def _clean(value: bytes) -> bytes:
    return value.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\0", b" ")


def encode_filter(
    version: ProtocolVersion,
    timestamp: Timestamp,
    phase: FilterPhase,
    session: int,
    token: int,
    param: str | bytes = "",
) -> bytes:
    """A filter request of any phase but ``connect``: ``param`` is the one
    parameter (str, or bytes for a ``data-line`` as received)."""
    if phase is FilterPhase.CONNECT:
        raise ValueError("the connect request is made by encode_filter_connect")
    raw = param if isinstance(param, bytes) else wire(param)
    return _filter_head(version, timestamp, phase, session, token) + _clean(raw) + b"\n"


def encode_data_lines(
    version: ProtocolVersion,
    timestamp: Timestamp,
    session: int,
    token: int,
    lines: Iterable[bytes],
) -> bytes:
    """The ``data-line`` requests of several lines, as one buffer: what
    :func:`encode_filter` makes of each, the line head encoded once."""
    head = _filter_head(version, timestamp, FilterPhase.DATA_LINE, session, token)
    return b"".join(head + _clean(line) + b"\n" for line in lines)


def encode_filter_connect(
    version: ProtocolVersion,
    timestamp: Timestamp,
    session: int,
    token: int,
    rdns: str,
    src: Address,
) -> bytes:
    """The ``connect`` request: ``<rdns>|<src>``, ``src`` written ``a.b.c.d``,
    ``[v6]`` or ``local``."""
    head = _filter_head(version, timestamp, FilterPhase.CONNECT, session, token)
    tail = field(rdns, last=False) + "|" + format_source(src)
    return head + wire(tail) + b"\n"

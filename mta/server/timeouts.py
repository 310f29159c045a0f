"""Server-side SMTP timeouts (RFC 5321 section 4.5.3.2), scaled by one knob.

``MTA_TIMEOUT_SCALE`` (a positive number, default 1) multiplies every value,
so tests can shorten them without touching code.  ``command`` is a deadline
for a whole command line, not an idle timer: a client that dribbles one byte
at a time cannot hold a session open longer than that (Postfix's
``smtpd_per_record_deadline``).
"""

from __future__ import annotations

import os

import attrs

__all__ = ["Timeouts", "scale_from_env"]


def scale_from_env(environ: dict[str, str] | None = None) -> float:
    """The ``MTA_TIMEOUT_SCALE`` factor; a bad value is an error, not ignored."""
    text = (environ if environ is not None else os.environ).get("MTA_TIMEOUT_SCALE", "")
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"MTA_TIMEOUT_SCALE must be a positive number, not {text!r}") from None
    if not value > 0:
        raise ValueError(f"MTA_TIMEOUT_SCALE must be a positive number, not {text!r}")
    return value


@attrs.frozen
class Timeouts:
    """Seconds allowed for each step of a server session."""

    command: float = 300.0  # a whole command line (RFC 5321: the server waits >= 5 min)
    data_block: float = 180.0  # silence inside DATA (the client's data block timeout is 3 min)
    data_total: float = 3600.0  # a whole DATA transfer, however it trickles
    tls_handshake: float = 60.0
    proxy_header: float = 30.0  # the PROXY v2 header after connect
    rdns: float = 3.0  # reverse DNS before the banner
    shutdown: float = 10.0  # sessions get this long to finish when the server stops

    def scaled(self, factor: float) -> Timeouts:
        return Timeouts(**{k: v * factor for k, v in attrs.asdict(self).items()})

    @classmethod
    def from_env(cls) -> Timeouts:
        return cls().scaled(scale_from_env())

"""Server-side SMTP timeouts (RFC 5321 section 4.5.3.2), scaled by one knob.

``MTA_TIMEOUT_SCALE`` (a positive number, default 1) multiplies every value,
so tests can shorten them without touching code.  ``command`` is a deadline
for a whole command line, not an idle timer: a client that dribbles one byte
at a time cannot hold a session open longer than that (Postfix's
``smtpd_per_record_deadline``); it is RFC 5321's 5 minutes, which a server
must wait at least for the next command.

Inside DATA, :class:`DataPace` keeps the deadline of each read: RFC 5321's 3
minutes of silence at most (the client's data block timeout), and a minimum
average rate on top (Postfix's ``smtpd_min_data_rate``, 500 bytes/s): the
time a read waits is taken from a budget of at most 3 minutes, and every byte
received gives back 1/500 s.  An honest slow link keeps its 3 minutes per
block as long as it sends 500 bytes a second; a client that sends a byte
every 5 seconds is cut 3 minutes after the 354, where the hour that bounds a
whole DATA transfer would otherwise hold it.
"""

from __future__ import annotations

import os

import attrs

__all__ = ["DataPace", "Timeouts", "scale_from_env"]


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
    data_byte: float = 1 / 500  # DATA time each byte earns: 500 bytes/s at least (Postfix)
    tls_handshake: float = 60.0
    proxy_header: float = 30.0  # the PROXY v2 header after connect
    rdns: float = 3.0  # reverse DNS before the banner
    shutdown: float = 10.0  # sessions get this long to finish when the server stops

    @property
    def min_data_rate(self) -> float:
        """The slowest average transfer DATA allows, in bytes per second."""
        return 1 / self.data_byte

    def scaled(self, factor: float) -> Timeouts:
        return Timeouts(**{k: v * factor for k, v in attrs.asdict(self).items()})

    @classmethod
    def from_env(cls) -> Timeouts:
        return cls().scaled(scale_from_env())


class DataPace:
    """The read deadlines of one DATA transfer (see the module docstring).
    Pure bookkeeping: the session gives it the clock's readings."""

    __slots__ = ("budget", "last", "received", "started", "timeouts", "until")

    def __init__(self, timeouts: Timeouts, now: float) -> None:
        self.timeouts = timeouts
        self.started = self.last = now
        self.until = now + timeouts.data_total
        self.budget = timeouts.data_block  # seconds the client may still wait us out
        self.received = 0

    def deadline(self, now: float) -> float:
        """When a read that starts ``now`` must have returned."""
        end = now + self.budget
        return end if end < self.until else self.until

    def took(self, waited_from: float, now: float, size: int) -> None:
        """A read that began at ``waited_from`` returned ``size`` bytes at ``now``."""
        timeouts = self.timeouts
        budget = self.budget - (now - waited_from) + size * timeouts.data_byte
        self.budget = budget if budget < timeouts.data_block else timeouts.data_block
        self.received += size
        self.last = now

    def failure(self, now: float) -> str:
        """What the client failed to do, when a deadline passed at ``now`` (for the log)."""
        timeouts = self.timeouts
        if now >= self.until:
            return f"longer than {timeouts.data_total:.0f} s in all"
        if self.budget >= timeouts.data_block:
            return f"no data for {timeouts.data_block:.0f} s"
        return f"slower than {timeouts.min_data_rate:.0f} bytes/s"

"""Shared by the relay inventory's tests and the control commands' tests: a
settable clock and two relay keys (an MX relay and a smarthost with auth)."""

from __future__ import annotations

from mta.relay.inventory import RelayKey

T0 = 1_800_000_000.0

MX = RelayKey("example.org")
SMART = RelayKey("smart.example.net", 587, "smtp+tls", auth="secrets:bob", as_host=True)


class Clock:
    """A clock that says ``now``, starting at :data:`T0`; tests move it."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

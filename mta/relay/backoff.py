"""Route back-off, sans-IO: a remote address that keeps failing is left alone a while.

OpenSMTPD (``mta.c``) disables a route (our source, the remote host) whose
first connection failed for ``DELAY_ROUTE_BASE * penalty**2`` seconds, at
most ``DELAY_ROUTE_MAX``, so that a dead host is not hammered by every
envelope queued for it.  :class:`RouteBackoff` keeps the same in memory, per
:data:`RouteKey` (address, port, source address): each failure in a row
raises the penalty by one (15 s, 60 s, 135 s, ... 3600 s); a session that
got through clears it.  While a route is disabled, :meth:`RouteBackoff.held`
gives the error that disabled it, and the caller goes on to the next address
or fails its envelopes temporarily with it, at once.

OpenSMTPD lowers the penalty by one when the route comes back, so a host that
stays down is tried every 15 s; here it keeps growing until a success, which
is what "a route that keeps failing" should get.  OpenSMTPD's count of SMTP
errors per route (``MAXERROR_PER_ROUTE``) is compiled out (``#if 0``) in its
current source, so only failures before any transaction count here.

Times are passed in (seconds, any clock); an entry whose time lies further
ahead than the longest delay (the clock went back) counts as expired.
"""

from __future__ import annotations

import attrs

from mta.delivery.result import Result

__all__ = [
    "DELAY_ROUTE_BASE",
    "DELAY_ROUTE_MAX",
    "Disabled",
    "RouteBackoff",
    "RouteKey",
    "route_delay",
]

DELAY_ROUTE_BASE = 15
DELAY_ROUTE_MAX = 3600
_PRUNE_AT = 4096  # entries; beyond this, long-expired ones are forgotten

RouteKey = tuple[str, int, str | None]
"""(remote address, port, our source address or None)."""


def route_delay(penalty: int) -> int:
    """Seconds a route with ``penalty`` stays disabled."""
    return min(DELAY_ROUTE_BASE * penalty * penalty, DELAY_ROUTE_MAX)


@attrs.frozen
class Disabled:
    """A disabled route as ``mtactl show routes`` lists it."""

    key: RouteKey
    penalty: int
    seconds_left: int
    error: Result


@attrs.define
class _Entry:
    penalty: int
    until: float
    error: Result


class RouteBackoff:
    """Penalties of the routes that failed last time; see the module docstring."""

    def __init__(self) -> None:
        self._routes: dict[RouteKey, _Entry] = {}

    def __len__(self) -> int:
        return len(self._routes)

    def held(self, key: RouteKey, now: float) -> Result | None:
        """The error that disabled ``key`` if it is still disabled at ``now``."""
        entry = self._routes.get(key)
        if entry is None or not now < entry.until <= now + DELAY_ROUTE_MAX:
            return None
        return entry.error

    def failed(self, key: RouteKey, now: float, error: Result) -> float:
        """``key`` failed at ``now`` with ``error``: disable it; returns the delay."""
        entry = self._routes.get(key)
        penalty = 1 if entry is None else entry.penalty + 1
        delay = route_delay(penalty)
        self._routes[key] = _Entry(penalty, now + delay, error)
        if len(self._routes) > _PRUNE_AT:
            self._prune(now)
        return delay

    def succeeded(self, key: RouteKey) -> None:
        """``key`` worked: forget its penalty."""
        self._routes.pop(key, None)

    def disabled(self, now: float) -> list[Disabled]:
        """The routes disabled at ``now``, by address."""
        found = [
            Disabled(key, entry.penalty, max(1, int(entry.until - now)), entry.error)
            for key, entry in self._routes.items()
            if self.held(key, now) is not None
        ]
        return sorted(found, key=lambda d: (d.key[0], d.key[1], d.key[2] or ""))

    def enable(self, address: str | None = None) -> int:
        """Forget the penalties of the routes to ``address`` (every route when
        None): ``mtactl resume route``; returns how many."""
        keys = [k for k in self._routes if address is None or k[0] == address]
        for key in keys:
            del self._routes[key]
        return len(keys)

    def _prune(self, now: float) -> None:
        stale = [k for k, e in self._routes.items() if e.until + DELAY_ROUTE_MAX < now]
        for key in stale:
            del self._routes[key]

"""``mta limit max-conn-per-*``: how many relay sessions may be open at once.

OpenSMTPD (``mta.c``, ``limit.c``) counts open connections per remote host
(``max-conn-per-host``, 10), per route (our source and the host,
``max-conn-per-route``, 5), per source address (``max-conn-per-source``,
100), per relay (``max-conn-per-relay``, 100; a relay here is a plan, so
``max-conn-per-connector``, 20, its source being fixed, applies to it too) and
per destination domain (``max-conn-per-domain``, 100), and does not open one
more while any count is at its limit.  :class:`ConnectionLimits` keeps one
:class:`trio.CapacityLimiter` per such key; a session holds a token of each
from before it connects until it is closed (idle keep-alive time included),
on behalf of a borrower object (the session's connection), so the task that
releases need not be the one that acquired.  The limits are read for the
plan's domain (``mta limit for domain``, else the global ``mta limit``, else
the default); a key's limiter takes the limit of the first plan that used it,
and is dropped when nobody holds or waits for it.  Tokens are always taken in
the same order of kinds, so two sessions never wait for each other.

The connection delays (``conn-delay-host|route|source|connector|relay|domain``)
space the starts of connections counted against the same key: a new one
waits until that many seconds have passed since the last one started
(:meth:`ConnectionLimits.pace`), as OpenSMTPD's ``mta_connect`` does.
mta's defaults for them are 0 where OpenSMTPD's are ``conn-delay-route 5``
and ``conn-delay-relay 2`` (:data:`~mta.config.model.MTA_LIMIT_DEFAULTS`):
spacing every new session to one relay by 2 s would defeat happy eyeballs
(:mod:`mta.relay.eyeballs`) and an immediate move to the next MX, and slow a
burst to a smarthost to a session every 2 s; the ``max-conn-per-*`` limits
and the route back-off (:mod:`mta.relay.backoff`) keep mta polite.  Setting
them gives OpenSMTPD's pacing.  ``reconn-delay-route`` is parsed and not
used: a failed route is backed off instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import trio

from mta.config.model import MTA_LIMIT_DEFAULTS, MtaLimits

__all__ = ["PACE_KEYS_MAX", "ConnectionLimits", "Key", "limit_for"]

PACE_KEYS_MAX = 10000  # start times kept before the stale ones are dropped

Key = tuple[object, ...]


def _keys(address: str, source: str | None, relay: object, domain: str) -> dict[str, Key]:
    """The keys of a session to ``address``, by kind: the remote host, the
    route (our source and that host), our source, the connector and the relay
    (both the plan: its source is fixed) and the destination domain."""
    return {
        "host": ("host", address),
        "route": ("route", source, address),
        "source": ("source", source),
        "connector": ("connector", relay),
        "relay": ("relay", relay),
        "domain": ("domain", domain.rstrip(".").lower()),
    }


def limit_for(limits: Mapping[str, MtaLimits], domain: str, key: str) -> int:
    """``mta limit`` ``key`` for ``domain``: its ``for domain`` entry's when it
    sets it, else the global one's, else OpenSMTPD's default."""
    wanted = domain.rstrip(".").lower()
    for name, entry in limits.items():
        if name and name.rstrip(".").lower() == wanted and any(k == key for k, _ in entry.values):
            return entry.get(key)
    default = limits.get("")
    return default.get(key) if default is not None else MTA_LIMIT_DEFAULTS[key]


class ConnectionLimits:
    """One capacity limiter per counted key, and when each key last had a
    connection start; see the module docstring."""

    def __init__(
        self, limits: Mapping[str, MtaLimits], *, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.limits = limits
        self.clock = clock
        self._limiters: dict[Key, trio.CapacityLimiter] = {}
        self._started: dict[Key, float] = {}  # key -> when its last connection started
        self._longest = 0.0  # the longest delay seen: older start times no longer matter

    def keys(
        self, *, address: str, source: str | None, relay: object, domain: str
    ) -> list[tuple[Key, int]]:
        """The keys a session to ``address`` counts against, with their limits
        (``max-conn-per-connector`` caps the relay's: its source is fixed)."""
        key = _keys(address, source, relay, domain)

        def limit(kind: str) -> int:
            return limit_for(self.limits, domain, f"max-conn-per-{kind}")

        relay_max = min(limit("relay"), limit("connector"))
        return [
            (key[kind], relay_max if kind == "relay" else limit(kind))
            for kind in ("host", "route", "source", "relay", "domain")
        ]

    def delays(
        self, *, address: str, source: str | None, relay: object, domain: str
    ) -> list[tuple[Key, float]]:
        """The keys a session to ``address`` is paced by, with their
        ``conn-delay-*`` (only those above 0)."""
        key = _keys(address, source, relay, domain)
        pairs = [
            (key[kind], limit_for(self.limits, domain, f"conn-delay-{kind}"))
            for kind in ("host", "route", "source", "connector", "relay", "domain")
        ]
        return [(k, seconds) for k, seconds in pairs if seconds > 0]

    async def take(
        self, borrower: object, *, address: str, source: str | None, relay: object, domain: str
    ) -> list[Key]:
        """What a new session to ``address`` needs before it connects: a token
        of each of its keys for ``borrower`` (:meth:`acquire`), then the
        connection delays (:meth:`pace`); the keys held, to :meth:`release`
        when the session is over.  None is kept when cancelled."""
        keys = self.keys(address=address, source=source, relay=relay, domain=domain)
        await self.acquire(borrower, keys)
        held = [key for key, _ in keys]
        try:
            await self.pace(self.delays(address=address, source=source, relay=relay, domain=domain))
        except BaseException:
            self.release(borrower, held)
            raise
        return held

    async def pace(self, delays: list[tuple[Key, float]]) -> None:
        """Wait until each key's delay has passed since its last connection
        started, then count this one as started now."""
        if not delays:
            return
        while True:
            now = self.clock()
            ready = max(self._started.get(key, now - seconds) + seconds for key, seconds in delays)
            if ready <= now:
                break
            await trio.sleep(ready - now)  # another may have started meanwhile: look again
        for key, seconds in delays:
            self._started[key] = now
            self._longest = max(self._longest, seconds)
        if len(self._started) > PACE_KEYS_MAX:
            for key, started in list(self._started.items()):
                if started + self._longest < now:
                    del self._started[key]

    async def acquire(self, borrower: object, keys: list[tuple[Key, int]]) -> None:
        """A token of each of ``keys`` for ``borrower``, waiting as needed;
        none is kept when cancelled."""
        held: list[Key] = []
        try:
            for key, total in keys:
                limiter = self._limiters.get(key)
                if limiter is None:
                    limiter = self._limiters[key] = trio.CapacityLimiter(max(1, total))
                elif limiter.total_tokens != max(1, total):
                    limiter.total_tokens = max(1, total)  # the limits changed (a reload)
                try:
                    await limiter.acquire_on_behalf_of(borrower)
                except BaseException:
                    self._drop_unused(key)
                    raise
                held.append(key)
        except BaseException:
            self.release(borrower, held)
            raise

    def release(self, borrower: object, keys: list[Key]) -> None:
        """Give back ``borrower``'s tokens of ``keys``."""
        for key in keys:
            self._limiters[key].release_on_behalf_of(borrower)
            self._drop_unused(key)

    def _drop_unused(self, key: Key) -> None:
        stats = self._limiters[key].statistics()
        if not stats.borrowed_tokens and not stats.tasks_waiting:
            del self._limiters[key]

    def __len__(self) -> int:
        return len(self._limiters)

"""Sessions per client address: one address cannot take every session.

The session cap (:class:`~mta.server.listeners.SessionGate`) bounds all
sessions together; without a limit per client, one client holding
connections open makes every other one wait until it times out.  As
Postfix's anvil does (``smtpd_client_connection_count_limit``, 50), a
connection beyond its address's share is answered ``421 4.7.0`` and closed at
once, before it takes a place.

Limits (``MTA_MAX_CONN_PER_CLIENT`` overrides both; ``0`` turns them off):

- another address: 50 sessions (Postfix's figure, plenty for a personal
  server's peers, a NAT'd household or office included), and never more
  than half the session cap;
- a loopback address: half the session cap.  Postfix exempts its
  ``mynetworks`` (loopback by default); here local programs (webmail, test
  suites, benchmarks: ``scripts/bench`` opens 1,000 idle sessions) get room
  for their bursts, yet one of them cannot lock remote senders out.

An IPv6 client counts by its /64, the prefix one host or one household gets
(as an IPv4 client behind NAT counts by its one address); with a per-address
count, a single host could take every place with addresses from its own /64.
Sessions on the local socket and on ``proxy-v2`` listeners (whose peer is the
proxy, not the client) are not counted.

Refusals are logged at most once a minute per address, the next line saying
how many went unlogged meanwhile.
"""

from __future__ import annotations

import math
import os
import socket

from mta.log import get_logger
from mta.reply import Reply

__all__ = [
    "DEFAULT_LIMIT",
    "ENV",
    "REPEAT",
    "ClientLimit",
    "client_key",
    "limit_from_env",
    "too_many",
]

log = get_logger("smtpd")

ENV = "MTA_MAX_CONN_PER_CLIENT"
DEFAULT_LIMIT = 50  # sessions per non-loopback address (Postfix)
REPEAT = 60.0  # seconds between two refusal lines for one address
_FORGET_AFTER = 4096  # addresses remembered for the refusal lines before old ones go

_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:a.b.c.d


def limit_from_env(environ: dict[str, str] | None = None) -> int | None:
    """``MTA_MAX_CONN_PER_CLIENT``: None when unset (the defaults), 0 for no
    limit; ValueError naming the variable when it is no whole number >= 0."""
    text = (environ if environ is not None else os.environ).get(ENV, "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"{ENV} must be a whole number of sessions (0: no limit), not {text!r}")
    return int(text)


def client_key(address: object) -> tuple[str, bool] | None:
    """What a client is counted by, from the address ``accept()`` gave, and
    whether it is loopback: ``("192.0.2.1", False)``, ``("2001:db8::/64",
    False)``, ``("127.0.0.1", True)``; None for a Unix socket."""
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return None
    host = address[0]
    if ":" not in host:
        return host, host.startswith("127.")
    host = host.partition("%")[0]  # fe80::1%eth0
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return host, False
    if packed.startswith(_MAPPED):
        v4 = socket.inet_ntop(socket.AF_INET, packed[12:])
        return v4, v4.startswith("127.")
    if packed == bytes(15) + b"\x01":
        return "::1", True
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64", False


def too_many(hostname: str) -> Reply:
    """The reply to a connection over its address's limit (Postfix: ``421 4.7.0
    <host> Error: too many connections from <addr>``)."""
    return Reply.of(
        421,
        "4.7.0",
        f"{hostname} Too many connections from your address, try again later",
        close=True,
    )


class ClientLimit:
    """Open sessions per client key, and the most each may hold."""

    def __init__(self, capacity: int, per_client: int | None = None) -> None:
        half = max(1, capacity // 2)
        if per_client is None:
            self.remote, self.loopback = min(DEFAULT_LIMIT, half), half
        else:
            self.remote = self.loopback = per_client  # 0: no limit
        self._counts: dict[str, int] = {}
        self._refused: dict[str, tuple[float, int]] = {}  # key: (last line, refused since)

    def __len__(self) -> int:
        """How many client keys hold sessions."""
        return len(self._counts)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def enter(self, key: str, loopback: bool) -> bool:
        """Count a new session of ``key``; False (and not counted) when it
        already holds as many as it may."""
        limit = self.loopback if loopback else self.remote
        held = self._counts.get(key, 0)
        if limit and held >= limit:
            return False
        self._counts[key] = held + 1
        return True

    def leave(self, key: str) -> None:
        """A session of ``key`` ended."""
        held = self._counts.get(key, 0) - 1
        if held > 0:
            self._counts[key] = held
        else:
            self._counts.pop(key, None)

    def busiest(self) -> str:
        """The key that holds most sessions and how many, for the log ("" if none)."""
        if not self._counts:
            return ""
        key = max(self._counts, key=self._counts.__getitem__)
        return f"{key} holds {self._counts[key]}"

    def refused(self, key: str, loopback: bool, now: float) -> None:
        """Log the refusal of a connection from ``key``: at most once per
        :data:`REPEAT` seconds per key (:meth:`flush` counts the others)."""
        last, unlogged = self._refused.get(key, (-math.inf, 0))
        if now - last < REPEAT:
            self._refused[key] = (last, unlogged + 1)
            return
        if len(self._refused) >= _FORGET_AFTER:
            self.flush(now)
        self._refused[key] = (now, 0)
        more = f" ({_more(unlogged, now - last)})" if unlogged else ""
        log.warning(
            "smtp: too many connections from %s (%d sessions, the most one client may hold):"
            " refused with 421%s",
            key,
            self.loopback if loopback else self.remote,
            more,
        )

    def flush(self, now: float) -> None:
        """Log the refusals left unlogged for :data:`REPEAT` seconds, and forget
        the addresses with nothing to say (run now and then)."""
        for key, (last, unlogged) in list(self._refused.items()):
            if now - last < REPEAT:
                continue
            if unlogged:
                log.warning(
                    "smtp: too many connections from %s: %s", key, _more(unlogged, now - last)
                )
                self._refused[key] = (now, 0)
            else:
                del self._refused[key]
        if len(self._refused) >= _FORGET_AFTER:  # a flood from many addresses at once
            self._refused.clear()


def _more(count: int, seconds: float) -> str:
    return f"{count} more refused in the last {seconds:.0f} s"

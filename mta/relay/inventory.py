"""What the relay agent is doing, for ``mtactl show hosts|relays|hoststats``,
and the envelopes kept for ``mta max-deferred`` (OpenSMTPD ``mta.c``'s host and
relay trees and its ``hoststat`` dictionary).

Sans-IO: the agent reports what happens, the clock is injected, nothing here
waits or touches a socket.

- Hosts, by remote address: the name the route gave it (the MX or smarthost
  name; OpenSMTPD shows the address's PTR name, which mta does not look up),
  ``nconn`` (sessions started and not ended: counted from the connection
  attempt, as OpenSMTPD's ``mta_connect`` does) and ``lastconn`` (when the last
  one started).  ``refcount`` is what holds the record: its sessions, so equal
  to ``nconn`` (OpenSMTPD also counts the MX lists naming the host).
- Relays, by :class:`RelayKey` (shown as OpenSMTPD's ``mta_relay_to_text``):
  ``ntask`` (tasks: one message's envelopes for the relay, waiting or being
  relayed), ``nconn``, ``lastconn``, and what its tasks wait for
  (:class:`Wait`).  ``refcount`` is ``ntask + nconn``.
- Hoststats (OpenSMTPD's ``mta_hoststat_*``), by lower-cased name (OpenSMTPD
  passes the recipient's domain): the time and text of the last result
  recorded, and up to ``max_deferred`` envelope ids deferred while the host
  was unreachable, to schedule at once when a delivery there succeeds.  As
  OpenSMTPD's ``mta_hoststat_cache``, a full list keeps the ids it has and
  does not take the new one (those envelopes keep their normal retry time).

Bounds: a host with no session, a relay with no task, session or wait, is
idle; idle records stay (so ``lastconn`` can be shown) for :data:`IDLE_TTL`
seconds, at most :data:`IDLE_MAX` of each kind, the longest idle dropped
first.  A hoststat expires :data:`HOSTSTAT_EXPIRE` seconds after its last
update (OpenSMTPD's ``HOSTSTAT_EXPIRE_DELAY``), with its deferred ids; at
most :data:`HOSTSTAT_MAX` are kept, the least recently updated dropped first.
Texts are cut to :data:`TEXT_MAX` characters.  Expired records go at the next
call that changes or lists them.

Costs: every call that records something (sessions, tasks, waits,
:meth:`~RelayInventory.update`, :meth:`~RelayInventory.deferred`,
:meth:`~RelayInventory.forget`) is O(1) amortized (the records it expires were
each added once), whatever the number of queued envelopes, hosts or relays;
:meth:`~RelayInventory.succeeded` is O(d) in the ids it returns (at most
``max_deferred``); the listings (``show hosts|relays|hoststats``) sort what
they list.  Memory is bounded: :data:`IDLE_MAX` idle records of each kind,
:data:`HOSTSTAT_MAX` hoststats of at most ``max_deferred`` ids each.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs

from mta.config.model import InlineTable, Relay, TableRef
from mta.relay.client import TlsPolicy
from mta.relay.plan import Plan

__all__ = [
    "HOSTSTAT_EXPIRE",
    "HOSTSTAT_MAX",
    "IDLE_MAX",
    "IDLE_TTL",
    "TEXT_MAX",
    "HostStatView",
    "HostView",
    "RelayInventory",
    "RelayKey",
    "RelayView",
    "Wait",
    "relay_key",
]

HOSTSTAT_EXPIRE = 4 * 3600  # OpenSMTPD's HOSTSTAT_EXPIRE_DELAY
HOSTSTAT_MAX = 10000
IDLE_TTL = 3600
IDLE_MAX = 1000
TEXT_MAX = 2048  # OpenSMTPD keeps LINE_MAX octets of the error
NAME_MAX = 255  # OpenSMTPD's HOST_NAME_MAX: a longer hoststat name is ignored

_K = TypeVar("_K")
_V = TypeVar("_V")


class Wait(enum.Enum):
    """What a relay's task waits for (OpenSMTPD's ``RELAY_WAIT_*``, in its order)."""

    MX = "MX"
    PREFERENCE = "preference"
    SECRET = "secret"
    LIMITS = "limits"
    SOURCE = "source"
    CONNECTOR = "connector"


_WAIT_ORDER = {wait: index for index, wait in enumerate(Wait)}

_TLS_TEXT = {
    TlsPolicy.OPPORTUNISTIC: "smtp",
    TlsPolicy.REQUIRED: "smtp+tls",
    TlsPolicy.SMTPS: "smtps",
    TlsPolicy.NONE: "smtp+notls",
}


@attrs.frozen
class RelayKey:
    """One relay as OpenSMTPD tells relays apart and shows them.

    ``domain`` is the smarthost's host name (``as_host``) or the destination
    domain; ``port`` 0 is not shown (MX); ``tls`` is the schema the session
    behaves as (``smtp``, ``smtp+tls``, ``smtps``, ``smtp+notls``, ``lmtp``);
    ``auth`` is ``table:label``; the table fields are the action's table names."""

    domain: str
    port: int = 0
    tls: str = "smtp"
    auth: str | None = None
    pki: str | None = None
    as_host: bool = False
    backup: str | None = None
    source_table: str | None = None
    helo_table: str | None = None
    helo: str | None = None

    @property
    def text(self) -> str:
        """OpenSMTPD's ``mta_relay_to_text``: ``[relay:example.org,smtp]``.

        As there, ``mx`` is added for a smarthost (a "domain" resolved as a host)."""
        parts = [f"[relay:{self.domain}"]
        if self.port:
            parts.append(f"port={self.port}")
        parts.append(self.tls)
        if self.auth is not None:
            parts.append(f"auth={self.auth}")
        if self.pki is not None:
            parts.append(f"pki_name={self.pki}")
        if self.as_host:
            parts.append("mx")
        for name, value in (
            ("backup", self.backup),
            ("sourcetable", self.source_table),
            ("helotable", self.helo_table),
            ("heloname", self.helo),
        ):
            if value is not None:
                parts.append(f"{name}={value}")
        return ",".join(parts) + "]"

    def __str__(self) -> str:
        return self.text


def _table_name(ref: TableRef | None) -> str | None:
    if ref is None:
        return None
    if isinstance(ref, InlineTable):
        keys = [key for key, _ in ref.entries]
        return keys[0] if len(keys) == 1 else "{" + ",".join(keys) + "}"
    return ref.name


def relay_key(plan: Plan, action: Relay | None = None) -> RelayKey:
    """The relay of ``plan`` (from the envelope's ``relay`` ``action``, for the
    names of its tables, pki and helo).  One relay per plan as
    :meth:`~mta.relay.agent.RelayAgent.plan` makes it: the variants that
    :func:`~mta.relay.plan.tls_attempts` tries are sessions of that relay."""
    url = plan.smarthost
    tls = "lmtp" if plan.client.lmtp else _TLS_TEXT[plan.client.tls]
    auth = None
    if url is not None and url.auth_label is not None:
        table = _table_name(action.auth) if action is not None else None
        auth = f"{table or ''}:{url.auth_label}"
    return RelayKey(
        domain=url.host if url is not None else plan.domain,
        port=plan.port if url is not None else 0,
        tls=tls,
        auth=auth,
        pki=action.pki if action is not None else None,
        as_host=url is not None,
        backup=plan.backup_name,
        source_table=_table_name(action.src) if action is not None else None,
        helo_table=_table_name(action.helo_src) if action is not None else None,
        helo=action.helo if action is not None else None,
    )


# -- snapshots -------------------------------------------------------------------


@attrs.frozen
class HostView:
    """A line of ``show hosts``; ``lastconn`` is a clock time, None: never."""

    address: str
    name: str
    refcount: int
    nconn: int
    lastconn: float | None


@attrs.frozen
class RelayView:
    """A line of ``show relays``; ``wait`` in OpenSMTPD's order."""

    relay: RelayKey
    refcount: int
    ntask: int
    nconn: int
    lastconn: float | None
    wait: tuple[Wait, ...]

    @property
    def text(self) -> str:
        return self.relay.text


@attrs.frozen
class HostStatView:
    """A line of ``show hoststats``: the last result's clock time and text,
    and how many envelope ids are kept."""

    name: str
    time: float
    error: str
    deferred: int


# -- records ---------------------------------------------------------------------


@attrs.define
class _Host:
    name: str
    nconn: int = 0
    lastconn: float | None = None


@attrs.define
class _Relay:
    ntask: int = 0
    nconn: int = 0
    lastconn: float | None = None
    waits: Counter[Wait] = attrs.Factory(Counter)

    @property
    def idle(self) -> bool:
        return not (self.ntask or self.nconn or self.waits)


@attrs.define
class _HostStat:
    time: float
    error: str
    deferred: dict[int, None] = attrs.Factory(dict)  # an ordered set


def _address_order(address: str) -> tuple[int, int, str]:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # not an address: after IPv4 (4) and IPv6 (6)
        return (7, 0, address)
    return (ip.version, int(ip), address)


class RelayInventory:
    """The relay agent's hosts, relays and hoststats; see the module docstring."""

    def __init__(
        self,
        *,
        max_deferred: int = 100,
        clock: Callable[[], float] = time.time,
        idle_ttl: float = IDLE_TTL,
        idle_max: int = IDLE_MAX,
        hoststat_expire: float = HOSTSTAT_EXPIRE,
        hoststat_max: int = HOSTSTAT_MAX,
    ) -> None:
        self.max_deferred = max_deferred  # ``mta max-deferred``; may change on reload
        self.clock = clock
        self.idle_ttl = idle_ttl
        self.idle_max = idle_max
        self.hoststat_expire = hoststat_expire
        self.hoststat_max = hoststat_max
        self._hosts: dict[str, _Host] = {}
        self._relays: dict[RelayKey, _Relay] = {}
        # idle records by when they went idle, oldest first (OrderedDict: a
        # dict's first item is slow to find after many were deleted before it)
        self._idle_hosts: OrderedDict[str, float] = OrderedDict()
        self._idle_relays: OrderedDict[RelayKey, float] = OrderedDict()
        self._stats: OrderedDict[str, _HostStat] = OrderedDict()  # least recently updated first
        self._deferred_at: dict[int, str] = {}  # evpid -> its hoststat name

    # -- sessions --------------------------------------------------------------

    def connecting(self, relay: RelayKey, address: str, name: str) -> None:
        """A session of ``relay`` to ``address`` (``name`` from the route)
        starts: its connection attempt begins now."""
        now = self.clock()
        host = self._hosts.get(address)
        if host is None:
            host = self._hosts[address] = _Host(name)
        host.name = name
        host.nconn += 1
        host.lastconn = now
        self._idle_hosts.pop(address, None)
        record = self._relay(relay)
        record.nconn += 1
        record.lastconn = now
        self._prune(now)

    def closed(self, relay: RelayKey, address: str) -> None:
        """That session ended (whatever its outcome, also when it never connected)."""
        now = self.clock()
        host = self._hosts.get(address)
        if host is not None and host.nconn > 0:
            host.nconn -= 1
            if host.nconn == 0:
                self._idle_hosts[address] = now
        record = self._relays.get(relay)
        if record is not None and record.nconn > 0:
            record.nconn -= 1
            self._maybe_idle(relay, record, now)
        self._prune(now)

    @contextlib.contextmanager
    def session(self, relay: RelayKey, address: str, name: str) -> Iterator[None]:
        """:meth:`connecting` now, :meth:`closed` on the way out."""
        self.connecting(relay, address, name)
        try:
            yield
        finally:
            self.closed(relay, address)

    # -- tasks -----------------------------------------------------------------

    def task_started(self, relay: RelayKey) -> None:
        """A task (one message's envelopes) is handed to ``relay``."""
        self._relay(relay).ntask += 1
        self._prune(self.clock())

    def task_done(self, relay: RelayKey) -> None:
        """That task is over (relayed or failed)."""
        now = self.clock()
        record = self._relays.get(relay)
        if record is not None and record.ntask > 0:
            record.ntask -= 1
            self._maybe_idle(relay, record, now)
        self._prune(now)

    @contextlib.contextmanager
    def task(self, relay: RelayKey) -> Iterator[None]:
        """:meth:`task_started` now, :meth:`task_done` on the way out."""
        self.task_started(relay)
        try:
            yield
        finally:
            self.task_done(relay)

    def wait_started(self, relay: RelayKey, what: Wait) -> None:
        """A task of ``relay`` waits for ``what`` (several may, for the same thing)."""
        self._relay(relay).waits[what] += 1
        self._prune(self.clock())

    def wait_done(self, relay: RelayKey, what: Wait) -> None:
        now = self.clock()
        record = self._relays.get(relay)
        if record is not None and record.waits[what] > 0:
            record.waits[what] -= 1
            if not record.waits[what]:
                del record.waits[what]
            self._maybe_idle(relay, record, now)
        self._prune(now)

    @contextlib.contextmanager
    def waiting(self, relay: RelayKey, what: Wait) -> Iterator[None]:
        """:meth:`wait_started` now, :meth:`wait_done` on the way out."""
        self.wait_started(relay, what)
        try:
            yield
        finally:
            self.wait_done(relay, what)

    def _relay(self, relay: RelayKey) -> _Relay:
        record = self._relays.get(relay)
        if record is None:
            record = self._relays[relay] = _Relay()
        self._idle_relays.pop(relay, None)
        return record

    def _maybe_idle(self, relay: RelayKey, record: _Relay, now: float) -> None:
        if record.idle and relay not in self._idle_relays:
            self._idle_relays[relay] = now

    # -- hoststats (max-deferred) -------------------------------------------------

    def update(self, name: str, text: str) -> None:
        """Record the last result for ``name`` (OpenSMTPD's ``mta_hoststat_update``,
        called with every recipient's result text, successes too)."""
        key = _hoststat_name(name)
        if key is None:
            return
        now = self.clock()
        stat = self._stats.get(key)
        if stat is None:
            stat = self._stats[key] = _HostStat(now, "")
        else:
            self._stats.move_to_end(key)
        stat.time = now
        stat.error = text[:TEXT_MAX]
        self._prune(now)

    def deferred(self, name: str, evpid: int, error: str) -> bool:
        """``evpid`` failed temporarily because ``name`` cannot be reached:
        record ``error`` and keep the id for :meth:`succeeded`, unless
        ``max_deferred`` ids are kept already.  True if it is kept."""
        self.update(name, error)
        key = _hoststat_name(name)
        stat = self._stats.get(key) if key is not None else None
        if key is None or stat is None:
            return False
        if evpid in stat.deferred:
            return True
        if len(stat.deferred) >= self.max_deferred:
            return False
        self.forget(evpid)  # kept under another name before
        stat.deferred[evpid] = None
        self._deferred_at[evpid] = key
        return True

    def succeeded(self, name: str) -> list[int]:
        """A delivery to ``name`` succeeded: the ids kept for it, oldest first,
        to be scheduled now; they are no longer kept."""
        key = _hoststat_name(name)
        stat = self._stats.get(key) if key is not None else None
        if stat is None:
            return []
        evpids = list(stat.deferred)
        stat.deferred.clear()
        for evpid in evpids:
            del self._deferred_at[evpid]
        return evpids

    def forget(self, evpid: int) -> None:
        """``evpid`` is being relayed again, delivered or removed: no longer keep it."""
        key = self._deferred_at.pop(evpid, None)
        if key is not None:
            stat = self._stats.get(key)
            if stat is not None:
                stat.deferred.pop(evpid, None)

    def _drop_stat(self, key: str) -> None:
        stat = self._stats.pop(key)
        for evpid in stat.deferred:
            del self._deferred_at[evpid]

    # -- snapshots --------------------------------------------------------------

    def hosts(self) -> list[HostView]:
        """The hosts, by address (IPv4 first, numerically)."""
        self._prune(self.clock())
        return [
            HostView(address, host.name, host.nconn, host.nconn, host.lastconn)
            for address, host in sorted(self._hosts.items(), key=lambda i: _address_order(i[0]))
        ]

    def relays(self) -> list[RelayView]:
        """The relays, by their text."""
        self._prune(self.clock())
        views = [
            RelayView(
                relay,
                record.ntask + record.nconn,
                record.ntask,
                record.nconn,
                record.lastconn,
                tuple(sorted(record.waits, key=_WAIT_ORDER.__getitem__)),
            )
            for relay, record in self._relays.items()
        ]
        return sorted(views, key=lambda view: (view.text, repr(view.relay)))

    def hoststats(self) -> list[HostStatView]:
        """The hoststats, by name."""
        self._prune(self.clock())
        return [
            HostStatView(name, stat.time, stat.error, len(stat.deferred))
            for name, stat in sorted(self._stats.items())
        ]

    # -- bounds -----------------------------------------------------------------

    def _prune(self, now: float) -> None:
        self._prune_idle(self._idle_hosts, self._hosts, now)
        self._prune_idle(self._idle_relays, self._relays, now)
        while self._stats:
            key = next(iter(self._stats))
            stat = self._stats[key]
            if len(self._stats) <= self.hoststat_max and now - stat.time < self.hoststat_expire:
                break
            self._drop_stat(key)

    def _prune_idle(self, idle: OrderedDict[_K, float], records: dict[_K, _V], now: float) -> None:
        while idle:
            key = next(iter(idle))
            if len(idle) <= self.idle_max and now - idle[key] < self.idle_ttl:
                return
            del idle[key]
            del records[key]


def _hoststat_name(name: str) -> str | None:
    if not name or len(name) > NAME_MAX:
        return None
    return name.lower()

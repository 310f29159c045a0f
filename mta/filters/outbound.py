"""The ``smtp-out`` reports of one relay session, sent to the filter
processes of its relay action.

OpenSMTPD's relay sessions are reported, never filtered: a relay action's
``filter`` names the processes that get the session's report events
(``mta_session.c`` ``mta_report_*`` through ``lka_report_smtp_*``, which
sends each event to the processes of the session's filter that registered
``report|smtp-out|<event>``: ``lka_filter_proc_in_session``).  The events
themselves come from :mod:`mta.relay.reports` and :mod:`mta.relay.session`;
:class:`SessionReports` stamps, encodes and hands them over.

Fire and forget: a relay never waits on a filter.  Each line is queued on
the process (:meth:`~mta.filters.process.FilterProcess.post`), which writes
its queue in order; a process that is down, failed or too far behind loses
the line, and the session says so once in the debug log.  The processes of
a session are the ones running when it connected: one started again
meanwhile never saw its ``link-connect`` and gets nothing more of it.

``link-connect`` is ``rdns|pass|src|dest``: the name of the remote address
(OpenSMTPD waits for ``getnameinfo``, which falls back to the address's
text; ``fcrdns`` is always ``pass``), our address, the remote's.  The name
is looked up while the session goes on: the session's events wait in
memory (at most :data:`HOLD_MAX`) until it is known, or until the session
ends (then the address's text stands for it).  So the lookup never delays a
relay either.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from mta.filters.encode import encode_report
from mta.filters.events import LinkConnect, LinkDisconnect, ReportPayload
from mta.filters.host import FilterHost
from mta.filters.protocol import (
    Address,
    FCrDNS,
    InetAddress,
    ProtocolVersion,
    ReportEvent,
    Subsystem,
    Timestamp,
)
from mta.log import get_logger
from mta.net.rdns import Rdns

__all__ = [
    "HOLD_MAX",
    "NameLookup",
    "ReportSink",
    "ReportsFactory",
    "SessionReports",
    "ptr_name",
    "reports_for",
    "socket_addresses",
]

log = get_logger("mta")

HOLD_MAX = 1024  # events kept while link-connect waits for the remote's name

NameLookup = Callable[[str], Awaitable[str | None]]
"""An IP address -> its name (PTR), None when it has none."""


class ReportSink(Protocol):
    """Where a session's report lines go
    (:class:`~mta.filters.process.FilterProcess` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> ProtocolVersion: ...

    def wants_report(self, subsystem: Subsystem, event: ReportEvent) -> bool: ...

    def post(self, line: bytes) -> bool: ...


class SessionReports:
    """The report events of one relay session (id ``session``) for ``sinks``;
    see the module docstring.  ``clock`` gives nanoseconds since the epoch."""

    def __init__(
        self,
        session: int,
        sinks: Sequence[ReportSink],
        *,
        lookup: NameLookup | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.session = session
        self.sinks = tuple(sinks)
        self.lookup = lookup
        self.clock = clock
        self._connect: tuple[Timestamp, Address, Address] | None = None
        self._held: list[tuple[Timestamp, ReportPayload]] = []
        self._scope: trio.CancelScope | None = None
        self._dropped: set[str] = set()
        self._over = False

    def connected(self, src: Address, dest: Address) -> None:
        """The connection is up (``src`` ours, ``dest`` the remote's): its
        ``link-connect`` goes out once :meth:`run` found the remote's name
        (at once without a ``lookup``)."""
        self._connect = (self._now(), src, dest)
        if self.lookup is None or not isinstance(dest, InetAddress):
            self._release(None)

    async def run(self) -> None:
        """Look the remote's name up, then send what waited; returns at once
        when nothing waits, early when :meth:`disconnected` is called."""
        if self._connect is None or self.lookup is None:
            return
        dest = self._connect[2]
        name: str | None = None
        with trio.CancelScope() as self._scope:
            if isinstance(dest, InetAddress):
                with contextlib.suppress(Exception):  # no name is no reason to fail
                    name = await self.lookup(str(dest.ip))
        self._scope = None
        self._release(name)

    def report(self, payload: ReportPayload) -> None:
        """Send ``payload`` (stamped now) to the sinks that want it."""
        if self._over:
            return
        stamped = (self._now(), payload)
        if self._connect is not None:
            self._held.append(stamped)
            if len(self._held) > HOLD_MAX:
                self._release(None)
            return
        self._send(*stamped)

    def disconnected(self) -> None:
        """The session is over: what waited goes out, then ``link-disconnect``."""
        if self._scope is not None:
            self._scope.cancel()
        self._release(None)
        self.report(LinkDisconnect())
        self._over = True

    def _release(self, name: str | None) -> None:
        """Send the waiting ``link-connect`` (with ``name``, else the remote's
        address) and what waited after it."""
        if self._connect is None:
            return
        stamp, src, dest = self._connect
        self._connect = None
        rdns = name or (str(dest.ip) if isinstance(dest, InetAddress) else "")
        self._send(stamp, LinkConnect(rdns, FCrDNS.PASS, src, dest))
        held, self._held = self._held, []
        for stamped in held:
            self._send(*stamped)

    def _now(self) -> Timestamp:
        return Timestamp.of_ns(self.clock())

    def _send(self, stamp: Timestamp, payload: ReportPayload) -> None:
        for sink in self.sinks:
            if not sink.wants_report(Subsystem.SMTP_OUT, payload.EVENT):
                continue
            line = encode_report(sink.version, stamp, Subsystem.SMTP_OUT, self.session, payload)
            if not sink.post(line) and sink.name not in self._dropped:
                self._dropped.add(sink.name)
                log.debug(
                    "%016x mta filter %s: report not sent (not running or not reading)",
                    self.session,
                    sink.name,
                )


ReportsFactory = Callable[[int], SessionReports]
"""A session id -> the reports of that session (the relay agent makes one
for a session of an action with filters)."""


def reports_for(
    host: FilterHost | None, procs: Sequence[str], lookup: NameLookup | None = None
) -> ReportsFactory | None:
    """Reports to the ``procs`` of ``host`` (those running when the session
    connects); None when there is nothing to report to."""
    if host is None or not procs:
        return None

    def make(session: int) -> SessionReports:
        sinks = [process for name in procs if (process := host.get(name)) is not None]
        return SessionReports(session, sinks, lookup=lookup)

    return make


def ptr_name(rdns: Rdns) -> NameLookup:
    """``rdns``'s name of an address (hosts file, then a PTR record)."""

    async def lookup(ip: str) -> str | None:
        return (await rdns.lookup(ip)).name

    return lookup


def _address(sockaddr: object) -> Address | None:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
            return InetAddress(ip, int(sockaddr[1]))
    return None


def socket_addresses(stream: trio.abc.Stream) -> tuple[Address, Address] | None:
    """Our address and the remote's on a TCP connection (None for another stream)."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return None
    try:
        ours, theirs = _address(sock.getsockname()), _address(sock.getpeername())
    except OSError:
        return None
    if ours is None or theirs is None:
        return None
    return ours, theirs

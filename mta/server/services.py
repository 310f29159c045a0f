"""What SMTP sessions share: the daemon-wide services and, per bound socket,
the listener's settings worked out once at start-up (TLS context, tables)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import attrs

from mta.config.model import AuthMode, Config, FilterRef, Listener, SocketListener, TlsMode
from mta.filters.host import FilterHost
from mta.net.rdns import Rdns
from mta.rules.expand import Resolver
from mta.rules.tableset import TableSet
from mta.scheduler.runner import QueueRunner
from mta.server.listeners import Bound
from mta.server.timeouts import Timeouts
from mta.server.watchdog import Watchdog
from mta.spool.spool import Spool
from mta.tables.base import Table

if TYPE_CHECKING:  # only test servers have faults: the daemon never imports them
    from mta.testing.faults import FaultSet

__all__ = ["Endpoint", "Services"]


@attrs.frozen(eq=False)
class Services:
    """The daemon-wide objects every session uses."""

    config: Config
    spool: Spool
    tables: TableSet
    resolver: Resolver
    rdns: Rdns | None
    timeouts: Timeouts
    hostname: str  # the server name when a listener sets none
    watchdog: Watchdog  # read deadlines of the sessions (run by the daemon)
    queue: QueueRunner | None = None  # told of every commit; None: nothing delivers
    filters: FilterHost | None = None  # the filter processes (None in tests: no filter runs)
    faults: FaultSet | None = None  # a test server's injected failures (None: the daemon)


@attrs.frozen(eq=False)
class Endpoint:
    """One bound socket with its listener's settings resolved."""

    bound: Bound
    listener: Listener | None  # None: the local enqueue socket
    socket_listener: SocketListener | None
    tls_context: ssl.SSLContext | None
    auth_table: Table | None
    senders: Table | None
    hostnames: Table | None

    @property
    def is_socket(self) -> bool:
        return self.listener is None

    @property
    def filter(self) -> FilterRef | None:
        """The ``filter`` this listener (or the local socket) names."""
        if self.listener is not None:
            return self.listener.filter
        return self.socket_listener.filter if self.socket_listener else None

    @property
    def local(self) -> bool:
        return self.bound.local

    @property
    def tls_mode(self) -> TlsMode:
        return self.listener.tls if self.listener else TlsMode.NONE

    @property
    def auth_mode(self) -> AuthMode:
        return self.listener.auth if self.listener else AuthMode.NONE

    @property
    def tag(self) -> str | None:
        if self.listener is not None:
            return self.listener.tag
        return self.socket_listener.tag if self.socket_listener else None

    @property
    def mask_src(self) -> bool:
        if self.listener is not None:
            return self.listener.mask_src
        return bool(self.socket_listener and self.socket_listener.mask_src)

    @property
    def dsn(self) -> bool:
        if self.listener is not None:
            return not self.listener.no_dsn
        return not (self.socket_listener and self.socket_listener.no_dsn)

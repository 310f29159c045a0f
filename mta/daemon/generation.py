"""One configuration in force, and what the daemon built from it.

A :class:`Generation` is made at start and again by each reload: the
configuration, its tables, the rule resolver, the TLS contexts of its
listeners and the :class:`~mta.server.services.Services` its sessions share.
A session keeps the generation it started with until it ends, so a reload
never changes the rules under a transaction in progress; the daemon closes a
replaced generation's tables and stops its filter processes once its last
session is over (:meth:`Generation.wait_idle`).  Its filter processes
(:class:`~mta.filters.host.FilterHost`) are started before its first session.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import attrs
import trio

from mta.config.model import Config
from mta.filters.host import FilterHost
from mta.net.rdns import Rdns
from mta.net.tls import server_context
from mta.rules.expand import Resolver
from mta.rules.tableset import TableSet
from mta.scheduler.runner import QueueRunner
from mta.server.listeners import Bound
from mta.server.services import Endpoint, Services
from mta.server.timeouts import Timeouts
from mta.server.watchdog import Watchdog
from mta.spool.spool import Spool
from mta.tables import local_addresses

if TYPE_CHECKING:  # only test servers have faults: the daemon never imports them
    from mta.testing.faults import FaultSet

__all__ = ["Generation", "Shared", "open_generation", "open_parts"]


@attrs.frozen(eq=False)
class Shared:
    """What every generation uses unchanged: the spool, the queue, reverse DNS,
    the timeouts, the sessions' watchdog and a test server's faults."""

    spool: Spool
    queue: QueueRunner | None
    rdns: Rdns | None
    timeouts: Timeouts
    watchdog: Watchdog
    faults: FaultSet | None = None  # a test server's injected failures (None: the daemon)


class Generation:
    """A configuration with its tables, resolver, TLS contexts and services,
    and how many sessions still use it."""

    def __init__(
        self,
        config: Config,
        tables: TableSet,
        contexts: dict[int, ssl.SSLContext | None],
        shared: Shared,
    ) -> None:
        self.config = config
        self.tables = tables
        self.contexts = contexts
        self.resolver = Resolver(config, tables, config.hostname)
        self.filters = FilterHost(
            config, admd=config.admd or config.hostname, timeout=shared.timeouts.command
        )
        self.services = Services(
            config=config,
            spool=shared.spool,
            tables=tables,
            resolver=self.resolver,
            rdns=shared.rdns,
            timeouts=shared.timeouts,
            hostname=config.hostname,
            watchdog=shared.watchdog,
            queue=shared.queue,
            filters=self.filters,
            faults=shared.faults,
        )
        self.sessions = 0
        self._idle = trio.Event()

    def endpoint(self, bound: Bound) -> Endpoint:
        """``bound`` with its listener's settings resolved in this generation."""
        listener = bound.listener
        if listener is None:
            return Endpoint(bound, None, self.config.socket, None, None, None, None)
        tables = self.tables
        return Endpoint(
            bound=bound,
            listener=listener,
            socket_listener=None,
            tls_context=self.contexts.get(id(listener)),
            auth_table=tables.get(listener.auth_table) if listener.auth_table else None,
            senders=tables.get(listener.senders) if listener.senders else None,
            hostnames=tables.get(listener.hostnames) if listener.hostnames else None,
        )

    def session_started(self) -> None:
        self.sessions += 1

    def session_ended(self) -> None:
        self.sessions -= 1
        if self.sessions == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no session uses this generation."""
        while self.sessions:
            if self._idle.is_set():
                self._idle = trio.Event()
            await self._idle.wait()


def open_parts(config: Config) -> tuple[TableSet, dict[int, ssl.SSLContext | None]]:
    """``config``'s tables and the TLS contexts of its listeners (blocking: files
    are read, table helpers started).  MTAError (TableError, a TLS error) if one
    cannot be opened; nothing is left open then."""
    contexts: dict[int, ssl.SSLContext | None] = {
        id(listener): server_context(listener, config) if listener.pki else None
        for listener in config.listeners
    }
    return TableSet.open(config, config.hostname, local_addresses()), contexts


def open_generation(config: Config, shared: Shared) -> Generation:
    """A new generation of ``config`` (:func:`open_parts`) sharing ``shared``."""
    tables, contexts = open_parts(config)
    try:
        return Generation(config, tables, contexts, shared)
    except BaseException:
        tables.close()
        raise

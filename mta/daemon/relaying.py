"""The daemon's relay agent, made when the first envelope is relayed.

The relay side (the SMTP client, TLS, MX resolution, dnspython) takes tens of
milliseconds to import; a server that never relays (most test servers of
:mod:`mta.testing`, a host that only takes mail for its own mailboxes) never
pays for it.  :class:`LazyRelay` stands in for
:class:`~mta.relay.agent.RelayAgent` in the queue runner: the first relay
attempt imports and makes the agent for the configuration in force, starts
the agent's own task (:meth:`RelayAgent.run`, which keeps sessions open
between messages) in the nursery :meth:`LazyRelay.run` holds, and tells the
daemon (``made``: the control socket shows the agent's hosts and routes).
Until then a reload only records the new configuration, and closing the
sessions has nothing to close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from mta.config.model import Config
from mta.envelope import Envelope
from mta.net.hosts import HostsFile
from mta.rules.tableset import TableSet

if TYPE_CHECKING:
    from mta.delivery.result import Result
    from mta.filters.host import FilterHost
    from mta.filters.outbound import NameLookup
    from mta.relay.agent import RelayAgent
    from mta.spool.spool import Spool

__all__ = ["LazyRelay"]


class LazyRelay:
    """A :class:`~mta.relay.agent.RelayAgent` made at the first relay attempt.

    ``config``, ``tables``, ``messages`` (the spool), ``hosts`` and ``names``
    are what the agent is made with; ``filters`` and ``reschedule`` are given
    to it once made (and kept up to date by :meth:`reconfigure` and the
    attribute); ``made`` is called with the new agent.
    """

    def __init__(
        self,
        config: Config,
        tables: TableSet,
        messages: Spool,
        *,
        hosts: HostsFile | None,
        names: NameLookup | None,
        made: Callable[[RelayAgent], None] = lambda agent: None,
    ) -> None:
        self.config = config
        self.tables = tables
        self.messages = messages
        self.hosts = hosts
        self.names = names
        self.made = made
        self.filters: FilterHost | None = None
        self._reschedule: Callable[[list[int]], object] = lambda evpids: None
        self.agent: RelayAgent | None = None
        self._ready = trio.Event()  # the agent's task runs
        self._nursery: trio.Nursery | None = None

    async def __call__(self, envelope: Envelope) -> Result:
        """Relay ``envelope`` (see :meth:`RelayAgent.__call__`)."""
        agent = self.agent
        if agent is None:
            agent = self._make()
            try:
                if self._nursery is not None:
                    await self._nursery.start(agent.run)
            finally:
                self._ready.set()
        elif not self._ready.is_set():
            await self._ready.wait()  # the first attempt is starting the agent's task
        return await agent(envelope)

    def _make(self) -> RelayAgent:
        from mta.net.resolver import DnsResolver
        from mta.relay.agent import RelayAgent

        agent = RelayAgent(
            self.config,
            self.tables,
            self.messages,
            resolver=DnsResolver.from_env(),
            hosts=self.hosts,
            filters=self.filters,
            names=self.names,
        )
        agent.reschedule = self._reschedule
        self.agent = agent
        self.made(agent)
        return agent

    @property
    def reschedule(self) -> Callable[[list[int]], object]:
        """Where the agent hands envelopes to schedule now (``mta max-deferred``)."""
        return self._reschedule

    @reschedule.setter
    def reschedule(self, value: Callable[[list[int]], object]) -> None:
        self._reschedule = value
        if self.agent is not None:
            self.agent.reschedule = value

    def reconfigure(self, config: Config, tables: TableSet, filters: FilterHost | None) -> None:
        """Relay by ``config`` from the next attempt on (a reload)."""
        self.config, self.tables, self.filters = config, tables, filters
        if self.agent is not None:
            self.agent.reconfigure(config, tables, filters)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the nursery the agent's task runs in, once there is an agent."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def close_sessions(self) -> None:
        """The agent's sessions say QUIT (see :meth:`RelayAgent.close_sessions`)."""
        if self.agent is not None:
            await self.agent.close_sessions()

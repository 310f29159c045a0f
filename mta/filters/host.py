"""The filter processes of one configuration, hosted in the daemon's nursery.

:class:`FilterHost` starts every ``proc`` that a listener's or a relay
action's filters use (each once, whatever number of chains name it), waits
for each to register, and
keeps them running: a filter that fails (:class:`~mta.filters.process.FilterFailed`:
it exited, broke the protocol or stopped answering) is started again after a
back-off of 1 s, doubling up to a minute, and the log says why.  While a
filter is down, :meth:`FilterHost.get` says so and the sessions that need it
get a temporary failure; nothing else stops.

Each process is told the subsystems it serves (``config|subsystem|...``
in its handshake), as OpenSMTPD's ``fork_filter_processes`` works them out:
``smtp-in`` for a proc a listener's filter uses, ``smtp-out`` for one a
relay action's filter uses (:func:`used_procs`), both when both use it.  A
relay session sends only report events (:mod:`mta.relay.reports`); the
procs it reports to are :func:`relay_procs`.

At start-up a filter that cannot start or register is a configuration
problem: :meth:`FilterHost.run` raises it (the daemon refuses to start, a
reload fails), as OpenSMTPD does, but with the filter's own words.
"""

from __future__ import annotations

import trio

from mta.config.model import Config, FilterProc, FilterRef, Proc, Relay
from mta.filters.chain import Chain, resolve
from mta.filters.encode import Handshake
from mta.filters.process import FilterFailed, FilterProcess
from mta.filters.protocol import FilterPhase, ProtocolVersion, Subsystem
from mta.log import get_logger
from mta.rules.tableset import TableSet

__all__ = ["BACKOFF_MAX", "FilterHost", "relay_procs", "used_procs"]

log = get_logger("filter")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0


def _procs(config: Config, ref: FilterRef) -> list[str]:
    """The procs of the filters ``ref`` names, in order (builtin filters have none)."""
    return [
        found.proc
        for _name, found in resolve(config, ref)
        if isinstance(found, FilterProc) and found.proc in config.procs
    ]


def relay_procs(config: Config, relay: Relay) -> tuple[str, ...]:
    """The procs a relay action's ``filter`` names: where its sessions' smtp-out
    reports go (``lka_filter_proc_in_session``)."""
    return tuple(_procs(config, relay.filter)) if relay.filter is not None else ()


def used_procs(config: Config) -> dict[str, tuple[Proc, frozenset[Subsystem]]]:
    """The processes that filters use, by proc name, with the subsystems each
    serves: ``smtp-in`` when a listener's filter names it, ``smtp-out`` when a
    relay action's does."""
    refs: list[FilterRef] = [lst.filter for lst in config.listeners if lst.filter is not None]
    if config.socket.filter is not None:
        refs.append(config.socket.filter)
    uses: dict[str, set[Subsystem]] = {}
    for ref in refs:
        for proc in _procs(config, ref):
            uses.setdefault(proc, set()).add(Subsystem.SMTP_IN)
    for action in config.actions.values():
        if isinstance(action.method, Relay):
            for proc in relay_procs(config, action.method):
                uses.setdefault(proc, set()).add(Subsystem.SMTP_OUT)
    return {name: (config.procs[name], frozenset(subs)) for name, subs in uses.items()}


class FilterHost:
    """The running filter processes of a configuration."""

    def __init__(
        self,
        config: Config,
        *,
        admd: str,
        timeout: float = 300.0,
        version: ProtocolVersion = ProtocolVersion.V0_7,
        backoff: float = BACKOFF_FIRST,
    ) -> None:
        used = used_procs(config)
        self.procs = {name: proc for name, (proc, _subsystems) in used.items()}
        self.handshakes = {
            name: Handshake(
                subsystems=subsystems,
                admd=admd,
                session_timeout=int(min(timeout, 0x7FFFFFFF)),
                version=version,
            )
            for name, (_proc, subsystems) in used.items()
        }
        self.timeout = timeout
        self.backoff = backoff
        self._live: dict[str, FilterProcess] = {}
        self._phases: dict[str, frozenset[FilterPhase]] = {}
        self._chains: dict[FilterRef, tuple[dict[str, frozenset[FilterPhase]], Chain]] = {}
        self._scope: trio.CancelScope | None = None

    def __bool__(self) -> bool:
        return bool(self.procs)

    def get(self, proc: str) -> FilterProcess | None:
        """The running process of ``proc``, or None while it is down."""
        process = self._live.get(proc)
        return process if process is not None and process.alive else None

    def registrations(self) -> dict[str, frozenset[FilterPhase]]:
        """The phases each process registered (its first registration: a
        restarted filter is the same program, so the chains stay as built)."""
        found = dict(self._phases)
        for name, process in self._live.items():
            if process.registered is not None:
                found.setdefault(name, process.registered.phases)
        return found

    def chain(self, config: Config, ref: FilterRef, tables: TableSet) -> Chain:
        """The chain ``ref`` names in ``config`` (this host's), built once and then
        again only when a process registers for the first time: every session of
        a listener shares it (its tables are updated in place)."""
        registrations = self.registrations()
        cached = self._chains.get(ref)
        if cached is not None and cached[0] == registrations:
            return cached[1]
        chain = Chain.build(config, ref, tables, registrations)
        self._chains[ref] = (registrations, chain)
        return chain

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every filter and report started once all registered (FilterFailed
        for the first that could not), then keep them running until cancelled."""
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                for name in self.procs:
                    await nursery.start(self._serve, name)
                task_status.started()

    def stop(self) -> None:
        """Stop every filter (the task of :meth:`run` returns)."""
        if self._scope is not None:
            self._scope.cancel()

    async def _serve(
        self, name: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run ``name``, and again whenever it fails; started once it first
        registered (FilterFailed if it never did: a configuration problem)."""
        delay = self.backoff
        first = True
        while True:
            process = FilterProcess(
                name, self.procs[name], self.handshakes[name], timeout=self.timeout
            )
            self._live[name] = process
            started = trio.current_time()
            try:
                if first:
                    await process.run(task_status=task_status)
                else:
                    await process.run()
            except FilterFailed:
                if first and process.registered is None:
                    raise
            finally:
                if process.registered is not None:
                    # a restarted filter is the same program: the chains stay as built
                    self._phases.setdefault(name, process.registered.phases)
            first = False
            # one that ran a while is started again at once; one that keeps
            # failing waits longer each time
            if trio.current_time() - started > BACKOFF_MAX:
                delay = self.backoff
            log.info("filter %s: starting again in %gs", name, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

"""A session's filter chain and its evaluation for one phase, sans-IO.

Resolution (``lka_filter_init`` / ``lka_filter_ready``, lka_filter.c): a
listener's ``filter NAME`` names a builtin filter, a process filter or a
``chain { ... }``; ``filter { a, b }`` is an anonymous chain.  Chains hold only
builtin and process filters (parse.y ``filterel``: "no filter chain allowed
within a filter chain", nor a filter twice, nor a proc twice), so a chain is a
flat list: :func:`resolve`, then :meth:`Chain.build` with the tables and what
each filter process registered in its handshake.

Evaluation (``filter_protocol_internal``): for a phase, the filters that apply
to it run in declaration order; a builtin filter applies to its own phase only,
a process filter to the phases its process registered.  The parameter is the
same for every filter (lka passes ``fs->lastparam``).  Proceed, and report
(the event is emitted first), go on to the next filter; every other decision
ends the chain for the phase: junk, reject, disconnect, rewrite (later filters
never see the new value: the session re-checks the command with it), and
bypass (which makes the phase proceed).  No filter left: proceed.

A process answering ``report`` is treated as the builtin report (event, then
the next filter).  OpenSMTPD 6.8 dies on it ("Invalid directive"); 7.x
(commit 0b1c010b) ends the chain and runs the command with the report text as
its parameter, a bug.  A process answering junk at commit makes OpenSMTPD exit
(``fatalx``); here it raises :class:`FilterMisbehaved`, so that only the
session fails.

:class:`ChainRun` is the stepper: :meth:`ChainRun.next_step` says what to do
next (:class:`EmitReport`, :class:`NeedLookup`, :class:`AskProcess` or
:class:`Done`), the caller does it and feeds the answer back
(:meth:`ChainRun.answer`, :meth:`ChainRun.receive`).  Lookups in in-memory
tables are made inline (they never block); others are handed to the caller,
who runs them in a worker thread (:meth:`~mta.rules.tableset.TableSet.call`).
:func:`drive` is that loop for trio code.

A phase no filter of the chain applies to needs no work (:meth:`Chain.needs`).
OpenSMTPD still reports a ``filter-response ... proceed`` event for every
phase of a filtered session (even quit): that is the session's to emit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping

import attrs

from mta.config.model import Config, FilterBuiltin, FilterChain, FilterProc, FilterRef
from mta.errors import ConfigError, TableError
from mta.filters.builtin import (
    Decision,
    DecisionKind,
    FilterMisbehaved,
    Lookup,
    SessionFacts,
    Test,
    builtin_decision,
    condition_tests,
)
from mta.filters.protocol import FilterPhase
from mta.rules.tableset import TableSet, is_blocking
from mta.tables import Table

__all__ = [
    "AskProcess",
    "BuiltinEntry",
    "Chain",
    "ChainRun",
    "Done",
    "EmitReport",
    "Entry",
    "FilterMisbehaved",
    "NeedLookup",
    "ProcEntry",
    "Step",
    "drive",
    "resolve",
]


@attrs.frozen
class BuiltinEntry:
    """A builtin filter of a chain, with the table its condition names (opened)."""

    name: str
    filter: FilterBuiltin
    table: Table | None = attrs.field(eq=False, default=None)
    phase: FilterPhase = attrs.field(init=False, eq=False, repr=False)

    @phase.default
    def _phase(self) -> FilterPhase:
        return FilterPhase(self.filter.phase)


@attrs.frozen
class ProcEntry:
    """A process filter of a chain and the phases its process registered."""

    name: str
    proc: str
    phases: frozenset[FilterPhase] = frozenset()


Entry = BuiltinEntry | ProcEntry


def resolve(config: Config, ref: FilterRef) -> tuple[tuple[str, FilterBuiltin | FilterProc], ...]:
    """The filters a listener's ``filter`` names, flattened, in order; ConfigError
    for an unknown name or a chain inside a chain (the parser refuses both)."""
    names = ref.names
    if not ref.chain and len(names) == 1:
        found = config.filters.get(names[0])
        if isinstance(found, FilterChain):
            names = found.filters
    members: list[tuple[str, FilterBuiltin | FilterProc]] = []
    for name in names:
        found = config.filters.get(name)
        if found is None:
            raise ConfigError(f"no filter exist with that name: {name}")
        if isinstance(found, FilterChain):
            raise ConfigError(f"no filter chain allowed within a filter chain: {name}")
        members.append((name, found))
    return tuple(members)


@attrs.frozen
class Chain:
    """The filters of one listener, in order, ready to run (shared by its sessions).

    Which filters apply to each phase, and the processes, are worked out once,
    when the chain is made: the session asks at every command."""

    entries: tuple[Entry, ...]
    _by_phase: Mapping[FilterPhase, tuple[Entry, ...]] = attrs.field(
        init=False, eq=False, repr=False
    )
    procs: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)
    """The processes of the chain: the session's report events go to those
    that subscribed (``lka_filter_proc_in_session``)."""

    @_by_phase.default
    def _index(self) -> Mapping[FilterPhase, tuple[Entry, ...]]:
        found: dict[FilterPhase, list[Entry]] = {}
        for e in self.entries:  # in order, so each phase's filters are too
            for phase in (e.phase,) if isinstance(e, BuiltinEntry) else e.phases:
                found.setdefault(phase, []).append(e)
        return {phase: tuple(entries) for phase, entries in found.items()}

    @procs.default
    def _procs(self) -> tuple[str, ...]:
        return tuple(e.proc for e in self.entries if isinstance(e, ProcEntry))

    @classmethod
    def build(
        cls,
        config: Config,
        ref: FilterRef,
        tables: TableSet,
        registrations: Mapping[str, Collection[FilterPhase]],
    ) -> Chain:
        """The chain ``ref`` names; ``registrations`` maps each process name to the
        phases it registered (``register|filter|smtp-in|PHASE``).  TableError if
        a table is missing, ConfigError if a filter is."""
        entries: list[Entry] = []
        for name, found in resolve(config, ref):
            if isinstance(found, FilterBuiltin):
                table = tables.get(found.table) if found.table is not None else None
                entries.append(BuiltinEntry(name, found, table))
            else:
                phases = frozenset(registrations.get(found.proc, ()))
                entries.append(ProcEntry(name, found.proc, phases))
        return cls(tuple(entries))

    def at(self, phase: FilterPhase) -> tuple[Entry, ...]:
        """The filters that apply to ``phase``, in order."""
        return self._by_phase.get(phase, ())

    @property
    def phases(self) -> frozenset[FilterPhase]:
        """Every phase some filter of the chain applies to."""
        return frozenset(self._by_phase)

    def needs(self, phase: FilterPhase) -> bool:
        """Whether ``phase`` has anything to run (else it simply proceeds)."""
        return phase in self._by_phase


# -- steps --------------------------------------------------------------------------


@attrs.frozen
class EmitReport:
    """Emit ``filter-report|builtin|NAME|TEXT`` (``proc`` when not builtin), then go on."""

    filter: str
    builtin: bool
    text: str


@attrs.frozen
class NeedLookup:
    """Run ``lookup.perform`` (it may block) and give its outcome to :meth:`ChainRun.answer`."""

    filter: str
    lookup: Lookup


@attrs.frozen
class AskProcess:
    """Send the filter request for ``phase`` with ``param`` to process ``proc`` and
    give its decision to :meth:`ChainRun.receive`.  At connect the request also
    carries the client's name (``<unknown>`` when none) before ``param``."""

    filter: str
    proc: str
    phase: FilterPhase
    param: str


@attrs.frozen
class Done:
    """The outcome of the phase: ``decision`` is proceed, junk, reject, disconnect
    or rewrite (a bypass is a proceed); ``filter`` the filter that decided (None
    when the chain ran out); ``lookup_errors`` the lookups that failed and
    counted as no match, for the log."""

    decision: Decision
    filter: str | None = None
    lookup_errors: tuple[str, ...] = ()


Step = EmitReport | NeedLookup | AskProcess | Done


class ChainRun:
    """The evaluation of ``chain`` for one phase of one session.

    ``param`` is the phase's parameter (:func:`~mta.filters.builtin.phase_param`),
    ``facts`` the session's before the phase; :attr:`facts` holds them as the
    phase sees them (keep them for the next phases, as lka does: a rewrite is
    not seen there).
    """

    def __init__(self, chain: Chain, phase: FilterPhase, param: str, facts: SessionFacts) -> None:
        if phase is FilterPhase.DATA_LINE:
            raise ValueError("data-line is a stream through the processes, not a decision")
        self.phase = phase
        self.param = param
        self.facts = facts.at(phase, param)
        self._entries = chain.at(phase)
        self._index = 0
        self._tests: deque[Test] | None = None
        self._pending: NeedLookup | AskProcess | None = None
        self._reports: deque[EmitReport] = deque()
        self._errors: list[str] = []
        self._done: Done | None = None

    def next_step(self) -> Step:
        """What to do next; the same step again while an answer is awaited."""
        while True:
            if self._reports:
                return self._reports.popleft()
            if self._pending is not None:
                return self._pending
            if self._done is not None:
                return self._done
            if self._index >= len(self._entries):
                self._done = Done(Decision.proceed(), None, tuple(self._errors))
                continue
            entry = self._entries[self._index]
            if isinstance(entry, ProcEntry):
                self._pending = AskProcess(entry.name, entry.proc, self.phase, self.param)
                continue
            self._evaluate(entry)

    def answer(self, outcome: bool | TableError) -> None:
        """The outcome of the :class:`NeedLookup` step."""
        pending = self._pending
        if not isinstance(pending, NeedLookup):
            raise RuntimeError("no lookup is awaited")
        self._pending = None
        entry = self._entries[self._index]
        assert isinstance(entry, BuiltinEntry)
        if self._tested(entry, pending.lookup, outcome):
            self._matched(entry)
        elif not self._tests:
            self._next()

    def receive(self, decision: Decision) -> None:
        """The decision of the process asked by the :class:`AskProcess` step;
        FilterMisbehaved if it may not decide that here."""
        pending = self._pending
        if not isinstance(pending, AskProcess):
            raise RuntimeError("no filter process is awaited")
        self._pending = None
        kind = decision.kind
        if kind is DecisionKind.BYPASS:
            raise FilterMisbehaved(f"filter {pending.filter}: bypass is not a filter result")
        self._decide(pending.filter, False, decision)

    # -- internals ---------------------------------------------------------------

    def _next(self) -> None:
        self._index += 1
        self._tests = None

    def _evaluate(self, entry: BuiltinEntry) -> None:
        """Run the tests of a builtin until one holds, a blocking lookup is
        needed, or none is left."""
        if self._tests is None:
            self._tests = deque(condition_tests(entry.filter, entry.table, self.facts))
        while self._tests:
            test = self._tests.popleft()
            if isinstance(test, Lookup) and is_blocking(test.table):
                self._pending = NeedLookup(entry.name, test)
                return
            outcome = test.perform() if isinstance(test, Lookup) else test
            if self._tested(entry, test, outcome):
                self._matched(entry)
                return
        self._next()

    def _tested(self, entry: BuiltinEntry, test: Test, outcome: bool | TableError) -> bool:
        """Whether one test makes the condition hold; a failed lookup is no match."""
        if isinstance(outcome, TableError):
            assert isinstance(test, Lookup)
            self._errors.append(
                f"filter {entry.name}: {test.service.protocol_name} lookup failed: {outcome}"
            )
            outcome = False
        return outcome != entry.filter.negated

    def _matched(self, entry: BuiltinEntry) -> None:
        self._decide(entry.name, True, builtin_decision(entry.filter))

    def _decide(self, name: str, builtin: bool, decision: Decision) -> None:
        kind = decision.kind
        if kind is DecisionKind.JUNK and self.phase is FilterPhase.COMMIT:
            raise FilterMisbehaved(f"filter {name}: junk at commit")
        if kind is DecisionKind.REPORT:
            assert decision.value is not None
            self._reports.append(EmitReport(name, builtin, decision.value))
        if not decision.ends_chain:
            self._next()
            return
        if kind is DecisionKind.BYPASS:
            decision = Decision.proceed()
        self._done = Done(decision, name, tuple(self._errors))


async def drive(
    run: ChainRun,
    tables: TableSet,
    ask: Callable[[AskProcess], Awaitable[Decision]],
    report: Callable[[EmitReport], Awaitable[None]],
) -> Done:
    """Run ``run`` to its end: reports through ``report``, process requests through
    ``ask``, blocking lookups in a worker thread (``tables.call``)."""
    while True:
        step = run.next_step()
        if isinstance(step, Done):
            return step
        if isinstance(step, EmitReport):
            await report(step)
        elif isinstance(step, NeedLookup):
            run.answer(await tables.call(step.lookup.table, step.lookup.perform))
        else:
            run.receive(await ask(step))

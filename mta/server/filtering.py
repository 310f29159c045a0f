"""The filters of one SMTP session: its listener's chain run at each phase,
and the report events its filter processes subscribed to.

:class:`SessionFilters` is made for a session whose listener names a
``filter`` (no filter: no object, no cost).  :meth:`SessionFilters.phase`
runs the chain for a phase (:mod:`mta.filters.chain`: builtin filters in the
daemon, process filters through :mod:`mta.filters.host`) and returns the
:class:`~mta.filters.chain.Done` outcome; the session applies it (reject,
disconnect, rewrite, junk).  A filter process that is down, fails or
misbehaves while the session waits on it makes the outcome a
:data:`FILTER_TEMPFAIL` disconnect: the client may try again later, nothing
accepted is lost.  :meth:`SessionFilters.report` sends a report event to the
processes of the chain that registered for it; a filter failing there is
left to the host (it restarts it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import time

import attrs

from mta.errors import FilterError, MTAError
from mta.filters.builtin import Decision, DecisionKind, FilterMisbehaved, SessionFacts
from mta.filters.chain import AskProcess, Chain, ChainRun, Done, EmitReport, drive
from mta.filters.encode import encode_report
from mta.filters.events import FilterReportEvent, FilterResponse, LinkConnect, ReportPayload
from mta.filters.host import FilterHost
from mta.filters.process import FilterProcess
from mta.filters.protocol import (
    Address,
    FCrDNS,
    FilterPhase,
    InetAddress,
    ReportEvent,
    Subsystem,
    Timestamp,
    UnixAddress,
)
from mta.filters.protocol import Decision as ProtocolDecision
from mta.log import get_logger, visible
from mta.reply import Reply
from mta.rules.tableset import TableSet
from mta.server.client import Client
from mta.server.services import Endpoint, Services

__all__ = [
    "FILTER_TEMPFAIL",
    "PROCEED",
    "Outcome",
    "SessionFilters",
    "link_addresses",
    "link_connect",
    "open_filters",
]

log = get_logger("smtp")

FILTER_TEMPFAIL = Reply.of(421, "4.3.0", "Temporary failure, try again later", close=True)


def _address(sockaddr: object, unix_path: str) -> Address:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        try:
            ip = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        except ValueError:
            return UnixAddress(unix_path)
        return InetAddress(ip, int(sockaddr[1]))
    return UnixAddress(unix_path)


def link_addresses(
    endpoint: Endpoint, peer_address: object, stream: object
) -> tuple[Address, Address]:
    """The client's and our address as ``link-connect`` and the connect request
    give them (a local session: the enqueue socket's path, both ends)."""
    if endpoint.is_socket:
        path = endpoint.bound.address
        return UnixAddress(path), UnixAddress(path)
    sock = getattr(stream, "socket", None)
    peer, local = peer_address, None
    with contextlib.suppress(OSError, AttributeError):
        if peer is None and sock is not None:
            peer = sock.getpeername()
        if sock is not None:
            local = sock.getsockname()
    if local is None:
        local = (endpoint.bound.address, endpoint.bound.port)
    return _address(peer, endpoint.bound.address), _address(local, endpoint.bound.address)


def link_connect(client: Client, src: Address, dest: Address) -> LinkConnect:
    """The ``link-connect`` event of a session."""
    fcrdns = FCrDNS.PASS if client.fcrdns else FCrDNS.FAIL
    return LinkConnect(client.rdns or "", fcrdns, src, dest)


@attrs.frozen
class Outcome:
    """What the session does after a phase's filters: send ``refused`` instead
    of running the command (its ``close`` set for a disconnect), run it with
    ``value`` instead of the client's (a rewrite), and mark the transaction
    (or the session, before one) junk."""

    refused: Reply | None = None
    value: str | None = None
    junk: bool = False

    @classmethod
    def of(cls, done: Done) -> Outcome:
        decision = done.decision
        kind = decision.kind
        if kind is DecisionKind.PROCEED:
            return PROCEED
        if kind in (DecisionKind.REJECT, DecisionKind.DISCONNECT):
            assert decision.reply is not None
            reply = decision.reply
            if kind is DecisionKind.DISCONNECT:
                reply = attrs.evolve(reply, close=True)
            return cls(refused=reply)
        if kind is DecisionKind.REWRITE:
            return cls(value=decision.value)
        return cls(junk=kind is DecisionKind.JUNK)


PROCEED = Outcome()
_PROCEEDED = Done(Decision.proceed())


def _response(phase: FilterPhase, decision: Decision) -> FilterResponse:
    """The ``filter-response`` event of a phase's outcome (OpenSMTPD reports one
    for every phase of a filtered session, ``proceed`` included)."""
    kind = decision.kind
    if kind is DecisionKind.BYPASS:
        kind = DecisionKind.PROCEED
    response = ProtocolDecision(kind.value)
    return FilterResponse(phase, response, decision.value if response.takes_parameter else None)


class SessionFilters:
    """See the module docstring."""

    def __init__(
        self,
        session: int,
        chain: Chain,
        host: FilterHost,
        tables: TableSet,
        facts: SessionFacts,
        *,
        src: Address | None,
        rdns: str = "",
    ) -> None:
        self.session = session
        self.chain = chain
        self.host = host
        self.tables = tables
        self.facts = facts
        self.src = src  # the client, for the connect request (None: no process to ask)
        self.rdns = rdns

    def needs(self, phase: FilterPhase) -> bool:
        return self.chain.needs(phase)

    def wants_transcript(self) -> bool:
        """Whether a process of the chain wants protocol-client / -server reports."""
        return any(
            p.wants_report(Subsystem.SMTP_IN, event)
            for p in self.processes()
            for event in (ReportEvent.PROTOCOL_CLIENT, ReportEvent.PROTOCOL_SERVER)
        )

    def processes(self) -> list[FilterProcess]:
        """The chain's processes that are running now."""
        found = (self.host.get(name) for name in self.chain.procs)
        return [p for p in found if p is not None]

    def data_stages(self) -> list[FilterProcess] | None:
        """The processes a message streams through (``data-line``), in chain
        order: an empty list when none registered it, None when one of them
        is down (the message cannot be filtered as configured)."""
        stages = []
        for entry in self.chain.at(FilterPhase.DATA_LINE):
            process = self.host.get(getattr(entry, "proc", ""))
            if process is None:
                return None
            stages.append(process)
        return stages

    async def command(self, phase: FilterPhase, param: str) -> Outcome:
        """Run the chain for ``phase`` with ``param``: what the session is to do."""
        return Outcome.of(await self.phase(phase, param))

    async def phase(self, phase: FilterPhase, param: str) -> Done:
        """Run the chain for ``phase`` with ``param``; the chain's outcome."""
        if not self.chain.needs(phase):
            # OpenSMTPD reports every phase of a filtered session, asked or not
            self.facts = self.facts.at(phase, param)
            if self.chain.procs:
                await self.report(_response(phase, _PROCEEDED.decision))
            return _PROCEEDED
        run = ChainRun(self.chain, phase, param, self.facts)
        try:
            done = await drive(run, self.tables, self._ask, self._emit)
        except (FilterError, FilterMisbehaved) as exc:
            log.warning("%016x smtp filter failed: %s", self.session, visible(str(exc)))
            return Done(Decision(DecisionKind.DISCONNECT, FILTER_TEMPFAIL.text, FILTER_TEMPFAIL))
        self.facts = run.facts
        for error in done.lookup_errors:
            log.warning("%016x smtp filter lookup failed: %s", self.session, visible(error))
        if self.chain.procs:
            await self.report(_response(phase, done.decision))
        return done

    async def _ask(self, step: AskProcess) -> Decision:
        process = self.host.get(step.proc)
        if process is None:
            raise FilterError(f"filter {step.filter}: not running")
        if step.phase is FilterPhase.CONNECT:
            assert self.src is not None  # a chain with processes has it
            result = await process.request_connect(self.session, self.rdns, self.src)
        else:
            result = await process.request(step.phase, self.session, step.param)
        return Decision.of(result.decision.value, result.parameter)

    async def _emit(self, step: EmitReport) -> None:
        await self.report(FilterReportEvent(step.builtin, step.filter, step.text))

    async def report(self, payload: ReportPayload) -> None:
        """Send a report event to the chain's processes that want it."""
        if not self.chain.procs:  # builtin filters only: nobody to tell
            return
        timestamp = Timestamp.of_ns(time.time_ns())
        for process in self.processes():
            if not process.wants_report(Subsystem.SMTP_IN, payload.EVENT):
                continue
            line = encode_report(
                process.version, timestamp, Subsystem.SMTP_IN, self.session, payload
            )
            with contextlib.suppress(FilterError):  # the host restarts it; the session goes on
                await process.send_line(line)


async def open_filters(
    services: Services,
    endpoint: Endpoint,
    client: Client,
    session: int,
    peer_address: object,
    stream: object,
) -> SessionFilters | Reply | None:
    """The filters of a new session (its ``link-connect`` reported), None when
    its listener has none, or the reply refusing the session when they cannot
    be set up (a filter missing: the configuration changed under it)."""
    host, ref = services.filters, endpoint.filter
    if ref is None or host is None:
        return None
    try:
        chain = host.chain(services.config, ref, services.tables)
    except MTAError as exc:
        log.warning("%016x smtp filter failed: %s", session, visible(str(exc)))
        return FILTER_TEMPFAIL
    where = "local" if endpoint.is_socket else client.peer
    facts = SessionFacts(src=where, rdns=client.rdns, fcrdns=client.fcrdns)
    if not chain.procs:  # builtin filters only: no process to tell of the link
        return SessionFilters(session, chain, host, services.tables, facts, src=None)
    src, dest = link_addresses(endpoint, peer_address, stream)
    filters = SessionFilters(
        session, chain, host, services.tables, facts, src=src, rdns=client.rdns or ""
    )
    await filters.report(link_connect(client, src, dest))
    return filters

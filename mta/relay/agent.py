"""The relay agent: the queue runner's ``relay`` callable (OpenSMTPD's ``mta.c``).

``await agent(envelope)`` relays one MTA envelope and returns its
:class:`~mta.delivery.result.Result` (with :class:`~mta.delivery.result.Relayed`:
where it went, and whether a "relayed" success notice is ours to send):

1. The plan (:mod:`mta.relay.plan`) from the envelope's ``relay`` action: the
   smarthost (``host <table>``: the next URL of the table, round-robin as
   OpenSMTPD's ``table_fetch``; ``domain <table>``: the URL stored for the
   destination domain, else MX), the TLS policy, credentials (the ``auth``
   table's value for the URL's ``label@``), the source address (``src``), the
   HELO name (``helo-src``: the name its table gives the source address, a
   temporary failure when it has none, as OpenSMTPD's "Failed to retrieve helo
   string"; else ``helo``; else our host name) and the reverse-path
   (``mail-from``, then SRS for forwarded mail of an ``srs`` action).  A plan that cannot be
   made (unknown action, missing credentials, ``tls`` with ``smtp+notls://``, a
   table failing) is a temporary failure: the operator can fix it.
2. Batching: envelopes of one message with the same plan that arrive within
   ``window`` seconds of the first go in one transaction; each caller gets
   its own recipient's result.
3. The route: the smarthost's addresses (an IP address needs no DNS; a name
   listed in the hosts file neither) or the MX of the domain
   (:func:`~mta.relay.mx.resolve_route`; no resolver is a temporary failure).
   NXDOMAIN, Null MX, a loop: permanent failure.
4. Per host of the route in order (the MX, most preferred first): its
   addresses (those not backed off, :mod:`mta.relay.backoff`) are raced,
   happy eyeballs (:mod:`mta.relay.eyeballs`: the next one 250 ms after the
   previous one, or at once when it failed), each attempt once the
   connection limits allow it; an address that refused or timed out has its
   route backed off.  The winner's session (:func:`~mta.relay.session.run_session`)
   gets the message; when it fails before any transaction started, the
   host's other addresses, then the next host, are tried; otherwise each
   recipient's result is that session's.  When every address is held, the
   recipients fail temporarily at once with the last error.  The message is
   opened once, when a session first needs it: that tells its size, sent as
   ``SIZE=`` and checked against the remote's limit before MAIL (5.3.4).
   Opening it checks its content: one that fails (:class:`~mta.errors.CorruptMessage`)
   is sent nowhere, and every caller of the batch gets the error, for the
   runner to quarantine the message (a change after that, while it streams,
   fails the session before the final dot).
   Legacy ``secure://`` tries all this with SMTPS, then with STARTTLS
   (:func:`~mta.relay.plan.tls_attempts`).
5. Connection reuse (:mod:`mta.relay.pool`), while :meth:`RelayAgent.run`
   runs: a session that finished its message waits
   ``session-transaction-delay`` (0), then ``session-keepalive`` seconds for
   the next message of the same plan, up to ``session-mail-max`` messages
   (``mta limit``, per domain or global); a message for a plan with a
   waiting session goes there first, skipping the route.
6. ``mta limit max-conn-per-*`` and ``conn-delay-*`` (:mod:`mta.relay.limits`):
   a new connection waits for a free slot per host, route, source, relay and
   domain, and for the delays since the last one; a message waiting so goes
   to a session of its plan as soon as one is free.
   ``max-failures-per-session`` is the client's (:mod:`mta.relay.client`).
7. The inventory (:mod:`mta.relay.inventory`, ``mtactl show hosts|relays|
   hoststats``) is told of tasks, waits and connections, and of each
   recipient's result by destination domain: when no address of a domain
   could take a message, its envelopes are kept (``mta max-deferred``), and
   the next success there hands them to :attr:`RelayAgent.reschedule` to go
   at once rather than at their next retry.

8. Filters: a relay action's ``filter`` procs get the ``smtp-out`` report
   events of its sessions (:mod:`mta.filters.outbound`), through the
   :class:`~mta.filters.host.FilterHost` of the configuration in force when
   the session connects (:attr:`RelayAgent.filters`, renewed by
   :meth:`RelayAgent.reconfigure`).

The route resolver, the session runner and the message source are injected,
so the decisions are tested without sockets.  Not done (OpenSMTPD does): the
``reconn-delay-route`` (a failed route is backed off instead).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import BinaryIO, Protocol

import attrs
import trio

from mta import threads
from mta.config.model import Config, Relay
from mta.delivery.result import Outcome, Relayed, Result
from mta.envelope import Envelope
from mta.errors import (
    CorruptMessage,
    MTAError,
    PermanentFailure,
    RouteError,
    RoutePermanentFailure,
)
from mta.filters.host import FilterHost, relay_procs
from mta.filters.outbound import NameLookup, ReportsFactory, reports_for
from mta.log import get_logger, visible
from mta.net.hosts import HostsFile
from mta.net.resolver import DnsResolver
from mta.relay.backoff import RouteBackoff
from mta.relay.client import Client, ClientConfig, Credentials
from mta.relay.eyeballs import DELAY, Race, first_of
from mta.relay.inventory import RelayInventory, RelayKey, Wait, relay_key
from mta.relay.limits import ConnectionLimits, Key, limit_for
from mta.relay.mx import backup_name, family_limit, resolve_host, resolve_route
from mta.relay.plan import (
    SMTP_PORT,
    Plan,
    rewrite_sender,
    session_key,
    status_code,
    tls_attempts,
    tls_policy,
    transaction_for,
)
from mta.relay.pool import Connection, Work
from mta.relay.route import Hop, Route, parse_literal
from mta.relay.session import (
    ContentSource,
    Reuse,
    SessionOutcome,
    connect_failed,
    error_text,
    run_session,
)
from mta.relay.session import connect as session_connect
from mta.relay.srs import relay_sender
from mta.relay.timeouts import ClientTimeouts, Step
from mta.relay.tlsclient import ClientTls, relay_tls
from mta.relay.transaction import Transaction
from mta.rules.tableset import TableSet
from mta.spool.store import read_chunks
from mta.status import StatusCode
from mta.tables.lookups import (
    fetch_relayhost,
    fetch_source,
    lookup_addrname,
    lookup_credentials,
    lookup_relayhost,
)
from mta.tables.relayhost import RelayHost

__all__ = [
    "BATCH_WINDOW",
    "Connect",
    "MessageSource",
    "RelayAgent",
    "ResolvePlan",
    "RunSession",
]

log = get_logger("mta")

BATCH_WINDOW = 0.05  # seconds the first envelope of a group waits for the others
NO_ROUTE = StatusCode(4, 4, 4)  # no usable route now


class MessageSource(Protocol):
    """What the agent needs of the spool (:class:`~mta.spool.spool.Spool` has it):
    a message's content as a stream (blocking reads) and its size in octets."""

    async def open_message_sized(self, msgid: int) -> tuple[BinaryIO, int]: ...


ResolvePlan = Callable[[Plan], Awaitable[Route]]
"""A plan -> the route to try (raises :class:`~mta.errors.RouteError`)."""


class RunSession(Protocol):
    """:func:`~mta.relay.session.run_session`'s signature, as the agent calls it."""

    def __call__(
        self,
        address: str,
        port: int,
        *,
        client: Client,
        server_name: str,
        content: ContentSource,
        timeouts: ClientTimeouts,
        tls: ClientTls | None = ...,
        source: str | None = ...,
        stream: trio.abc.Stream | None = ...,
        reuse: Reuse | None = ...,
        reports: ReportsFactory | None = ...,
    ) -> Awaitable[SessionOutcome]: ...


class Connect(Protocol):
    """:func:`~mta.relay.session.connect`'s signature: a TCP connection to an address."""

    def __call__(
        self, address: str, port: int, *, source: str | None = ...
    ) -> Awaitable[trio.abc.Stream]: ...


@attrs.frozen(eq=False)
class _Slot:
    """A connection won by an attempt, with the limit tokens it holds."""

    stream: trio.abc.Stream
    borrower: object
    held: list[Key]
    relay: RelayKey
    address: str


@attrs.frozen
class _Reach:
    """How a hop's candidates went: the address whose session ran the work
    (None: none accepted a connection) and the ones that failed to connect."""

    address: str | None
    failures: dict[str, Result]


def _server_name(address: str, hop: Hop) -> str:
    """The name the session checks the certificate against (and sends as
    SNI): the host's name, the address itself for an address literal."""
    return address if parse_literal(hop.host) is not None else hop.host


def _via(address: str, hop: Hop) -> str:
    """The ``relay=`` of the log line: ``"192.0.2.1 (mx.example.net)"``."""
    return f"{address} ({hop.host})"


@attrs.define(eq=False)
class _Batch:
    envelopes: list[Envelope]
    results: list[Result] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)
    corrupt: CorruptMessage | None = None  # the message failed its checks: no results


class _Unreadable(Exception):
    """The message could not be opened: ``result`` is every recipient's."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.text)
        self.result = result


class _Message:
    """One message's content for the sessions of one relay attempt: opened
    when a session first needs it (which tells its size); the first session
    to read it streams that stream, a later one (the next address, the
    plaintext retry) opens it again."""

    def __init__(self, messages: MessageSource, msgid: int) -> None:
        self.messages = messages
        self.msgid = msgid
        self.size = 0
        self._opened = False
        self._stream: BinaryIO | None = None

    async def open(self) -> _Message:
        """The message, opened (once); :class:`_Unreadable` when it cannot be,
        :class:`~mta.errors.CorruptMessage` when it fails its checks."""
        if not self._opened:
            try:
                self._stream, self.size = await self.messages.open_message_sized(self.msgid)
            except CorruptMessage:
                raise
            except (MTAError, OSError) as exc:
                raise _Unreadable(Result.tempfail(f"Cannot read the message: {exc}")) from exc
            self._opened = True
        return self

    async def content(self, _index: int) -> AsyncIterator[bytes]:
        stream, self._stream = self._stream, None
        if stream is None:
            stream, _size = await self.messages.open_message_sized(self.msgid)
        try:
            async for chunk in read_chunks(stream):
                yield chunk
        finally:
            await threads.run_sync(stream.close)

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await threads.run_sync(stream.close)


@attrs.define
class _Tried:
    """A relay attempt's progress: its relay (for the inventory), the last
    failure of its addresses and where it was; ``disable``: a failing
    address's route is backed off (the last TLS attempt); ``unreachable``:
    no address took the message (the envelopes may be kept for max-deferred)."""

    relay: RelayKey
    result: Result = attrs.Factory(lambda: Result.tempfail("No address to relay to", NO_ROUTE))
    via: Relayed = attrs.Factory(Relayed)
    disable: bool = True
    unreachable: bool = False


def _route_result(exc: RouteError) -> Result:
    """The result of a route failure, with its enhanced status code unchanged
    (Null MX: ``5.1.10``), or x.3.0 if the code cannot be read."""
    code = status_code(exc.status)
    if isinstance(exc, RoutePermanentFailure):
        return Result.permfail(exc.text, code) if code else Result.permfail(exc.text)
    return Result.tempfail(exc.text, code) if code else Result.tempfail(exc.text)


class RelayAgent:
    """Relays MTA envelopes for one configuration; see the module docstring."""

    def __init__(
        self,
        config: Config,
        tables: TableSet,
        messages: MessageSource,
        *,
        resolver: DnsResolver | None,
        hosts: HostsFile | None = None,
        timeouts: ClientTimeouts | None = None,
        window: float = BATCH_WINDOW,
        resolve: ResolvePlan | None = None,
        session: RunSession | None = None,
        connect: Connect | None = None,
        eyeballs: float = DELAY,
        clock: Callable[[], float] = time.time,
        backoff: RouteBackoff | None = None,
        inventory: RelayInventory | None = None,
        filters: FilterHost | None = None,
        names: NameLookup | None = None,
    ) -> None:
        self.config = config
        self.tables = tables
        self.messages = messages
        self.resolver = resolver
        self.hosts = hosts
        self.timeouts = timeouts if timeouts is not None else ClientTimeouts.from_env()
        self.window = window
        self.resolve: ResolvePlan = resolve if resolve is not None else self._resolve
        self.session: RunSession = session if session is not None else run_session
        self.connect: Connect = connect if connect is not None else session_connect
        self.eyeballs = eyeballs
        self.clock = clock
        self.backoff = backoff if backoff is not None else RouteBackoff()
        self.inventory = (
            inventory
            if inventory is not None
            else RelayInventory(max_deferred=config.mta_max_deferred, clock=clock)
        )
        self.filters = filters  # the filter processes of the configuration in force
        self.names = names  # the remote's name in link-connect reports (None: its address)
        # ``mta max-deferred``: envelopes to schedule now (the daemon's queue)
        self.reschedule: Callable[[list[int]], object] = lambda evpids: None
        self.limits = ConnectionLimits(config.mta_limits)
        self._nursery: trio.Nursery | None = None
        self._closing = False
        # by session_key: sessions waiting for a message; set when one starts waiting
        self._idle: dict[Plan, list[Connection]] = {}
        self._idle_events: dict[Plan, trio.Event] = {}
        self._open: dict[tuple[object, ...], _Batch] = {}

    def reconfigure(self, config: Config, tables: TableSet, filters: FilterHost | None) -> None:
        """Relay by ``config`` from the next attempt on (a reload): plans, limits,
        ``mta max-deferred``, tables and filter processes are the new ones;
        sessions open now finish their message (and report to the filters they
        started with)."""
        self.config = config
        self.tables = tables
        self.filters = filters
        self.limits.limits = config.mta_limits
        self.inventory.max_deferred = config.mta_max_deferred

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep sessions open between messages (connection reuse) while this
        runs; without it, each relay attempt has its own session."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def close_sessions(self) -> None:
        """Stop keeping sessions open: the idle ones say QUIT now, the busy ones
        when their message is done; returns once none is left (the caller
        bounds the wait).  New relay attempts after this get sessions of their own."""
        self._closing = True
        for connections in list(self._idle.values()):
            for connection in list(connections):
                connection.stop()
        while self._nursery is not None and self._nursery.child_tasks:
            await trio.sleep(0.02)

    async def __call__(self, envelope: Envelope) -> Result:
        """The result of relaying ``envelope``; raises :class:`~mta.errors.CorruptMessage`
        when its message fails its checks (the runner quarantines it)."""
        try:
            plan = await self.plan(envelope)
        except PermanentFailure as exc:
            return Result.permfail(str(exc))
        except MTAError as exc:
            return Result.tempfail(str(exc))
        key = (envelope.msgid, envelope.dispatcher, plan)
        batch = self._open.get(key)
        if batch is not None and len(batch.envelopes) < plan.client.rcpt_max:
            index = len(batch.envelopes)
            batch.envelopes.append(envelope)
            await batch.done.wait()
            if batch.corrupt is not None:
                raise CorruptMessage(str(batch.corrupt))
            return batch.results[index]
        batch = _Batch([envelope])
        self._open[key] = batch
        try:
            try:
                await trio.sleep(self.window)
            finally:
                if self._open.get(key) is batch:
                    del self._open[key]
            batch.results = await self.relay(plan, batch.envelopes)
        except CorruptMessage as exc:
            batch.corrupt = exc
            raise
        finally:
            if batch.corrupt is None and len(batch.results) != len(batch.envelopes):
                batch.results = [Result.tempfail("Relay attempt interrupted")] * len(
                    batch.envelopes
                )
            batch.done.set()
        return batch.results[0]

    # -- the plan ------------------------------------------------------------------

    async def plan(self, envelope: Envelope) -> Plan:
        """The relay plan of ``envelope``; MTAError when it cannot be made."""
        action = self.config.actions.get(envelope.dispatcher)
        if action is None or not isinstance(action.method, Relay):
            raise MTAError(f"no relay action {envelope.dispatcher!r}")
        relay = action.method
        domain = envelope.dest.domain
        url = await self._smarthost(relay, domain)
        policy, verify = tls_policy(url, relay.tls)
        credentials = await self._credentials(relay, url)
        source = await self._source(relay)
        client = ClientConfig(
            helo=await self._helo(relay, source),
            tls=policy,
            verify=verify,
            lmtp=url is not None and url.lmtp,
            credentials=credentials,
            max_failures=limit_for(self.config.mta_limits, domain, "max-failures-per-session"),
        )
        sender = rewrite_sender(str(envelope.sender), relay.mail_from)
        if relay.srs:
            sender = relay_sender(
                sender, str(envelope.rcpt), str(envelope.dest), self.config.srs.key, self.clock()
            )
        return Plan(
            domain=domain,
            smarthost=url,
            port=url.port if url is not None else SMTP_PORT,
            client=client,
            tls=relay_tls(relay, self.config),
            sender=sender,
            source=source,
            backup_name=backup_name(relay, self.config.hostname) if url is None else None,
            family=family_limit(self.config.mta_limits, domain),
            reports=relay_procs(self.config, relay),
        )

    async def _smarthost(self, relay: Relay, domain: str) -> RelayHost | None:
        if relay.host is not None:
            table = self.tables.get(relay.host)
            url = await self.tables.call(table, lambda: fetch_relayhost(table))
            if url is None:
                raise MTAError("no relay host in the host table")
            return url
        if relay.domain is not None:
            table = self.tables.get(relay.domain)
            return await self.tables.call(table, lambda: lookup_relayhost(table, domain))
        return None

    async def _credentials(self, relay: Relay, url: RelayHost | None) -> Credentials | None:
        if url is None or url.auth_label is None:
            return None
        label = url.auth_label
        if relay.auth is None:
            raise MTAError(f"relay host label {label!r} needs an auth table")
        table = self.tables.get(relay.auth)
        found = await self.tables.call(table, lambda: lookup_credentials(table, label))
        if found is None:
            raise MTAError(f"no credentials for relay label {label!r}")
        return Credentials(found.username, found.password)

    async def _source(self, relay: Relay) -> str | None:
        if relay.src is None:
            return None
        table = self.tables.get(relay.src)
        found = await self.tables.call(table, lambda: fetch_source(table))
        return None if found is None else str(found.address)

    async def _helo(self, relay: Relay, source: str | None) -> str:
        if relay.helo_src is not None and source is not None:
            table = self.tables.get(relay.helo_src)
            address = ipaddress.ip_address(source)
            found = await self.tables.call(table, lambda: lookup_addrname(table, address))
            if found is None:
                raise MTAError(f"Failed to retrieve helo string for source {source}")
            return found.name
        return relay.helo or self.config.hostname

    async def _resolve(self, plan: Plan) -> Route:
        if plan.smarthost is not None:
            return await resolve_host(plan.smarthost.host, resolver=self.resolver, hosts=self.hosts)
        return await resolve_route(
            plan.domain,
            resolver=self.resolver,
            hosts=self.hosts,
            backup_name=plan.backup_name,
            our_names=(self.config.hostname,),
            family=plan.family,
        )

    # -- relaying ----------------------------------------------------------------

    async def relay(self, plan: Plan, envelopes: Sequence[Envelope]) -> list[Result]:
        """Relay ``envelopes`` (one message, one plan) in one transaction; one
        result for each, in order.  :class:`~mta.errors.CorruptMessage` when the
        message fails its checks (before any connection is made)."""
        transaction = transaction_for(envelopes, plan.sender)
        message = _Message(self.messages, envelopes[0].msgid)
        action = self.config.actions.get(envelopes[0].dispatcher)
        method = action.method if action is not None else None
        tried = _Tried(relay_key(plan, method if isinstance(method, Relay) else None))
        for envelope in envelopes:
            self.inventory.forget(envelope.id)
        count = len(envelopes)
        try:
            with self.inventory.task(tried.relay):
                results = await self._relay(plan, transaction, message, tried, count)
        except _Unreadable as exc:
            return [exc.result] * count
        finally:
            await message.aclose()
        self._account(envelopes, results, unreachable=tried.unreachable)
        return results

    def _account(
        self, envelopes: Sequence[Envelope], results: Sequence[Result], *, unreachable: bool
    ) -> None:
        """Each result for its domain's hoststat (``mta max-deferred``): a
        success there schedules the envelopes deferred for it now; a domain
        that could not be reached keeps the envelopes for that."""
        reschedule: list[int] = []
        for envelope, result in zip(envelopes, results, strict=True):
            domain = envelope.dest.domain
            if unreachable and result.outcome is Outcome.TEMPFAIL:
                self.inventory.deferred(domain, envelope.id, result.text)
                continue
            self.inventory.update(domain, result.text)
            if result.outcome is Outcome.OK:
                reschedule.extend(self.inventory.succeeded(domain))
        if reschedule:
            self.reschedule(reschedule)

    async def _relay(
        self, plan: Plan, transaction: Transaction, message: _Message, tried: _Tried, count: int
    ) -> list[Result]:
        if self._idle.get(session_key(plan)):
            handed = await self._hand_over(plan, transaction, await message.open())
            if handed is not None:
                return self._results(*handed, count)
        try:
            with self.inventory.waiting(tried.relay, Wait.MX):
                route = await self.resolve(plan)
        except RouteError as exc:
            log.info("mta: no route to %s: %s", visible(plan.domain), exc.text)
            return [_route_result(exc)] * count
        attempts = tls_attempts(plan)
        for attempt in attempts:
            tried.disable = attempt is attempts[-1]
            for hop in route.hops:
                results = await self._try_hop(attempt, hop, transaction, message, tried, count)
                if results is not None:
                    return results
        tried.unreachable = True
        return [attrs.evolve(tried.result, relayed=tried.via)] * count

    async def _try_hop(
        self,
        plan: Plan,
        hop: Hop,
        transaction: Transaction,
        message: _Message,
        tried: _Tried,
        count: int,
    ) -> list[Result] | None:
        """The message through one of ``hop``'s addresses (those not backed
        off, raced), going on to the others while a session fails before any
        transaction; None (with ``tried`` updated) when none took it."""
        candidates: list[str] = []
        for address in hop.addresses:
            held = self.backoff.held((address, plan.port, plan.source), self.clock())
            if held is None:
                candidates.append(address)
            else:
                tried.result, tried.via = held, Relayed(relay=_via(address, hop))
        while candidates:
            await message.open()
            work = Work(attrs.evolve(transaction, size=message.size), message.content)
            reach = await self._connect(plan, hop, candidates, work, tried.relay)
            if reach is None:  # a session of the plan was free first
                handed = await self._hand_over(plan, transaction, message)
                if handed is not None:
                    return self._results(*handed, count)
                continue
            for address, result in reach.failures.items():
                candidates.remove(address)
                self._route_failed(plan, address, hop, result, "", tried)
            if reach.address is None:
                continue
            candidates.remove(reach.address)
            failure = work.failure
            if failure is not None and failure.before_transactions and not work.results:
                self._route_failed(plan, reach.address, hop, failure.result, work.local, tried)
                continue
            self.backoff.succeeded((reach.address, plan.port, plan.source))
            return self._results(work, _via(reach.address, hop), count)
        return None

    def _route_failed(
        self, plan: Plan, address: str, hop: Hop, result: Result, local: str, tried: _Tried
    ) -> None:
        """``address`` failed before any transaction: back its route off
        (unless another TLS attempt on it follows, ``secure://``)."""
        via = _via(address, hop)
        tried.result, tried.via = result, Relayed(local, via)
        if tried.disable:
            delay = self.backoff.failed((address, plan.port, plan.source), self.clock(), result)
            log.info("smtp-out: Disabling route %s port %d for %ds", via, plan.port, delay)

    async def _hand_over(
        self, plan: Plan, transaction: Transaction, message: _Message
    ) -> tuple[Work, str] | None:
        """The message through a session of ``plan`` waiting for one, if there
        is one that takes it: the work, done, and where it went."""
        for connection in list(self._idle.get(session_key(plan), ())):
            work = Work(attrs.evolve(transaction, size=message.size), message.content)
            if connection.give(work):
                await work.done.wait()
                failure = work.failure
                if failure is None or not failure.before_transactions or work.results:
                    return work, connection.via
        return None  # none, or the one that took it ended before starting it

    @staticmethod
    def _results(work: Work, via: str, count: int) -> list[Result]:
        results = []
        for index in range(count):
            relayed = Relayed(work.local, via, work.relayed_dsn(index))
            results.append(attrs.evolve(work.result(index), relayed=relayed))
        return results

    async def _connect(
        self,
        plan: Plan,
        hop: Hop,
        candidates: Sequence[str],
        work: Work,
        relay: RelayKey,
    ) -> _Reach | None:
        """A session for ``work`` to the first of ``candidates`` (``hop``'s
        addresses) that accepts a connection, raced as happy eyeballs
        (:mod:`mta.relay.eyeballs`), each attempt once the connection limits
        allow it; returns when ``work`` is done, with the candidates that
        failed to connect, or None, without connecting, as soon as a session of
        the same plan waits for a message.  With :meth:`run` going, the
        session stays open afterwards for more."""
        pool = session_key(plan)
        if self._idle.get(pool):
            return None
        idle = self._idle_events.setdefault(pool, trio.Event())
        raced: list[Race[_Slot]] = []  # stays empty when the watch cancels the race

        async def attempt(address: str) -> _Slot:
            borrower = object()
            with self.inventory.waiting(relay, Wait.LIMITS):
                held = await self.limits.take(
                    borrower, address=address, source=plan.source, relay=pool, domain=plan.domain
                )
            self.inventory.connecting(relay, address, hop.host)
            try:
                with trio.move_on_after(self.timeouts.seconds(Step.GREETING)) as scope:
                    stream = await self.connect(address, plan.port, source=plan.source)
                if scope.cancelled_caught:
                    raise TimeoutError("Connection timeout")
            except BaseException:
                self.inventory.closed(relay, address)
                self.limits.release(borrower, held)
                raise
            return _Slot(stream, borrower, held, relay, address)

        async def discard(slot: _Slot) -> None:
            self._release(slot)
            await trio.aclose_forcefully(slot.stream)

        async def watch(cancel: trio.CancelScope) -> None:
            await idle.wait()
            cancel.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, nursery.cancel_scope)
                raced.append(
                    await first_of(candidates, attempt, discard=discard, delay=self.eyeballs)
                )
                nursery.cancel_scope.cancel()
        finally:
            if self._idle_events.get(pool) is idle and not idle.statistics().tasks_waiting:
                del self._idle_events[pool]
        if not raced:
            return None
        race = raced[0]
        failures: dict[str, Result] = {}
        for address, exc in race.failures.items():
            client = Client(plan.client, [work.transaction])
            name = _server_name(address, hop)
            failed = connect_failed(client, address, plan.port, name, error_text(exc))
            failures[address] = failed.result
        if race.winner is None:
            return _Reach(None, failures)
        address, slot = race.winner
        server_name = _server_name(address, hop)
        limits = self.config.mta_limits
        connection = Connection(
            work,
            via=_via(address, hop),
            keepalive=limit_for(limits, plan.domain, "session-keepalive"),
            mail_max=limit_for(limits, plan.domain, "session-mail-max"),
            transaction_delay=limit_for(limits, plan.domain, "session-transaction-delay"),
            on_idle=lambda connection, waiting: self._on_idle(pool, connection, waiting),
        )
        if self._nursery is None:
            connection.mail_max = 1
            await self._session(plan, address, server_name, connection, slot)
        else:
            try:
                self._nursery.start_soon(
                    self._session, plan, address, server_name, connection, slot
                )
            except BaseException:
                with trio.CancelScope(shield=True):
                    await discard(slot)
                raise
            await work.done.wait()
        return _Reach(address, failures)

    async def _session(
        self,
        plan: Plan,
        address: str,
        server_name: str,
        connection: Connection,
        slot: _Slot,
    ) -> None:
        outcome: SessionOutcome | None = None
        try:
            keepalive = connection.mail_max > 1
            outcome = await self.session(
                address,
                plan.port,
                client=Client(
                    plan.client,
                    [connection.works[0].transaction],
                    keepalive=keepalive,
                    reports=bool(plan.reports),
                ),
                server_name=server_name,
                content=connection.content,
                timeouts=self.timeouts,
                tls=plan.tls,
                source=plan.source,
                stream=slot.stream,
                reuse=connection.reuse() if keepalive else None,
                reports=reports_for(self.filters, plan.reports, self.names),
            )
        finally:
            connection.ended(outcome)
            self._release(slot)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(slot.stream)

    def _release(self, slot: _Slot) -> None:
        """A connection is over: its limit tokens back, its host's count down."""
        self.inventory.closed(slot.relay, slot.address)
        self.limits.release(slot.borrower, slot.held)

    def _on_idle(self, pool: Plan, connection: Connection, waiting: bool) -> None:
        if waiting and self._closing:
            connection.stop()
            return
        idle = self._idle.setdefault(pool, [])
        if waiting:
            idle.append(connection)
            event = self._idle_events.pop(pool, None)
            if event is not None:
                event.set()
            return
        if connection in idle:
            idle.remove(connection)
        if not idle:
            del self._idle[pool]

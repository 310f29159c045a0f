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
3. The route: the smarthost's addresses (an IP address needs no DNS) or the
   MX of the domain (:func:`~mta.relay.mx.resolve_route`; no resolver is a
   temporary failure).  NXDOMAIN, Null MX, a loop: permanent failure.
4. One session per address in route order (:func:`~mta.relay.session.run_session`),
   going on to the next address or MX while a session fails before any
   transaction started; otherwise each recipient's result is that session's.
   An address whose last session failed so is skipped for a while
   (:mod:`mta.relay.backoff`); when every address is, the recipients fail
   temporarily at once with the last error.  The message is opened once,
   before the first session: that tells its size, sent as ``SIZE=`` and
   checked against the remote's limit before MAIL (5.3.4).
5. Connection reuse (:mod:`mta.relay.pool`), while :meth:`RelayAgent.run`
   runs: a session that finished its message waits ``session-keepalive``
   seconds for the next message of the same plan, up to ``session-mail-max``
   messages (``mta limit``, per domain or global); a message for a plan with
   a waiting session goes there first, skipping the route.
6. ``mta limit max-conn-per-*`` (:mod:`mta.relay.limits`): a new session
   waits for a free slot per host, route, source, relay and domain; a message
   waiting so goes to a session of its plan as soon as one is free.

The route resolver, the session runner and the message source are injected,
so the decisions are tested without sockets.  Not done (OpenSMTPD does): the
connection delays (``conn-delay-*``), ``max-failures-per-session``.
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
from mta.delivery.result import Relayed, Result
from mta.envelope import Envelope
from mta.errors import MTAError, PermanentFailure, RouteError, RoutePermanentFailure
from mta.log import get_logger, visible
from mta.net.resolver import DnsResolver
from mta.relay.backoff import RouteBackoff, RouteKey
from mta.relay.client import Client, ClientConfig, Credentials
from mta.relay.limits import ConnectionLimits, Key, limit_for
from mta.relay.mx import backup_name, family_limit, resolve_host, resolve_route
from mta.relay.plan import (
    SMTP_PORT,
    Plan,
    rewrite_sender,
    session_key,
    status_code,
    tls_policy,
    transaction_for,
)
from mta.relay.pool import Connection, Work
from mta.relay.route import Route, parse_literal
from mta.relay.session import ContentSource, Reuse, SessionOutcome, run_session
from mta.relay.srs import relay_sender
from mta.relay.timeouts import ClientTimeouts
from mta.relay.tlsclient import ClientTls, relay_tls
from mta.relay.transaction import Transaction
from mta.rules.tableset import TableSet
from mta.spool.store import read_chunks
from mta.tables.lookups import (
    fetch_relayhost,
    fetch_source,
    lookup_addrname,
    lookup_credentials,
    lookup_relayhost,
)
from mta.tables.relayhost import RelayHost

__all__ = ["BATCH_WINDOW", "MessageSource", "RelayAgent", "ResolvePlan", "RunSession"]

log = get_logger("mta")

BATCH_WINDOW = 0.05  # seconds the first envelope of a group waits for the others


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
        reuse: Reuse | None = ...,
    ) -> Awaitable[SessionOutcome]: ...


@attrs.define(eq=False)
class _Batch:
    envelopes: list[Envelope]
    results: list[Result] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)


class _Message:
    """One message's content for the sessions of one relay attempt: opened once
    (which tells its size); the first session to read it streams that stream,
    a later one (the next address, the plaintext retry) opens it again."""

    def __init__(self, messages: MessageSource, msgid: int, stream: BinaryIO, size: int) -> None:
        self.messages = messages
        self.msgid = msgid
        self.size = size
        self._stream: BinaryIO | None = stream

    @classmethod
    async def open(cls, messages: MessageSource, msgid: int) -> _Message:
        stream, size = await messages.open_message_sized(msgid)
        return cls(messages, msgid, stream, size)

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


def _route_result(exc: RouteError) -> Result:
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
        timeouts: ClientTimeouts | None = None,
        window: float = BATCH_WINDOW,
        resolve: ResolvePlan | None = None,
        session: RunSession | None = None,
        clock: Callable[[], float] = time.time,
        backoff: RouteBackoff | None = None,
    ) -> None:
        self.config = config
        self.tables = tables
        self.messages = messages
        self.resolver = resolver
        self.timeouts = timeouts if timeouts is not None else ClientTimeouts.from_env()
        self.window = window
        self.resolve: ResolvePlan = resolve if resolve is not None else self._resolve
        self.session: RunSession = session if session is not None else run_session
        self.clock = clock
        self.backoff = backoff if backoff is not None else RouteBackoff()
        self.limits = ConnectionLimits(config.mta_limits)
        self._nursery: trio.Nursery | None = None
        self._closing = False
        # by session_key: sessions waiting for a message; set when one starts waiting
        self._idle: dict[Plan, list[Connection]] = {}
        self._idle_events: dict[Plan, trio.Event] = {}
        self._open: dict[tuple[object, ...], _Batch] = {}

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
        finally:
            if len(batch.results) != len(batch.envelopes):  # cancelled, or a bug
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
            return await resolve_host(plan.smarthost.host, resolver=self.resolver)
        return await resolve_route(
            plan.domain,
            resolver=self.resolver,
            backup_name=plan.backup_name,
            our_names=(self.config.hostname,),
            family=plan.family,
        )

    # -- relaying ----------------------------------------------------------------

    async def relay(self, plan: Plan, envelopes: Sequence[Envelope]) -> list[Result]:
        """Relay ``envelopes`` (one message, one plan) in one transaction; one
        result for each, in order."""
        transaction = transaction_for(envelopes, plan.sender)
        count = len(envelopes)
        message: _Message | None = None
        try:
            if self._idle.get(session_key(plan)):
                opened = await self._open_message(envelopes[0].msgid)
                if isinstance(opened, Result):
                    return [opened] * count
                message = opened
                handed = await self._hand_over(plan, transaction, message)
                if handed is not None:
                    return self._results(*handed, count)
            try:
                route = await self.resolve(plan)
            except RouteError as exc:
                log.info("mta: no route to %s: %s", visible(plan.domain), exc.text)
                return [_route_result(exc)] * count
            last = Result.tempfail("No address to relay to", 44)
            last_via = Relayed()
            for hop, address in route.targets():
                via = f"{address} ({hop.host})"
                key: RouteKey = (address, plan.port, plan.source)
                held = self.backoff.held(key, self.clock())
                if held is not None:
                    last, last_via = held, Relayed(relay=via)
                    continue
                if message is None:
                    opened = await self._open_message(envelopes[0].msgid)
                    if isinstance(opened, Result):
                        return [opened] * count
                    message = opened
                server_name = address if parse_literal(hop.host) is not None else hop.host
                while True:
                    work = Work(attrs.evolve(transaction, size=message.size), message.content)
                    if await self._connect(plan, address, server_name, via, work):
                        break
                    handed = await self._hand_over(plan, transaction, message)
                    if handed is not None:  # a session of the plan was free first
                        return self._results(*handed, count)
                failure = work.failure
                if failure is not None and failure.before_transactions and not work.results:
                    delay = self.backoff.failed(key, self.clock(), failure.result)
                    log.info("smtp-out: Disabling route %s port %d for %ds", via, plan.port, delay)
                    last, last_via = failure.result, Relayed(work.local, via)
                    continue
                self.backoff.succeeded(key)
                return self._results(work, via, count)
            return [attrs.evolve(last, relayed=last_via)] * count
        finally:
            if message is not None:
                await message.aclose()

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

    async def _open_message(self, msgid: int) -> _Message | Result:
        """The message, or the temporary failure of opening it."""
        try:
            return await _Message.open(self.messages, msgid)
        except (MTAError, OSError) as exc:
            return Result.tempfail(f"Cannot read the message: {exc}")

    @staticmethod
    def _results(work: Work, via: str, count: int) -> list[Result]:
        results = []
        for index in range(count):
            relayed = Relayed(work.local, via, work.relayed_dsn(index))
            results.append(attrs.evolve(work.result(index), relayed=relayed))
        return results

    async def _connect(
        self, plan: Plan, address: str, server_name: str, via: str, work: Work
    ) -> bool:
        """A session to ``address`` for ``work``, once the connection limits
        allow it; returns when ``work`` is done (True), or, without starting
        one, as soon as a session of the same plan waits for a message (False).
        With :meth:`run` going, the session stays open afterwards for more."""
        limits = self.config.mta_limits
        pool = session_key(plan)
        connection = Connection(
            work,
            via=via,
            keepalive=limit_for(limits, plan.domain, "session-keepalive"),
            mail_max=limit_for(limits, plan.domain, "session-mail-max"),
            on_idle=lambda connection, waiting: self._on_idle(pool, connection, waiting),
        )
        keys = self.limits.keys(address=address, source=plan.source, relay=pool, domain=plan.domain)
        if not await self._acquire(pool, connection, keys):
            return False
        held = [key for key, _ in keys]
        if self._nursery is None:
            connection.mail_max = 1
            await self._session(plan, address, server_name, connection, held)
        else:
            try:
                self._nursery.start_soon(
                    self._session, plan, address, server_name, connection, held
                )
            except BaseException:
                self.limits.release(connection, held)
                raise
            await work.done.wait()
        return True

    async def _acquire(
        self, pool: Plan, connection: Connection, keys: list[tuple[Key, int]]
    ) -> bool:
        """The connection limits' tokens for ``connection`` (True), unless a
        session of ``pool`` (a :func:`~mta.relay.plan.session_key`) starts
        waiting for a message first (False)."""
        if self._idle.get(pool):
            return False
        got = False
        idle = self._idle_events.setdefault(pool, trio.Event())

        async def take(cancel: trio.CancelScope) -> None:
            nonlocal got
            await self.limits.acquire(connection, keys)
            got = True
            cancel.cancel()

        async def watch(cancel: trio.CancelScope) -> None:
            await idle.wait()
            cancel.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(take, nursery.cancel_scope)
                nursery.start_soon(watch, nursery.cancel_scope)
        finally:
            if self._idle_events.get(pool) is idle and not idle.statistics().tasks_waiting:
                del self._idle_events[pool]
        return got

    async def _session(
        self,
        plan: Plan,
        address: str,
        server_name: str,
        connection: Connection,
        held: list[Key],
    ) -> None:
        outcome: SessionOutcome | None = None
        try:
            keepalive = connection.mail_max > 1
            outcome = await self.session(
                address,
                plan.port,
                client=Client(plan.client, [connection.works[0].transaction], keepalive=keepalive),
                server_name=server_name,
                content=connection.content,
                timeouts=self.timeouts,
                tls=plan.tls,
                source=plan.source,
                reuse=connection.reuse() if keepalive else None,
            )
        finally:
            connection.ended(outcome)
            self.limits.release(connection, held)

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

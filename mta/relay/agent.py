"""The relay agent: the queue runner's ``relay`` callable (OpenSMTPD's ``mta.c``).

``await agent(envelope)`` relays one MTA envelope and returns its
:class:`~mta.delivery.result.Result` (with :class:`~mta.delivery.result.Relayed`:
where it went, and whether a "relayed" success notice is ours to send):

1. The plan (:mod:`mta.relay.plan`) from the envelope's ``relay`` action: the
   smarthost (``host <table>``: the next URL of the table, round-robin as
   OpenSMTPD's ``table_fetch``; ``domain <table>``: the URL stored for the
   destination domain, else MX), the TLS policy, credentials (the ``auth``
   table's value for the URL's ``label@``), the HELO name (``helo``, else our
   host name), the source address (``src``) and the reverse-path (``mail-from``,
   then SRS for forwarded mail of an ``srs`` action).  A plan that cannot be
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

The route resolver, the session runner and the message source are injected,
so the decisions are tested without sockets.  Not done (OpenSMTPD does):
connection reuse across messages, route penalties and ``mta limit`` connection
limits, ``helo-src``, the SIZE of the message.
"""

from __future__ import annotations

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
from mta.relay.client import Client, ClientConfig, Credentials
from mta.relay.mx import backup_name, family_limit, resolve_host, resolve_route
from mta.relay.plan import SMTP_PORT, Plan, rewrite_sender, status_code, tls_policy, transaction_for
from mta.relay.route import Route, parse_literal
from mta.relay.session import ContentSource, SessionOutcome, run_session
from mta.relay.srs import relay_sender
from mta.relay.timeouts import ClientTimeouts
from mta.relay.tlsclient import ClientTls, relay_tls
from mta.rules.tableset import TableSet
from mta.spool.store import READ_CHUNK
from mta.tables.lookups import fetch_relayhost, fetch_source, lookup_credentials, lookup_relayhost
from mta.tables.relayhost import RelayHost

__all__ = ["BATCH_WINDOW", "MessageSource", "RelayAgent", "ResolvePlan", "RunSession"]

log = get_logger("mta")

BATCH_WINDOW = 0.05  # seconds the first envelope of a group waits for the others


class MessageSource(Protocol):
    """What the agent needs of the spool (:class:`~mta.spool.spool.Spool` has it)."""

    async def open_message(self, msgid: int) -> BinaryIO: ...


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
    ) -> Awaitable[SessionOutcome]: ...


@attrs.define(eq=False)
class _Batch:
    envelopes: list[Envelope]
    results: list[Result] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)


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
        self._open: dict[tuple[object, ...], _Batch] = {}

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
        client = ClientConfig(
            helo=relay.helo or self.config.hostname,
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
            source=await self._source(relay),
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
        try:
            route = await self.resolve(plan)
        except RouteError as exc:
            log.info("mta: no route to %s: %s", visible(plan.domain), exc.text)
            return [_route_result(exc)] * len(envelopes)
        transaction = transaction_for(envelopes, plan.sender)
        msgid = envelopes[0].msgid
        last = Result.tempfail("No address to relay to", 44)
        last_via = Relayed()
        for hop, address in route.targets():
            server_name = address if parse_literal(hop.host) is not None else hop.host
            outcome = await self.session(
                address,
                plan.port,
                client=Client(plan.client, [transaction]),
                server_name=server_name,
                content=lambda _index: self._content(msgid),
                timeouts=self.timeouts,
                tls=plan.tls,
                source=plan.source,
            )
            via = f"{address} ({hop.host})"
            failure = outcome.failure
            if failure is not None and failure.before_transactions and not outcome.results:
                last, last_via = failure.result, Relayed(outcome.local, via)
                continue
            results = []
            for index in range(len(envelopes)):
                got = outcome.results.get((0, index))
                relayed = Relayed(outcome.local, via, got is not None and got.relayed_dsn)
                results.append(attrs.evolve(outcome.result(0, index), relayed=relayed))
            return results
        return [attrs.evolve(last, relayed=last_via)] * len(envelopes)

    async def _content(self, msgid: int) -> AsyncIterator[bytes]:
        stream = await self.messages.open_message(msgid)
        try:
            while chunk := await threads.run_sync(stream.read, READ_CHUNK):
                yield chunk
        finally:
            await threads.run_sync(stream.close)

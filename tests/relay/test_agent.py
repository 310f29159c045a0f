"""The relay agent's decisions, with the route and the sessions faked (no sockets)."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import BinaryIO

import attrs
import trio

from mta.delivery.result import Outcome, Result
from mta.envelope import Address, DsnNotify, Envelope, EnvelopeKind
from mta.errors import RoutePermanentFailure
from mta.relay.agent import RelayAgent
from mta.relay.client import Client, Credentials, TlsPolicy
from mta.relay.events import RecipientResult
from mta.relay.plan import Plan
from mta.relay.route import Hop, Route, RouteKind
from mta.relay.session import ContentSource, SessionFailure, SessionOutcome
from mta.relay.timeouts import ClientTimeouts
from mta.relay.tlsclient import ClientTls
from tests.rules.helpers import load, open_tables

CONTENT = b"Subject: hi\n\nHello.\n"
MX = Route(
    "example.net",
    RouteKind.MX,
    (
        Hop(10, "mx1.example.net", ("192.0.2.1", "192.0.2.2")),
        Hop(20, "mx2.example.net", ("192.0.2.3",)),
    ),
)


class Messages:
    async def open_message(self, msgid: int) -> BinaryIO:
        assert msgid == 7
        return io.BytesIO(CONTENT)


@attrs.define
class Call:
    address: str
    port: int
    client: Client
    server_name: str
    source: str | None
    content: bytes


OutcomeOf = Callable[[str, Client], SessionOutcome]


class Sessions:
    """Records each session and answers with ``outcome(address, client)``."""

    def __init__(self, outcome: OutcomeOf) -> None:
        self.outcome = outcome
        self.calls: list[Call] = []

    async def __call__(
        self,
        address: str,
        port: int,
        *,
        client: Client,
        server_name: str,
        content: ContentSource,
        timeouts: ClientTimeouts,
        tls: ClientTls | None = None,
        source: str | None = None,
    ) -> SessionOutcome:
        data = b"".join([chunk async for chunk in content(0)])
        self.calls.append(Call(address, port, client, server_name, source, data))
        return self.outcome(address, client)


def accepted(address: str, client: Client, *, relayed_dsn: bool = False) -> SessionOutcome:
    n = len(client.transactions[0].recipients)
    results = {
        (0, i): RecipientResult(0, i, Result.ok("250 2.0.0 Ok"), relayed_dsn) for i in range(n)
    }
    return SessionOutcome(address, results, frozenset({0}), None, 1, local="192.0.2.100")


def refused_early(address: str, client: Client) -> SessionOutcome:
    n = len(client.transactions[0].recipients)
    failure = SessionFailure(
        Result.tempfail(f"Connection refused by {address}"),
        tuple((0, i) for i in range(n)),
        before_transactions=True,
    )
    return SessionOutcome(address, {}, frozenset(), failure, 0)


def envelope(
    dest: str = "bob@example.net", evpid: int = 0x700000001, **changes: object
) -> Envelope:
    values: dict[str, object] = {
        "msgid": 7,
        "id": evpid,
        "kind": EnvelopeKind.MTA,
        "dispatcher": "out",
        "smtpname": "mx.example.org",
        "helo": "client",
        "hostname": "client",
        "sockaddr": "local",
        "sender": Address.parse("alice@example.org"),
        "rcpt": Address.parse(dest),
        "dest": Address.parse(dest),
        "ctime": 0,
    }
    values.update(changes)
    return Envelope(**values)  # type: ignore[arg-type]


def agent(
    config_text: str,
    sessions: Sessions,
    resolve: Callable[[Plan], Awaitable[Route]] | None = None,
) -> RelayAgent:
    config = load(config_text + "match for any action out\n")
    return RelayAgent(
        config,
        open_tables(config),
        Messages(),
        resolver=None,
        timeouts=ClientTimeouts(),
        window=0.01,
        resolve=resolve,
        session=sessions,
        clock=lambda: 86400.0 * 20000,
    )


def fixed(route: Route) -> Callable[[Plan], Awaitable[Route]]:
    async def resolve(plan: Plan) -> Route:
        return route

    return resolve


async def test_smarthost_with_auth_and_an_ip_address_needs_no_dns() -> None:
    sessions = Sessions(lambda a, c: accepted(a, c, relayed_dsn=True))
    a = agent(
        'table secrets { label = "alice:secret" }\n'
        'action out relay host "smtp+tls://label@127.0.0.1:2525" auth <secrets> helo relay.test\n',
        sessions,
    )
    result = await a(envelope(dsn_notify=DsnNotify.SUCCESS))
    assert result.outcome is Outcome.OK
    assert result.relayed is not None
    assert result.relayed.relay == "127.0.0.1 (127.0.0.1)"
    assert result.relayed.source == "192.0.2.100"
    assert result.relayed.notify_success  # the remote did not do DSN
    [call] = sessions.calls
    assert (call.address, call.port, call.server_name) == ("127.0.0.1", 2525, "127.0.0.1")
    config = call.client.config
    assert config.credentials == Credentials("alice", "secret")
    assert (config.tls, config.verify, config.helo) == (TlsPolicy.REQUIRED, True, "relay.test")
    assert call.content == CONTENT


async def test_mx_route_moves_on_after_early_failures() -> None:
    sessions = Sessions(lambda a, c: refused_early(a, c) if a != "192.0.2.3" else accepted(a, c))
    a = agent("action out relay\n", sessions, fixed(MX))
    result = await a(envelope())
    assert result.outcome is Outcome.OK
    assert [c.address for c in sessions.calls] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert [c.server_name for c in sessions.calls][-1] == "mx2.example.net"
    assert sessions.calls[0].client.config.tls is TlsPolicy.OPPORTUNISTIC
    assert result.relayed is not None and result.relayed.relay == "192.0.2.3 (mx2.example.net)"
    assert not result.relayed.notify_success


async def test_every_address_failing_is_a_temporary_failure() -> None:
    sessions = Sessions(refused_early)
    a = agent("action out relay tls\n", sessions, fixed(MX))
    result = await a(envelope())
    assert result.outcome is Outcome.TEMPFAIL
    assert result.text == "Connection refused by 192.0.2.3"
    assert sessions.calls[0].client.config.tls is TlsPolicy.REQUIRED


async def test_a_failure_after_the_transaction_started_is_final() -> None:
    def late(address: str, client: Client) -> SessionOutcome:
        failure = SessionFailure(Result.tempfail("Connection timeout"), ((0, 0),), False)
        return SessionOutcome(address, {}, frozenset(), failure, 0)

    sessions = Sessions(late)
    result = await agent("action out relay\n", sessions, fixed(MX))(envelope())
    assert (result.outcome, result.text) == (Outcome.TEMPFAIL, "Connection timeout")
    assert len(sessions.calls) == 1


async def test_route_failures() -> None:
    async def nxdomain(plan: Plan) -> Route:
        raise RoutePermanentFailure("Domain does not exist", "5.1.2")

    sessions = Sessions(accepted)
    result = await agent("action out relay\n", sessions, nxdomain)(envelope())
    assert (result.outcome, result.text, result.status) == (
        Outcome.PERMFAIL,
        "Domain does not exist",
        "5.1.2",
    )
    # the real resolution without a resolver: temporary
    result = await agent("action out relay\n", sessions)(envelope())
    assert result.outcome is Outcome.TEMPFAIL and "no DNS resolver" in result.text
    assert sessions.calls == []


async def test_missing_credentials_and_tls_on_a_plain_url_are_temporary() -> None:
    sessions = Sessions(accepted)
    result = await agent(
        'table secrets { other = "a:b" }\n'
        'action out relay host "smtp+tls://label@127.0.0.1" auth <secrets>\n',
        sessions,
    )(envelope())
    assert result.outcome is Outcome.TEMPFAIL and "no credentials" in result.text
    result = await agent('action out relay host "smtp+notls://127.0.0.1" tls\n', sessions)(
        envelope()
    )
    assert (result.outcome, result.text) == (Outcome.TEMPFAIL, "TLS required for relaying")
    assert sessions.calls == []


async def test_mail_from_and_srs_rewrite_the_sender() -> None:
    sessions = Sessions(accepted)
    a = agent(
        'srs key "secret"\naction out relay host "smtp://127.0.0.1" mail-from "@relay.test" srs\n',
        sessions,
    )
    await a(envelope("bob@example.net", rcpt=Address.parse("fwd@example.org")))
    sender = sessions.calls[0].client.transactions[0].sender
    assert sender.startswith("SRS0=") and sender.endswith("=relay.test=alice@example.org")


async def test_envelopes_of_one_message_share_a_transaction() -> None:
    def mixed(address: str, client: Client) -> SessionOutcome:
        results = {}
        for i, rcpt in enumerate(client.transactions[0].recipients):
            refused = rcpt.address.startswith("carol")
            result = Result.permfail("550 5.1.1 No such user", 11) if refused else Result.ok()
            results[0, i] = RecipientResult(0, i, result)
        return SessionOutcome(address, results, frozenset({0}), None, 1)

    sessions = Sessions(mixed)
    a = agent("action out relay\n", sessions, fixed(MX))
    results: dict[str, Result] = {}

    async def one(env: Envelope) -> None:
        results[str(env.dest)] = await a(env)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, envelope("bob@example.net", 0x700000001))
        nursery.start_soon(one, envelope("carol@example.net", 0x700000002))
    assert len(sessions.calls) == 1
    [tx] = sessions.calls[0].client.transactions
    assert sorted(r.address for r in tx.recipients) == ["bob@example.net", "carol@example.net"]
    assert results["bob@example.net"].outcome is Outcome.OK
    assert results["carol@example.net"].outcome is Outcome.PERMFAIL

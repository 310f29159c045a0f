"""The relay agent's decisions, with the route and the sessions faked (no sockets)."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Awaitable, Callable
from typing import BinaryIO

import attrs
import trio
import trio.testing

from mta.delivery.result import Outcome, Result
from mta.envelope import Address, DsnNotify, Envelope
from mta.errors import RoutePermanentFailure, RouteTemporaryFailure
from mta.filters.outbound import ReportsFactory
from mta.relay.agent import Connect, RelayAgent, RunSession
from mta.relay.backoff import RouteBackoff
from mta.relay.client import Client, Credentials, TlsPolicy
from mta.relay.events import RecipientResult
from mta.relay.plan import Plan
from mta.relay.route import Hop, Mx, Route, RouteKind, usable_mxs
from mta.relay.session import (
    ContentSource,
    Reuse,
    SessionFailure,
    SessionOutcome,
    run_session,
)
from mta.relay.timeouts import ClientTimeouts
from mta.relay.tlsclient import ClientTls
from mta.status import StatusCode
from tests.envelopes import make_envelope
from tests.rules.helpers import load, open_tables

CONTENT = b"Subject: hi\n\nHello.\n"
ALICE = Address.parse("alice@example.org")
MX = Route(
    "example.net",
    RouteKind.MX,
    (
        Hop(10, "mx1.example.net", ("192.0.2.1", "192.0.2.2")),
        Hop(20, "mx2.example.net", ("192.0.2.3",)),
    ),
)


class Messages:
    def __init__(self) -> None:
        self.opened = 0

    async def open_message_sized(self, msgid: int) -> tuple[BinaryIO, int]:
        assert msgid in (7, 8, 9)
        self.opened += 1
        return io.BytesIO(CONTENT), len(CONTENT)


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
    """Records each session and answers with ``outcome(address, client)``,
    ``hold`` seconds after it read the content; ``peak``: the most sessions
    running at once."""

    def __init__(self, outcome: OutcomeOf, *, hold: float = 0) -> None:
        self.outcome = outcome
        self.hold = hold
        self.calls: list[Call] = []
        self.running = self.peak = 0

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
        stream: trio.abc.Stream | None = None,
        reuse: Reuse | None = None,
        reports: ReportsFactory | None = None,
    ) -> SessionOutcome:
        assert stream is not None  # the agent connects
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            data = b"".join([chunk async for chunk in content(0)])
            self.calls.append(Call(address, port, client, server_name, source, data))
            await trio.sleep(self.hold)
            return self.outcome(address, client)
        finally:
            self.running -= 1


class Network:
    """Fake connections: an address in ``refused`` refuses at once, one in
    ``silent`` never answers; records every attempt."""

    def __init__(self, refused: tuple[str, ...] = (), silent: tuple[str, ...] = ()) -> None:
        self.refused = refused
        self.silent = silent
        self.attempts: list[str] = []

    async def __call__(
        self, address: str, port: int, *, source: str | None = None
    ) -> trio.abc.Stream:
        self.attempts.append(address)
        if address in self.silent:
            await trio.sleep_forever()
        if address in self.refused:
            raise ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
        stream, _peer = trio.testing.memory_stream_pair()
        return stream


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
    """An envelope of message 7 from alice@example.org for the ``out`` relay action."""
    overrides = {"msgid": 7, "id": evpid, "dispatcher": "out", "sender": ALICE}
    return make_envelope(dest, **{**overrides, **changes})


def agent(
    config_text: str,
    sessions: RunSession,
    resolve: Callable[[Plan], Awaitable[Route]] | None = None,
    *,
    messages: Messages | None = None,
    clock: Callable[[], float] = lambda: 86400.0 * 20000,
    network: Connect | None = None,
    timeouts: ClientTimeouts | None = None,
) -> RelayAgent:
    config = load(config_text + "match for any action out\n")
    return RelayAgent(
        config,
        open_tables(config),
        messages or Messages(),
        resolver=None,
        timeouts=timeouts or ClientTimeouts(),
        window=0.01,
        resolve=resolve,
        session=sessions,
        connect=network if network is not None else Network(),
        clock=clock,
        backoff=RouteBackoff(),
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
    assert call.client.transactions[0].size == len(CONTENT)


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


DUAL = Route(
    "example.net",
    RouteKind.MX,
    (
        Hop(10, "mx1.example.net", ("2001:db8::1", "192.0.2.1")),
        Hop(20, "mx2.example.net", ("192.0.2.3",)),
    ),
)


async def test_a_silent_address_does_not_hold_up_the_next_one() -> None:
    # happy eyeballs: the IPv6 address never answers; 0.25 s later the IPv4
    # one is tried and wins, without waiting for a connect timeout
    network = Network(silent=("2001:db8::1",))
    sessions = Sessions(accepted)
    a = agent("action out relay\n", sessions, fixed(DUAL), network=network)
    start = trio.current_time()
    result = await a(envelope())
    assert result.outcome is Outcome.OK
    assert trio.current_time() - start < 1
    assert network.attempts == ["2001:db8::1", "192.0.2.1"]
    assert [c.address for c in sessions.calls] == ["192.0.2.1"]
    assert result.relayed is not None and result.relayed.relay == "192.0.2.1 (mx1.example.net)"
    assert a.backoff.held(("2001:db8::1", 25, None), a.clock()) is None  # cancelled, not failed


async def test_refused_connections_disable_their_routes_and_the_next_mx_is_used() -> None:
    network = Network(refused=("2001:db8::1", "192.0.2.1"))
    sessions = Sessions(accepted)
    a = agent("action out relay\n", sessions, fixed(DUAL), network=network)
    result = await a(envelope())
    assert result.outcome is Outcome.OK
    assert [c.address for c in sessions.calls] == ["192.0.2.3"]
    held = a.backoff.held(("192.0.2.1", 25, None), a.clock())
    assert held is not None and held.text == "Connection refused"


async def test_no_address_accepting_a_connection_is_a_temporary_failure() -> None:
    network = Network(refused=("2001:db8::1", "192.0.2.1"), silent=("192.0.2.3",))
    sessions = Sessions(accepted)
    timeouts = ClientTimeouts(greeting=0.5)
    a = agent("action out relay\n", sessions, fixed(DUAL), network=network, timeouts=timeouts)
    result = await a(envelope())
    assert (result.outcome, result.text) == (Outcome.TEMPFAIL, "Connection timeout")
    assert result.relayed is not None and result.relayed.relay == "192.0.2.3 (mx2.example.net)"
    assert sessions.calls == []


async def test_a_session_failing_early_lets_the_hop_s_other_addresses_be_tried() -> None:
    sessions = Sessions(lambda a, c: refused_early(a, c) if a == "2001:db8::1" else accepted(a, c))
    a = agent("action out relay\n", sessions, fixed(DUAL))
    assert (await a(envelope())).outcome is Outcome.OK
    assert [c.address for c in sessions.calls] == ["2001:db8::1", "192.0.2.1"]


async def test_legacy_secure_tries_smtps_then_starttls() -> None:
    network = Network()

    async def nothing_on_465(
        address: str, port: int, *, source: str | None = None
    ) -> trio.abc.Stream:
        if port == 465:
            raise ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
        return await network(address, port, source=source)

    sessions = Sessions(accepted)
    config = (
        "table secrets { l = u:p }\n"
        "action out relay host secure+auth://l@[192.0.2.9] auth <secrets>\n"
    )
    result = await agent(config, sessions, network=nothing_on_465)(envelope())
    assert result.outcome is Outcome.OK
    assert [(c.port, c.client.config.tls) for c in sessions.calls] == [(25, TlsPolicy.REQUIRED)]
    assert sessions.calls[0].client.config.credentials == Credentials("u", "p")
    assert sessions.calls[0].server_name == "192.0.2.9"  # a literal: the certificate's IP


async def test_legacy_secure_with_a_port_uses_it_for_both() -> None:
    sessions = Sessions(
        lambda a, c: refused_early(a, c) if c.config.tls is TlsPolicy.SMTPS else accepted(a, c)
    )
    a = agent("action out relay host secure://[192.0.2.9]:2465\n", sessions)
    assert (await a(envelope())).outcome is Outcome.OK
    assert [(c.port, c.client.config.tls) for c in sessions.calls] == [
        (2465, TlsPolicy.SMTPS),
        (2465, TlsPolicy.REQUIRED),
    ]


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


async def test_null_mx_fails_with_its_own_status_code() -> None:
    """RFC 7505: route.py's Null MX rule says 5.1.10, and the result keeps it
    whole (it used to become 5.1.0)."""

    async def null_mx(plan: Plan) -> Route:
        usable_mxs([Mx(0, "")])
        raise AssertionError("a Null MX must raise")

    sessions = Sessions(accepted)
    result = await agent("action out relay\n", sessions, null_mx)(envelope())
    assert (result.outcome, result.text, result.status) == (
        Outcome.PERMFAIL,
        "Domain does not accept mail",
        "5.1.10",
    )
    assert result.esc == StatusCode(5, 1, 10)
    assert sessions.calls == []


async def test_route_failure_codes_are_kept_or_made_safe() -> None:
    def failing(exc: Exception) -> Callable[[Plan], Awaitable[Route]]:
        async def resolve(plan: Plan) -> Route:
            raise exc

        return resolve

    cases = [
        (RouteTemporaryFailure("No MX found for domain", "4.4.4"), Outcome.TEMPFAIL, "4.4.4"),
        (RoutePermanentFailure("odd", "5.7.350"), Outcome.PERMFAIL, "5.7.350"),
        (RoutePermanentFailure("unreadable", "5.1"), Outcome.PERMFAIL, "5.3.0"),
        (RouteTemporaryFailure("unreadable", "4.1000.1"), Outcome.TEMPFAIL, "4.3.0"),
        (RouteTemporaryFailure("wrong class", "5.4.4"), Outcome.TEMPFAIL, "4.4.4"),
    ]
    for exc, outcome, status in cases:
        result = await agent("action out relay\n", Sessions(accepted), failing(exc))(envelope())
        assert (result.outcome, result.status) == (outcome, status), exc


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
            result = (
                Result.permfail("550 5.1.1 No such user", StatusCode(5, 1, 1))
                if refused
                else Result.ok()
            )
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


class ScriptedServer:
    """A fake SMTP server on an in-memory stream: 220, the given EHLO reply,
    250 to everything else (354 to DATA), 221 to QUIT; records the commands."""

    def __init__(self, ehlo: bytes = b"250 mx.example.net\r\n") -> None:
        self.ehlo = ehlo
        self.commands: list[bytes] = []
        self.sessions = 0

    async def serve(self, stream: trio.abc.Stream) -> None:
        await stream.send_all(b"220 mx.example.net ESMTP\r\n")
        buffer, in_data = b"", False
        while data := await stream.receive_some(4096):
            buffer += data
            while True:
                if in_data:
                    end = buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    buffer, in_data = buffer[end + 5 :], False
                    await stream.send_all(b"250 2.0.0 queued\r\n")
                    continue
                line, sep, rest = buffer.partition(b"\r\n")
                if not sep:
                    break
                buffer = rest
                self.commands.append(line)
                verb = line.split(b" ")[0].upper()
                if verb == b"EHLO":
                    await stream.send_all(self.ehlo)
                elif verb == b"DATA":
                    in_data = True
                    await stream.send_all(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    await stream.send_all(b"221 2.0.0 bye\r\n")
                    await stream.aclose()
                    return
                else:
                    await stream.send_all(b"250 2.0.0 ok\r\n")

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
        stream: trio.abc.Stream | None = None,  # the fake network's, unused
        reuse: Reuse | None = None,
        reports: ReportsFactory | None = None,
    ) -> SessionOutcome:
        self.sessions += 1
        ours, theirs = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.serve, theirs)
            return await run_session(
                address,
                port,
                client=client,
                server_name=server_name,
                content=content,
                timeouts=timeouts,
                tls=tls,
                stream=ours,
                reuse=reuse,
                reports=reports,
            )


SMARTHOST = 'action out relay host "smtp://127.0.0.1:2525"\n'


async def test_the_message_size_goes_with_mail_from() -> None:
    server = ScriptedServer(b"250-mx.example.net\r\n250 SIZE 1000\r\n")
    messages = Messages()
    result = await agent(SMARTHOST, server, messages=messages)(envelope())
    assert result.outcome is Outcome.OK
    mail = [c for c in server.commands if c.startswith(b"MAIL")]
    assert mail == [b"MAIL FROM:<alice@example.org> SIZE=%d" % len(CONTENT)]
    assert messages.opened == 1  # the size came with the stream that was sent


async def test_a_message_larger_than_the_remote_s_size_limit_is_not_sent() -> None:
    server = ScriptedServer(b"250-mx.example.net\r\n250 SIZE 10\r\n")
    result = await agent(SMARTHOST, server)(envelope())
    assert (result.outcome, result.status) == (Outcome.PERMFAIL, "5.3.4")
    assert "too large" in result.text
    assert [c.split(b" ")[0] for c in server.commands] == [b"EHLO", b"QUIT"]


HELO_SRC = (
    "table sources { 192.0.2.100 }\n"
    'table helos { 192.0.2.100 = "out.example.org" }\n'
    'action out relay host "smtp://127.0.0.1" src <sources> helo-src <helos> helo other.test\n'
)


async def test_helo_src_names_the_source_address() -> None:
    sessions = Sessions(accepted)
    result = await agent(HELO_SRC, sessions)(envelope())
    assert result.outcome is Outcome.OK
    [call] = sessions.calls
    assert (call.source, call.client.config.helo) == ("192.0.2.100", "out.example.org")


async def test_helo_src_without_a_name_for_the_source_is_temporary() -> None:
    sessions = Sessions(accepted)
    config = HELO_SRC.replace("{ 192.0.2.100 }", "{ 192.0.2.101 }")
    result = await agent(config, sessions)(envelope())
    assert result.outcome is Outcome.TEMPFAIL
    assert "Failed to retrieve helo string" in result.text
    assert sessions.calls == []


async def test_helo_src_needs_a_source_address() -> None:
    sessions = Sessions(accepted)
    config = 'table helos { 192.0.2.100 = "out.example.org" }\n'
    config += 'action out relay host "smtp://127.0.0.1" helo-src <helos>\n'
    a = agent(config, sessions)
    await a(envelope())
    [call] = sessions.calls
    assert call.source is None and call.client.config.helo == a.config.hostname


async def test_a_failing_address_is_skipped_until_its_delay_has_passed() -> None:
    now = [1_000_000.0]
    sessions = Sessions(lambda a, c: refused_early(a, c) if a == "192.0.2.1" else accepted(a, c))
    a = agent("action out relay\n", sessions, fixed(MX), clock=lambda: now[0])
    assert (await a(envelope())).outcome is Outcome.OK
    assert [c.address for c in sessions.calls] == ["192.0.2.1", "192.0.2.2"]
    sessions.calls.clear()
    now[0] += 14
    assert (await a(envelope())).outcome is Outcome.OK
    assert [c.address for c in sessions.calls] == ["192.0.2.2"]
    sessions.calls.clear()
    now[0] += 1  # 15 s: tried again, failing again: 60 s now
    await a(envelope())
    assert [c.address for c in sessions.calls] == ["192.0.2.1", "192.0.2.2"]
    sessions.calls.clear()
    now[0] += 59
    await a(envelope())
    assert [c.address for c in sessions.calls] == ["192.0.2.2"]


async def test_when_every_address_is_held_the_envelope_fails_at_once() -> None:
    now = [1_000_000.0]
    messages = Messages()
    sessions = Sessions(refused_early)
    a = agent("action out relay\n", sessions, fixed(MX), messages=messages, clock=lambda: now[0])
    first = await a(envelope())
    assert len(sessions.calls) == 3 and messages.opened == 3  # read by each session
    sessions.calls.clear()
    now[0] += 5
    second = await a(envelope())
    assert sessions.calls == [] and messages.opened == 3  # not even opened
    assert second.outcome is Outcome.TEMPFAIL
    assert second.text == first.text == "Connection refused by 192.0.2.3"
    assert second.relayed is not None and second.relayed.relay == "192.0.2.3 (mx2.example.net)"


async def test_a_late_failure_does_not_disable_the_route() -> None:
    def late(address: str, client: Client) -> SessionOutcome:
        failure = SessionFailure(Result.tempfail("Connection timeout"), ((0, 0),), False)
        return SessionOutcome(address, {}, frozenset(), failure, 0)

    sessions = Sessions(late)
    a = agent("action out relay\n", sessions, fixed(MX))
    await a(envelope())
    await a(envelope())
    assert [c.address for c in sessions.calls] == ["192.0.2.1", "192.0.2.1"]


async def test_a_session_stays_open_for_the_next_message_of_its_plan() -> None:
    server = ScriptedServer()
    a = agent("mta limit session-keepalive 1\n" + SMARTHOST, server)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        first = await a(envelope())
        second = await a(envelope("carol@example.net", 0x800000001, msgid=8))
        assert server.sessions == 1
        assert [c for c in server.commands if c.startswith((b"RCPT", b"QUIT"))] == [
            b"RCPT TO:<bob@example.net>",
            b"RCPT TO:<carol@example.net>",
        ]
        with trio.fail_after(5):
            while server.commands[-1] != b"QUIT":  # keep-alive over: QUIT
                await trio.sleep(0.05)
        third = await a(envelope("dave@example.net", 0x900000001, msgid=9))
        assert server.sessions == 2
        nursery.cancel_scope.cancel()
    assert [r.outcome for r in (first, second, third)] == [Outcome.OK] * 3
    assert second.relayed is not None and second.relayed.relay == "127.0.0.1 (127.0.0.1)"


async def test_session_mail_max_ends_a_session() -> None:
    server = ScriptedServer()
    a = agent("mta limit session-mail-max 2\n" + SMARTHOST, server)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        for msgid in (7, 8, 9):
            result = await a(envelope(evpid=msgid << 32 | 1, msgid=msgid))
            assert result.outcome is Outcome.OK
        nursery.cancel_scope.cancel()
    assert server.sessions == 2
    assert server.commands.count(b"QUIT") == 1  # the first, after two messages


async def test_other_plans_get_their_own_session() -> None:
    server = ScriptedServer()
    a = agent(SMARTHOST + 'action other relay host "smtp://127.0.0.1:2525" helo x.test\n', server)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await a(envelope())
        await a(envelope(evpid=0x800000001, msgid=8, dispatcher="other"))
        nursery.cancel_scope.cancel()
    assert server.sessions == 2


async def test_messages_waiting_for_a_connection_slot_take_a_free_session() -> None:
    server = ScriptedServer()
    a = agent("mta limit max-conn-per-route 1\n" + SMARTHOST, server)
    results: list[Result] = []

    async def one(msgid: int) -> None:
        results.append(await a(envelope(evpid=msgid << 32 | 1, msgid=msgid)))

    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        async with trio.open_nursery() as senders:
            for msgid in (7, 8, 9):
                senders.start_soon(one, msgid)
        nursery.cancel_scope.cancel()
    assert [r.outcome for r in results] == [Outcome.OK] * 3
    assert server.sessions == 1
    assert sum(c.startswith(b"MAIL") for c in server.commands) == 3


async def test_max_conn_per_host_is_not_exceeded() -> None:
    sessions = Sessions(accepted, hold=0.02)
    a = agent("mta limit max-conn-per-host 2\n" + SMARTHOST, sessions)

    async def one(msgid: int) -> None:
        assert (await a(envelope(evpid=msgid << 32 | 1, msgid=msgid))).outcome is Outcome.OK

    async with trio.open_nursery() as nursery:
        for msgid in (7, 8, 9):
            nursery.start_soon(one, msgid)
    assert sessions.peak == 2
    assert len(a.limits) == 0


async def test_messages_of_other_senders_and_domains_share_a_smarthost_session() -> None:
    server = ScriptedServer()
    a = agent(SMARTHOST, server)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await a(envelope())
        await a(
            envelope("dave@example.org", 0x800000001, msgid=8, sender=Address.parse("erin@x.test"))
        )
        nursery.cancel_scope.cancel()
    assert server.sessions == 1
    assert [c for c in server.commands if c.startswith(b"MAIL")] == [
        b"MAIL FROM:<alice@example.org>",
        b"MAIL FROM:<erin@x.test>",
    ]


async def test_max_deferred_envelopes_go_again_when_their_domain_is_reached() -> None:
    network = Network(refused=("2001:db8::1", "192.0.2.1", "192.0.2.3"))
    sessions = Sessions(accepted)
    a = agent("action out relay\n", sessions, fixed(DUAL), network=network)
    rescheduled: list[list[int]] = []
    a.reschedule = rescheduled.append
    first = await a(envelope(evpid=0x700000001))
    assert first.outcome is Outcome.TEMPFAIL
    [stat] = a.inventory.hoststats()
    assert (stat.name, stat.deferred, stat.error) == ("example.net", 1, "Connection refused")
    a.backoff.enable()  # the routes are back, and so is the network
    network.refused = ()
    second = await a(envelope(evpid=0x800000001, msgid=8))
    assert second.outcome is Outcome.OK
    assert rescheduled == [[0x700000001]]
    assert a.inventory.hoststats()[0].deferred == 0


async def test_the_inventory_counts_sessions_by_host_and_relay() -> None:
    seen: list[tuple[int, int]] = []

    def outcome(address: str, client: Client) -> SessionOutcome:
        [host] = [h for h in a.inventory.hosts() if h.address == address]
        [relay] = a.inventory.relays()
        seen.append((host.nconn, relay.ntask))
        return accepted(address, client)

    a = agent("action out relay\n", Sessions(outcome), fixed(MX))
    assert (await a(envelope())).outcome is Outcome.OK
    assert seen == [(1, 1)]
    [host] = a.inventory.hosts()
    assert (host.address, host.name, host.nconn) == ("192.0.2.1", "mx1.example.net", 0)
    assert host.lastconn is not None
    [relay] = a.inventory.relays()
    assert (relay.text, relay.ntask, relay.nconn) == ("[relay:example.net,smtp]", 0, 0)

"""The relay session's smtp-out reports over real loopback connections to
scripted servers: link-connect to link-disconnect, link-tls after STARTTLS,
timeout, one session id per connection (the plaintext retry gets its own)."""

from __future__ import annotations

import pytest
import trio

from mta.delivery.result import Outcome
from mta.filters.outbound import SessionReports
from mta.filters.protocol import ProtocolVersion, ReportEvent, Subsystem
from mta.relay.client import Client, ClientConfig, TlsPolicy
from mta.relay.session import SessionOutcome, run_session
from mta.relay.tlsclient import ClientTls
from mta.relay.transaction import Recipient, Transaction
from tests.e2e.certs import Certs, make_certs
from tests.relay.fakeserver import Peer, fake_server, greet, receive_message
from tests.relay.test_session import FAST, HELO, content, server_context


class Sink:
    """Records what a filter registered for every smtp-out event would get."""

    name = "f"
    version = ProtocolVersion.V0_7

    def __init__(self) -> None:
        self.lines: list[list[str]] = []

    def wants_report(self, subsystem: Subsystem, event: ReportEvent) -> bool:
        return subsystem is Subsystem.SMTP_OUT

    def post(self, line: bytes) -> bool:
        self.lines.append(line.decode().rstrip("\n").split("|"))
        return True

    def events(self) -> list[str]:
        return [fields[4] for fields in self.lines]

    def sessions(self) -> list[str]:
        return list(dict.fromkeys(fields[5] for fields in self.lines))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def reporting(**config: object) -> Client:
    config.setdefault("tls", TlsPolicy.NONE)
    tx = Transaction("alice@ext.test", (Recipient("bob@far.test", evpid=0x1234),), msgid=0xABC)
    return Client(ClientConfig(HELO, **config), [tx], reports=True)  # type: ignore[arg-type]


async def relay(port: int, client: Client, sink: Sink, **kwargs: object) -> SessionOutcome:
    def reports(session: int) -> SessionReports:
        return SessionReports(session, [sink])

    return await run_session(
        "127.0.0.1",
        port,
        client=client,
        server_name="localhost",
        content=content(),
        timeouts=FAST,
        reports=reports,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_session_is_reported_from_connect_to_disconnect() -> None:
    sink = Sink()

    async def script(peer: Peer) -> None:
        await greet(peer)
        await receive_message(peer)

    async with fake_server(script) as server:
        outcome = await relay(server.port, reporting(), sink)
    assert outcome.failure is None and not server.errors
    [session] = sink.sessions()
    assert int(session, 16) > 0
    connect = sink.lines[0]
    assert connect[4] == "link-connect"
    # no name lookup given: the remote's address stands for its name; fcrdns is always pass
    assert connect[6:8] == ["127.0.0.1", "pass"]
    assert connect[8].startswith("127.0.0.1:") and connect[8] != f"127.0.0.1:{server.port}"
    assert connect[9] == f"127.0.0.1:{server.port}"
    assert sink.events() == [
        "link-connect",
        "protocol-server",
        "link-greeting",
        "protocol-client",
        "link-identify",
        *["protocol-server"] * 3,
        *["protocol-client"] * 3,  # MAIL, RCPT, DATA: pipelined
        "protocol-server",
        "tx-begin",
        "tx-mail",
        "protocol-server",
        "tx-envelope",
        "tx-rcpt",
        "protocol-server",
        "tx-data",
        "protocol-client",
        "protocol-server",
        "tx-commit",
        "tx-reset",
        "protocol-client",
        "protocol-server",
        "link-disconnect",
    ]
    assert [f[6:] for f in sink.lines if f[4].startswith("tx-")] == [
        ["00000abc"],
        ["00000abc", "ok", "alice@ext.test"],
        ["00000abc", "0000000000001234"],
        ["00000abc", "ok", "bob@far.test"],
        ["00000abc", "ok"],
        ["00000abc", str(len(b"Subject: hi\r\n\r\n..dot line\r\nlast line\r\n"))],
        ["00000abc"],
    ]


async def test_link_tls_follows_the_handshake(certs: Certs) -> None:
    sink = Sink()
    context = server_context(certs.cert_file, certs.key_file)

    async def script(peer: Peer) -> None:
        await greet(peer, [b"STARTTLS"])
        await peer.expect(b"STARTTLS")
        await peer.send(b"220 go ahead\r\n")
        await peer.starttls(context)
        await peer.expect(b"EHLO")
        await peer.send(b"250 mx.example.test\r\n")
        await receive_message(peer)

    async with fake_server(script) as server:
        outcome = await relay(
            server.port,
            reporting(tls=TlsPolicy.REQUIRED),
            sink,
            tls=ClientTls(ca_file=str(certs.ca_file)),
        )
    assert outcome.failure is None and outcome.tls is not None
    events = sink.events()
    at = events.index("link-tls")
    assert events[at - 2 : at + 3] == [
        "protocol-client",  # STARTTLS
        "protocol-server",  # 220
        "link-tls",
        "protocol-client",  # EHLO again
        "link-identify",
    ]
    assert sink.lines[at][6] == outcome.tls.text  # version:cipher:bits


async def test_a_server_that_stops_answering_is_a_timeout() -> None:
    sink = Sink()

    async def script(peer: Peer) -> None:
        await greet(peer)
        await trio.sleep_forever()

    async with fake_server(script) as server:
        outcome = await relay(server.port, reporting(), sink)
    assert outcome.failure is not None
    assert sink.events()[-2:] == ["timeout", "link-disconnect"]


async def test_the_plaintext_retry_is_a_session_of_its_own() -> None:
    sink = Sink()
    connections = 0

    async def script(peer: Peer) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await greet(peer, [b"STARTTLS"])
            await peer.expect(b"STARTTLS")
            await peer.send(b"220 go ahead\r\n")
            await peer.send(b"this is not TLS\r\n" * 10)
            await peer.eof()
        else:
            await greet(peer)
            await receive_message(peer)

    async with fake_server(script) as server:
        outcome = await relay(server.port, reporting(tls=TlsPolicy.OPPORTUNISTIC), sink)
    assert outcome.downgraded and [r.result.outcome for r in outcome.results.values()] == [
        Outcome.OK
    ]
    first, second = sink.sessions()
    by_session = {
        s: [f[4] for f in sink.lines if f[5] == s and f[4].startswith("link-")]
        for s in (first, second)
    }
    links = ["link-connect", "link-greeting", "link-identify", "link-disconnect"]
    assert by_session == {first: links, second: links}


async def test_a_reporting_client_without_reports_to_make_relays_all_the_same() -> None:

    async def script(peer: Peer) -> None:
        await greet(peer)
        await receive_message(peer)

    async with fake_server(script) as server:
        outcome = await run_session(
            "127.0.0.1",
            server.port,
            client=reporting(),
            server_name="localhost",
            content=content(),
            timeouts=FAST,
        )
    assert outcome.failure is None

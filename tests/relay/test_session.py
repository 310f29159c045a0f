"""The relay session driver against scripted SMTP / LMTP servers on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import trio
import trustme

from mta.delivery.result import Outcome
from mta.relay.client import Client, ClientConfig, Credentials, TlsPolicy
from mta.relay.events import RecipientResult
from mta.relay.eyeballs import first_of
from mta.relay.session import (
    ContentSource,
    Reuse,
    SessionOutcome,
    connect,
    run_session,
)
from mta.relay.timeouts import ClientTimeouts
from mta.relay.tlsclient import ClientTls
from mta.relay.transaction import Recipient, Transaction
from tests.e2e.certs import Certs, make_certs
from tests.relay.fakeserver import (
    Peer,
    Script,
    fake_server,
    greet,
    receive_message,
    receive_transaction,
)

HELO = "relay.example.org"
FAST = ClientTimeouts().scaled(0.002)  # 0.6 s for commands, 0.24 s for DATA, ...
BODY = b"Subject: hi\n\n.dot line\nlast line"
STUFFED = b"Subject: hi\r\n\r\n..dot line\r\nlast line\r\n.\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture
def stranger(tmp_path: Path) -> ssl.SSLContext:
    """A server context whose certificate (for localhost) comes from an unknown CA."""
    leaf = trustme.CA().issue_cert("localhost")
    cert, key = tmp_path / "stranger.crt", tmp_path / "stranger.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return server_context(cert, key)


def transaction(*rcpts: str) -> Transaction:
    recipients = tuple(Recipient(r) for r in rcpts or ("bob@example.net",))
    return Transaction("alice@example.org", recipients)


def client(*transactions: Transaction, **config: object) -> Client:
    config.setdefault("tls", TlsPolicy.NONE)
    settings = ClientConfig(HELO, **config)  # type: ignore[arg-type]
    return Client(settings, transactions or (transaction(),))


def content(*bodies: bytes) -> ContentSource:
    async def source(index: int) -> AsyncIterator[bytes]:
        body = bodies[index] if bodies else BODY
        for start in range(0, len(body), 7):  # small chunks: the encoder joins them
            yield body[start : start + 7]

    return source


async def session(port: int, the_client: Client, **kwargs: object) -> SessionOutcome:
    kwargs.setdefault("server_name", "mx.example.test")
    kwargs.setdefault("content", content())
    kwargs.setdefault("timeouts", FAST)
    return await run_session("127.0.0.1", port, client=the_client, **kwargs)  # type: ignore[arg-type]


def outcomes(outcome: SessionOutcome) -> list[Outcome]:
    return [outcome.results[key].result.outcome for key in sorted(outcome.results)]


async def test_plain_pipelined_session(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta.mta")

    async def script(peer: Peer) -> None:
        await greet(peer)
        await receive_message(peer, [b"250 ok", b"250 ok"])

    async with fake_server(script) as server:
        outcome = await session(
            server.port, client(transaction("bob@example.net", "carol@example.net"))
        )
    assert not server.errors
    [peer] = server.peers
    assert peer.received == [
        b"EHLO relay.example.org",
        b"MAIL FROM:<alice@example.org>",
        b"RCPT TO:<bob@example.net>",
        b"RCPT TO:<carol@example.net>",
        b"DATA",
        b"QUIT",
    ]
    assert peer.messages == [STUFFED]
    assert outcomes(outcome) == [Outcome.OK, Outcome.OK]
    assert outcome.completed == {0}
    assert outcome.failure is None
    assert outcome.messages == 1
    assert outcome.tls is None
    lines = [record.getMessage()[17:] for record in caplog.records]
    assert lines == [
        f"mta connecting address=smtp://127.0.0.1:{server.port} host=mx.example.test",
        "mta connected",
        "mta disconnected reason=quit messages=1",
    ]


async def two_messages(peer: Peer) -> None:
    """Two transactions, one command at a time (no PIPELINING), then QUIT."""
    await greet(peer, [])
    for _ in range(2):
        await receive_transaction(peer)
    await peer.expect(b"QUIT")
    await peer.send(b"221 bye\r\n")


async def test_two_messages_on_one_connection() -> None:
    async with fake_server(two_messages) as server:
        the_client = client(transaction(), transaction("dave@example.net"))
        outcome = await session(server.port, the_client, content=content(b"one", b"two\r\n"))
    assert not server.errors
    assert server.peers[0].messages == [b"one\r\n.\r\n", b"two\r\n.\r\n"]
    assert outcome.completed == {0, 1}
    assert outcome.messages == 2


async def test_a_kept_alive_session_takes_the_next_message_when_idle() -> None:
    done: list[tuple[int, list[Outcome], str]] = []
    asked = 0

    async def more() -> Sequence[Transaction]:
        nonlocal asked
        asked += 1
        assert [tx for tx, _, _ in done] == list(range(asked))  # results came first
        return [transaction("dave@example.net")] if asked == 1 else []

    def on_done(tx: int, results: Mapping[int, RecipientResult], local: str) -> None:
        done.append((tx, [results[r].result.outcome for r in sorted(results)], local))

    async with fake_server(two_messages) as server:
        the_client = Client(ClientConfig(HELO, tls=TlsPolicy.NONE), [transaction()], keepalive=True)
        outcome = await session(
            server.port,
            the_client,
            content=content(b"one", b"two\r\n"),
            reuse=Reuse(more, on_done),
        )
    assert not server.errors
    assert server.peers[0].messages == [b"one\r\n.\r\n", b"two\r\n.\r\n"]
    assert done == [(0, [Outcome.OK], "127.0.0.1"), (1, [Outcome.OK], "127.0.0.1")]
    assert asked == 2 and outcome.completed == {0, 1} and outcome.failure is None


def starttls_script(context: ssl.SSLContext, after: bytes = b"220 go ahead\r\n") -> Script:
    async def script(peer: Peer) -> None:
        await greet(peer, [b"PIPELINING", b"STARTTLS"])
        await peer.expect(b"STARTTLS")
        await peer.send(after)
        await peer.starttls(context)
        line = await peer.expect(b"EHLO")
        assert line == b"EHLO relay.example.org"
        await peer.send(b"250-mx.example.test\r\n250 PIPELINING\r\n")
        await receive_message(peer)

    return script


async def test_starttls_verified(certs: Certs, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta.mta")
    script = starttls_script(server_context(certs.cert_file, certs.key_file))
    async with fake_server(script) as server:
        outcome = await session(
            server.port,
            client(tls=TlsPolicy.REQUIRED),
            server_name="localhost",
            tls=ClientTls(ca_file=str(certs.ca_file)),
        )
    assert not server.errors
    assert outcomes(outcome) == [Outcome.OK]
    assert outcome.tls is not None and outcome.tls.version.startswith("TLSv1.")
    received = server.peers[0].received
    assert received[:3] == [b"EHLO relay.example.org", b"STARTTLS", b"EHLO relay.example.org"]
    assert any(f"mta tls ciphers={outcome.tls.text}" in r.getMessage() for r in caplog.records)


async def test_starttls_wrong_name_fails_verification(certs: Certs) -> None:
    script = starttls_script(server_context(certs.cert_file, certs.key_file))
    async with fake_server(script) as server:
        outcome = await session(
            server.port,
            client(tls=TlsPolicy.REQUIRED),
            server_name="mail.example.test",  # the certificate is for localhost
            tls=ClientTls(ca_file=str(certs.ca_file)),
        )
    assert outcome.failure is not None
    assert outcome.failure.result.outcome is Outcome.TEMPFAIL
    assert "TLS handshake failed" in outcome.failure.result.text


async def test_unknown_ca_fails_with_verify_and_passes_with_no_verify(
    stranger: ssl.SSLContext,
) -> None:
    async with fake_server(starttls_script(stranger)) as server:
        refused = await session(
            server.port, client(tls=TlsPolicy.REQUIRED), server_name="localhost"
        )
        accepted = await session(
            server.port, client(tls=TlsPolicy.REQUIRED, verify=False), server_name="localhost"
        )
    assert refused.failure is not None
    assert refused.failure.result.outcome is Outcome.TEMPFAIL
    assert refused.failure.result.text.startswith("TLS handshake failed: certificate verify")
    assert refused.failure.before_transactions
    assert refused.failure.unsettled == ((0, 0),)
    assert not refused.downgraded  # required TLS never falls back to plaintext
    assert accepted.failure is None
    assert outcomes(accepted) == [Outcome.OK]
    assert accepted.tls is not None


async def test_required_tls_not_offered() -> None:
    async def script(peer: Peer) -> None:
        await greet(peer)
        await peer.eof()

    async with fake_server(script) as server:
        outcome = await session(server.port, client(tls=TlsPolicy.REQUIRED))
    assert outcome.failure is not None
    assert outcome.failure.result.text == "TLS required but not supported by remote host"
    assert outcome.failure.before_transactions
    assert b"MAIL" not in b"".join(server.peers[0].received)


async def test_opportunistic_tls_not_offered_goes_plain() -> None:
    async def script(peer: Peer) -> None:
        await greet(peer)
        await receive_message(peer)

    async with fake_server(script) as server:
        outcome = await session(server.port, client(tls=TlsPolicy.OPPORTUNISTIC))
    assert outcomes(outcome) == [Outcome.OK]
    assert outcome.tls is None


async def test_opportunistic_handshake_failure_downgrades_to_plain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mta.mta")
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
            await greet(peer)  # the retry must not ask for STARTTLS
            await receive_message(peer)

    async with fake_server(script) as server:
        outcome = await session(
            server.port, client(tls=TlsPolicy.OPPORTUNISTIC), server_name="localhost"
        )
    assert not server.errors
    assert connections == 2
    assert outcome.downgraded
    assert outcome.failure is None
    assert outcomes(outcome) == [Outcome.OK]
    assert b"STARTTLS" not in server.peers[1].received
    messages = [r.getMessage() for r in caplog.records]
    assert any("opportunistic TLS failed, downgrading to plain" in m for m in messages)


async def test_plaintext_injected_after_starttls_is_ignored(certs: Certs) -> None:
    context = server_context(certs.cert_file, certs.key_file)
    script = starttls_script(context, after=b"220 go\r\n250 injected\r\n")
    async with fake_server(script) as server:
        outcome = await session(
            server.port,
            client(tls=TlsPolicy.REQUIRED),
            server_name="localhost",
            tls=ClientTls(ca_file=str(certs.ca_file)),
        )
    assert not server.errors
    assert outcomes(outcome) == [Outcome.OK]
    assert server.peers[0].received[:4] == [
        b"EHLO relay.example.org",
        b"STARTTLS",
        b"EHLO relay.example.org",
        b"MAIL FROM:<alice@example.org>",
    ]


async def test_auth_plain_over_tls(certs: Certs) -> None:
    context = server_context(certs.cert_file, certs.key_file)
    expected = b"AUTH PLAIN " + base64.b64encode(b"\0user\0s3cret")

    async def script(peer: Peer) -> None:
        await greet(peer, [b"STARTTLS", b"AUTH LOGIN"])  # no AUTH before TLS
        await peer.expect(b"STARTTLS")
        await peer.send(b"220 go ahead\r\n")
        await peer.starttls(context)
        await peer.expect(b"EHLO")
        await peer.send(b"250-mx.example.test\r\n250 AUTH PLAIN LOGIN\r\n")
        line = await peer.line()
        if line != expected:
            await peer.send(b"535 5.7.8 bad credentials\r\n")
            raise AssertionError(line)
        await peer.send(b"235 2.7.0 ok\r\n")
        await receive_message(peer)

    async with fake_server(script) as server:
        outcome = await session(
            server.port,
            client(tls=TlsPolicy.REQUIRED, credentials=Credentials("user", "s3cret")),
            server_name="localhost",
            tls=ClientTls(ca_file=str(certs.ca_file)),
        )
    assert not server.errors
    assert outcomes(outcome) == [Outcome.OK]


async def test_smtps_with_client_certificate(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mta.mta")
    context = server_context(certs.cert_file, certs.key_file)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(certs.ca_file))
    peer_certs: list[object] = []

    async def script(peer: Peer) -> None:
        assert isinstance(peer.stream, trio.SSLStream)
        peer_certs.append(peer.stream.getpeercert())
        await greet(peer, [b"STARTTLS"])  # already on TLS: not used again
        await receive_message(peer)

    tls = ClientTls(
        ca_file=str(certs.ca_file),
        cert_file=str(certs.client_file),
        key_file=str(certs.client_file),
    )
    async with fake_server(script, tls=context) as server:
        outcome = await session(
            server.port, client(tls=TlsPolicy.SMTPS), server_name="localhost", tls=tls
        )
    assert not server.errors
    assert outcomes(outcome) == [Outcome.OK]
    assert peer_certs and peer_certs[0]
    assert b"STARTTLS" not in server.peers[0].received
    assert f"address=smtps://127.0.0.1:{server.port}" in caplog.records[0].getMessage()


async def test_smtps_server_speaking_plaintext_fails() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"220 mx.example.test ESMTP\r\n")
        await peer.eof()

    async with fake_server(script) as server:
        outcome = await session(
            server.port, client(tls=TlsPolicy.SMTPS, verify=False), server_name="localhost"
        )
    assert outcome.failure is not None
    assert outcome.failure.result.text.startswith("TLS handshake failed")
    assert not outcome.downgraded


async def test_stalled_server_times_out() -> None:
    async def script(peer: Peer) -> None:
        await greet(peer, [])
        await peer.expect(b"MAIL")
        await trio.sleep_forever()

    async with fake_server(script) as server:
        start = trio.current_time()
        outcome = await session(server.port, client())
        elapsed = trio.current_time() - start
    assert outcome.failure is not None
    assert outcome.failure.result.text == "Connection timeout"
    assert outcome.failure.result.outcome is Outcome.TEMPFAIL
    assert not outcome.failure.before_transactions  # MAIL went out
    assert FAST.mail <= elapsed < FAST.mail + 1.0


async def test_stalled_banner_times_out() -> None:
    async def script(peer: Peer) -> None:
        await trio.sleep_forever()

    async with fake_server(script) as server:
        outcome = await session(server.port, client())
    assert outcome.failure is not None
    assert outcome.failure.result.text == "Connection timeout"
    assert outcome.failure.before_transactions


async def test_server_not_reading_content_times_out() -> None:
    async def script(peer: Peer) -> None:
        await greet(peer)
        await peer.expect(b"MAIL")
        await peer.send(b"250 ok\r\n")
        await peer.expect(b"RCPT")
        await peer.send(b"250 ok\r\n")
        await peer.expect(b"DATA")
        await peer.send(b"354 go\r\n")
        await trio.sleep_forever()  # and never read: the client's writes block

    async def huge(index: int) -> AsyncIterator[bytes]:
        line = b"x" * 998 + b"\n"
        for _ in range(64 * 1024):  # 64 MiB, far more than the socket buffers hold
            yield line

    async with fake_server(script) as server:
        outcome = await session(server.port, client(), content=huge)
    assert outcome.failure is not None
    assert outcome.failure.result.text == "Connection timeout"
    assert not outcome.completed


async def test_connection_dropped_during_data() -> None:
    async def script(peer: Peer) -> None:
        await greet(peer)
        await peer.expect(b"MAIL")
        await peer.send(b"250 ok\r\n")
        await peer.expect(b"RCPT")
        await peer.send(b"250 ok\r\n")
        await peer.expect(b"DATA")
        await peer.send(b"354 go\r\n")
        # return: the connection is closed with the content unread

    async with fake_server(script) as server:
        outcome = await session(server.port, client())
    assert outcome.failure is not None
    assert outcome.failure.result.outcome is Outcome.TEMPFAIL
    assert outcome.failure.unsettled == ((0, 0),)
    assert not outcome.failure.before_transactions
    assert not outcome.completed
    assert outcome.result(0, 0).outcome is Outcome.TEMPFAIL


async def test_421_at_banner(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta.mta")

    async def script(peer: Peer) -> None:
        await peer.send(b"421 4.3.2 mx.example.test too busy\r\n")

    async with fake_server(script) as server:
        outcome = await session(server.port, client())
    assert outcome.failure is not None
    assert outcome.failure.result.outcome is Outcome.TEMPFAIL
    assert "too busy" in outcome.failure.result.text
    assert outcome.failure.before_transactions
    messages = [r.getMessage()[17:] for r in caplog.records]
    assert f"mta error reason={outcome.failure.result.text}" in messages
    assert messages[-1] == "mta disconnected reason=error messages=0"


async def test_per_recipient_replies() -> None:
    async def script(peer: Peer) -> None:
        await greet(peer)
        await receive_message(
            peer, [b"250 ok", b"450 4.2.1 mailbox busy", b"550 5.1.1 no such user"]
        )

    the_client = client(transaction("a@example.net", "b@example.net", "c@example.net"))
    async with fake_server(script) as server:
        outcome = await session(server.port, the_client)
    assert not server.errors
    assert outcomes(outcome) == [Outcome.OK, Outcome.TEMPFAIL, Outcome.PERMFAIL]
    assert "no such user" in outcome.result(0, 2).text
    assert outcome.completed == {0}
    assert outcome.failure is None


async def test_lmtp_per_recipient_final_replies(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta.mta")

    async def script(peer: Peer) -> None:
        line = await greet(peer)
        assert line == b"LHLO relay.example.org"
        await peer.expect(b"MAIL")
        await peer.send(b"250 ok\r\n")
        for _ in range(2):
            await peer.expect(b"RCPT")
            await peer.send(b"250 ok\r\n")
        await peer.expect(b"DATA")
        await peer.send(b"354 go\r\n")
        await peer.data()
        await peer.send(b"250 2.0.0 delivered\r\n452 4.2.2 over quota\r\n")
        await peer.expect(b"QUIT")
        await peer.send(b"221 bye\r\n")

    the_client = client(transaction("a@example.net", "b@example.net"), lmtp=True)
    async with fake_server(script) as server:
        outcome = await session(server.port, the_client, server_name="localhost")
    assert not server.errors
    assert outcomes(outcome) == [Outcome.OK, Outcome.TEMPFAIL]
    assert f"address=lmtp://127.0.0.1:{server.port}" in caplog.records[0].getMessage()


async def test_source_address_is_bound() -> None:
    seen: list[str] = []

    async def script(peer: Peer) -> None:
        assert isinstance(peer.stream, trio.SocketStream)
        seen.append(peer.stream.socket.getpeername()[0])
        await greet(peer)
        await receive_message(peer)

    async with fake_server(script) as server:
        outcome = await session(server.port, client(), source="127.0.0.1")
        stream = await connect("127.0.0.1", server.port, source="127.0.0.1")
        local = stream.socket.getsockname()
        await stream.aclose()
    assert outcome.failure is None
    assert seen[0] == "127.0.0.1"
    assert local[0] == "127.0.0.1"


async def test_connection_refused() -> None:
    async with fake_server(greet) as server:
        port = server.port
    outcome = await session(port, client())  # nobody listens there any more
    assert outcome.failure is not None
    assert outcome.failure.result.text == "Connection refused"
    assert outcome.failure.before_transactions
    assert outcome.result(0, 0).outcome is Outcome.TEMPFAIL


async def test_racing_connections_skips_a_dead_address() -> None:
    async def script(peer: Peer) -> None:
        await greet(peer)
        await receive_message(peer)

    async with fake_server(script) as server:  # on 127.0.0.1 only
        start = trio.current_time()
        race = await first_of(
            ["127.0.0.2", "127.0.0.1"],
            lambda address: connect(address, server.port),
            discard=trio.aclose_forcefully,
            delay=5,
        )
        assert trio.current_time() - start < 2  # the refusal started the next attempt
        assert race.winner is not None
        address, stream = race.winner
        assert address == "127.0.0.1"
        assert list(race.failures) == ["127.0.0.2"]
        outcome = await session(server.port, client(), stream=stream)
    assert outcome.failure is None
    assert server.connections == 1


async def test_racing_connections_all_dead() -> None:
    async with fake_server(greet) as server:
        port = server.port
    race = await first_of(
        ["127.0.0.2", "127.0.0.1"],
        lambda address: connect(address, port),
        discard=trio.aclose_forcefully,
        delay=0.05,
    )
    assert race.winner is None
    assert sorted(race.failures) == ["127.0.0.1", "127.0.0.2"]
    assert all(isinstance(exc, ConnectionRefusedError) for exc in race.failures.values())


async def test_content_that_cannot_be_read_fails_the_session() -> None:
    async def script(peer: Peer) -> None:
        await greet(peer)
        await peer.expect(b"MAIL")
        await peer.send(b"250 ok\r\n")
        await peer.expect(b"RCPT")
        await peer.send(b"250 ok\r\n")
        await peer.expect(b"DATA")
        await peer.send(b"354 go\r\n")
        assert not await peer.eof() or b"\r\n.\r\n" not in peer.buffer

    async def broken(index: int) -> AsyncIterator[bytes]:
        yield b"Subject: x\r\n"
        raise OSError("disk on fire")

    async with fake_server(script) as server:
        outcome = await session(server.port, client(), content=broken)
    assert not server.errors
    assert outcome.failure is not None
    assert "disk on fire" in outcome.failure.result.text
    assert not outcome.completed


def test_fast_timeouts_are_short() -> None:
    # the stall tests rely on these staying well under a second
    times: Iterator[float] = iter((FAST.greeting, FAST.mail, FAST.data_block, FAST.command))
    assert all(seconds < 1 for seconds in times)

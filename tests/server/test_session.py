"""The session driver without sockets: a :class:`~mta.server.session.Session` on
one end of ``trio.testing.memory_stream_pair``, a scripted client on the other,
the real rules, spool and watchdog behind it (as hypercorn tests its server)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from mta.daemon.generation import Generation
from tests.server.memory_session import Client, generation_of, open_session

CONFIG = """
table users { "bob" = "65534:65534:/nonexistent" }
listen on 127.0.0.1 port 2525
action "local" maildir "/tmp/unused/%{user.username}" userbase <users>
match from any for domain "localhost" action "local"
"""


@pytest.fixture
async def generation(tmp_path: Path) -> AsyncIterator[Generation]:
    async with generation_of(CONFIG, tmp_path / "spool") as gen:
        yield gen


async def test_a_message_is_committed_with_its_envelopes(generation: Generation) -> None:
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery)
        assert (await client.command("EHLO client.test")).startswith("250-")
        assert served.client.helo == "client.test" and served.client.esmtp
        assert (await client.command("MAIL FROM:<alice@example.org>")).startswith("250 ")
        assert (await client.command("RCPT TO:<bob@localhost>")).startswith("250 ")
        assert (await client.command("DATA")).startswith("354 ")
        reply = await client.command("Subject: hi\r\n\r\nhello\r\n.")
        assert reply.startswith("250 2.0.0 ")
        msgid = int(reply.split()[2], 16)
        assert (await client.command("QUIT")).startswith("221 ")
    store = generation.services.spool.store
    (envelope,) = store.iter_envelopes()
    assert envelope.msgid == msgid and str(envelope.rcpt) == "bob@localhost"
    assert envelope.helo == "client.test" and envelope.sockaddr == "127.0.0.1"
    with store.open_message(msgid) as stream:
        content = stream.read()
    assert content.startswith(b"Received: from client.test")
    assert content.endswith(b"\r\n\r\nhello\r\n")


async def test_refusals_leave_nothing_behind(generation: Generation) -> None:
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery)
        await client.command("EHLO client.test")
        await client.command("MAIL FROM:<alice@example.org>")
        assert (await client.command("RCPT TO:<nobody@elsewhere.test>")).startswith("550 ")
        assert (await client.command("RCPT TO:<bob@localhost>")).startswith("250 ")
        assert (await client.command("DATA")).startswith("354 ")
        await client.stream.send_all(b"Subject: cut\r\n\r\npart of a message")
        await trio.testing.wait_all_tasks_blocked()
        assert served.tx is not None and served.tx.in_data
        await client.stream.aclose()  # gone in the middle of DATA
    assert served.reason == "disconnect"
    store = generation.services.spool.store
    assert list(store.iter_envelopes()) == [] and store.message_ids() == []
    incoming = Path(generation.services.spool.paths.root) / "incoming"
    assert list(incoming.iterdir()) == []


async def test_every_refusal_is_logged_once_with_its_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtp")
    text = CONFIG.replace("listen on", "smtp limit max-rcpt 1\nlisten on")
    async with generation_of(text, tmp_path / "spool") as gen, trio.open_nursery() as nursery:
        client, served = await open_session(gen, nursery)
        assert (await client.command("MAIL FROM:<alice@example.org>")).startswith("503 ")
        assert (await client.command("EHLO client.test")).startswith("250")
        assert (await client.command("BOGUS")).startswith("500 ")
        assert (await client.command("MAIL FROM:<alice@example.org>")).startswith("250 ")
        assert (await client.command("RCPT TO:<bob@@localhost>")).startswith("501 ")
        assert (await client.command("RCPT TO:<nobody@elsewhere.test>")).startswith("550 ")
        assert (await client.command("RCPT TO:<bob@localhost>")).startswith("250 ")
        assert (await client.command("RCPT TO:<bob+2@localhost>")).startswith("452 ")
        assert (await client.command("DATA")).startswith("354 ")
        assert (await client.command("Subject: nul\r\n\r\na\0b\r\n.")).startswith("554 ")
        await client.command("QUIT")
    lines = [r.getMessage() for r in caplog.records if "smtp failed-command" in r.getMessage()]
    prefix = f"{served.id:016x} smtp failed-command command="
    assert lines == [
        prefix + '"MAIL FROM:<alice@example.org>" result="503 5.5.1 Invalid command: '
        'Command not allowed at this point."',
        prefix + '"BOGUS" result="500 5.5.1 Invalid command: Command unrecognized"',
        prefix + '"RCPT TO:<bob@@localhost>" result="501 5.1.3 Recipient address syntax error"',
        prefix + '"RCPT TO:<nobody@elsewhere.test>" result="550 5.1.1 Invalid recipient: '
        '<nobody@elsewhere.test>"',
        prefix + '"RCPT TO:<bob+2@localhost>" result="452 4.5.3 Too many recipients: '
        'Too many recipients"',
        prefix + '"DATA" result="554 5.6.0 Message content rejected: NUL character in message"',
    ]


async def test_input_that_is_no_command_is_logged_as_bad_input(
    generation: Generation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtp")
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery)
        assert (await client.command("NOOP " + "x" * 3000)).startswith("500 ")
    assert f'{served.id:016x} smtp bad-input result="500 5.0.0 Command line too long"' in [
        r.getMessage() for r in caplog.records
    ]
    assert "failed-command" not in caplog.text


async def start_data(client: Client) -> float:
    """EHLO, MAIL, RCPT, DATA and a header sent: when the message started."""
    await client.command("EHLO client.test")
    await client.command("MAIL FROM:<alice@example.org>")
    assert (await client.command("RCPT TO:<bob@localhost>")).startswith("250 ")
    assert (await client.command("DATA")).startswith("354 ")
    await client.stream.send_all(b"Subject: slow\r\n\r\n")
    return trio.current_time()


async def send_slowly(client: Client, piece: bytes, every: float, until: float) -> str | None:
    """``piece`` every ``every`` seconds until a reply comes (returned) or ``until``."""
    while trio.current_time() < until:
        with trio.move_on_after(every):
            return await client.reply()
        await client.stream.send_all(piece)
    return None


@pytest.mark.parametrize("piece", [b"x", b"x\r\n"], ids=["byte", "line"])
async def test_a_client_dribbling_data_is_cut_by_the_minimum_rate(
    generation: Generation,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    piece: bytes,
) -> None:
    """A byte, or a short line, every 5 seconds: cut 3 minutes after the 354."""
    caplog.set_level(logging.INFO, logger="mta.smtp")
    timeouts = generation.services.timeouts
    async with trio.open_nursery() as nursery:
        client, served = await open_session(generation, nursery)
        started = await start_data(client)
        reply = await send_slowly(client, piece, 5.0, started + timeouts.data_total)
        elapsed = trio.current_time() - started
    assert reply == "421 4.4.2 Timeout, closing connection"
    assert timeouts.data_block - 5 < elapsed < timeouts.data_block + 5  # not the hour
    assert served.reason == "timeout"
    assert "smtp timeout in DATA: " in caplog.text and "slower than 500 bytes/s" in caplog.text
    assert list(generation.services.spool.store.iter_envelopes()) == []


async def test_a_slow_honest_client_gets_its_message_through(
    generation: Generation, autojump_clock: trio.testing.MockClock
) -> None:
    timeouts = generation.services.timeouts
    async with trio.open_nursery() as nursery:
        client, _ = await open_session(generation, nursery)
        started = await start_data(client)
        line = b"y" * 598 + b"\r\n"  # 600 bytes a second for twice the data block timeout
        reply = await send_slowly(client, line, 1.0, started + 2 * timeouts.data_block)
        assert reply is None
        assert (await client.command(".")).startswith("250 ")
    (envelope,) = generation.services.spool.store.iter_envelopes()
    assert str(envelope.rcpt) == "bob@localhost"

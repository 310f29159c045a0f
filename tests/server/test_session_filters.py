"""Builtin filters in a session, without sockets: a reject at every phase, and
each decision (disconnect, junk, rewrite, bypass) with its effect on the
replies and on what reaches the spool."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from mta.daemon.generation import Generation
from tests.server.memory_session import Client, make_generation, open_session

BASE = """
table users { "bob" = "65534:65534:/nonexistent", "carol" = "65534:65534:/nonexistent" }
listen on 127.0.0.1 port 2525 filter LISTEN
action "local" maildir "/tmp/unused/%{user.username}" userbase <users>
match from any for domain "localhost" action "local"
"""


@contextlib.asynccontextmanager
async def filtered(tmp_path: Path, filters: str, listen: str) -> AsyncIterator[Generation]:
    """The generation of ``filters`` and a listener filtered by ``listen``."""
    text = filters + BASE.replace("LISTEN", listen)
    generation = await make_generation(text, tmp_path / "spool")
    try:
        yield generation
    finally:
        generation.tables.close()


async def transaction(
    client: Client, *, sender: str = "alice@example.org", ehlo: bool = True
) -> list[str]:
    """EHLO (unless ``ehlo`` is false), MAIL, RCPT bob, DATA, a message: every
    reply up to the first refusal."""
    replies = []
    for line in (
        *(["EHLO client.test"] if ehlo else []),
        f"MAIL FROM:<{sender}>",
        "RCPT TO:<bob@localhost>",
        "DATA",
        "Subject: x\r\n\r\nbody\r\n.",
    ):
        replies.append(await client.command(line))
        if replies[-1].startswith(("4", "5")):
            break
    return replies


def stored(generation: Generation) -> list[bytes]:
    store = generation.services.spool.store
    result = []
    for msgid in store.message_ids():
        with store.open_message(msgid) as stream:
            result.append(stream.read())
    return result


@pytest.mark.parametrize(
    ("phase_filter", "refused_at", "reply"),
    [
        ('phase connect match src regex "^127[.]" reject "554 no locals"', -1, "554 5.0.0 no"),
        ('phase ehlo match helo regex "client" reject "550 bad helo"', 0, "550 5.0.0 bad helo"),
        ('phase mail-from match mail-from regex "^alice@" reject "553 no"', 1, "553 5.0.0 no"),
        ('phase rcpt-to match rcpt-to regex "^bob@" reject "450 later"', 2, "450 4.0.0 later"),
        ('phase data match helo regex "client" reject "554 no data"', 3, "554 5.0.0 no data"),
        ('phase commit match !rdns reject "550 not this one"', 4, "550 5.0.0 not this one"),
    ],
)
async def test_a_builtin_reject_at_each_phase(
    tmp_path: Path, phase_filter: str, refused_at: int, reply: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mta.smtp")
    async with filtered(tmp_path, f"filter f {phase_filter}\n", "f") as generation:
        async with trio.open_nursery() as nursery:
            if refused_at < 0:
                # in place of the banner, and then only QUIT (RFC 5321 3.1; OpenSMTPD)
                client, _ = await open_session(generation, nursery, banner=False)
                assert (await client.reply()).startswith(reply)
                for command in ("EHLO client.test", "MAIL FROM:<a@b.test>", "NOOP"):
                    refused = await client.command(command)
                    assert refused.startswith("503 5.5.1 Invalid command: Command not allowed")
                assert (await client.command("QUIT")).startswith("221 ")
                assert failed_commands(caplog)[:2] == ['""', '"EHLO client.test"']
                assert len(failed_commands(caplog)) == 4
                return
            client, _ = await open_session(generation, nursery)
            replies = await transaction(client)
            assert len(replies) == refused_at + 1, replies
            assert replies[refused_at].startswith(reply), replies
            assert (await client.command("QUIT")).startswith("221")
        assert stored(generation) == []
    commands = ("EHLO client.test", "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@localhost>")
    assert failed_commands(caplog) == [f'"{(*commands, "DATA", "DATA")[refused_at]}"']


def failed_commands(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The command of each ``smtp failed-command`` line logged."""
    found = []
    for record in caplog.records:
        text = record.getMessage()
        if " smtp failed-command command=" in text:
            found.append(text.split("command=", 1)[1].split(" result=")[0])
    return found


async def test_disconnect_at_connect_closes_at_once(tmp_path: Path) -> None:
    text = 'filter f phase connect match src regex "^127[.]" disconnect "421 not now"\n'
    async with filtered(tmp_path, text, "f") as generation:
        async with trio.open_nursery() as nursery:
            client, served = await open_session(generation, nursery, banner=False)
            assert (await client.reply()).startswith("421 4.0.0 not now")
            with pytest.raises(EOFError):
                await client.reply()
        assert served.reason == "rejected"


async def test_disconnect_closes_the_session(tmp_path: Path) -> None:
    text = 'filter f phase mail-from match mail-from regex "^alice@" disconnect "421 go"\n'
    async with filtered(tmp_path, text, "f") as generation, trio.open_nursery() as nursery:
        client, _ = await open_session(generation, nursery)
        replies = await transaction(client)
        assert replies[-1].startswith("421 4.0.0 go")
        with pytest.raises(EOFError):
            await client.reply()


@pytest.mark.parametrize("phase", ["connect", "ehlo", "mail-from", "rcpt-to", "data"])
async def test_junk_heads_the_message_with_x_spam(tmp_path: Path, phase: str) -> None:
    text = f'filter f phase {phase} match src regex "^127[.]" junk\n'
    async with filtered(tmp_path, text, "f") as generation:
        async with trio.open_nursery() as nursery:
            client, _ = await open_session(generation, nursery)
            replies = await transaction(client)
            assert replies[-1].startswith("250 2.0.0"), replies
            await client.command("QUIT")
        (content,) = stored(generation)
        assert content.startswith(b"X-Spam: Yes\r\nReceived: from client.test")


async def test_junk_at_rcpt_to_is_the_transaction_s_only(tmp_path: Path) -> None:
    text = 'filter f phase rcpt-to match rcpt-to regex "^bob@" junk\n'
    async with filtered(tmp_path, text, "f") as generation:
        async with trio.open_nursery() as nursery:
            client, _ = await open_session(generation, nursery)
            await transaction(client)
            # a second transaction of the same session to carol: not junk
            await client.command("MAIL FROM:<alice@example.org>")
            await client.command("RCPT TO:<carol@localhost>")
            await client.command("DATA")
            await client.command("Subject: y\r\n\r\nbody\r\n.")
            await client.command("QUIT")
        junk = [c.startswith(b"X-Spam: Yes\r\n") for c in stored(generation)]
        assert sorted(junk) == [False, True]


async def test_rewrite_changes_the_command(tmp_path: Path) -> None:
    text = (
        'filter a phase mail-from match mail-from regex "^alice@" rewrite "<bounce@example.org>"\n'
        'filter b phase ehlo match helo regex "client" rewrite "renamed.test"\n'
    )
    async with filtered(tmp_path, text, "{ a, b }") as generation:
        async with trio.open_nursery() as nursery:
            client, _ = await open_session(generation, nursery)
            replies = await transaction(client)
            assert replies[-1].startswith("250 2.0.0"), replies
            await client.command("QUIT")
        (envelope,) = generation.services.spool.store.iter_envelopes()
        assert str(envelope.sender) == "bounce@example.org"
        assert envelope.helo == "renamed.test"


async def test_a_rewrite_that_is_not_an_address_is_refused(tmp_path: Path) -> None:
    text = 'filter a phase mail-from match mail-from regex "." rewrite "not an address"\n'
    async with filtered(tmp_path, text, "a") as generation, trio.open_nursery() as nursery:
        client, _ = await open_session(generation, nursery)
        replies = await transaction(client)
        assert replies[-1].startswith("553 5.1.0"), replies
        await client.command("QUIT")


async def test_bypass_skips_the_rest_of_the_chain_for_its_phase(tmp_path: Path) -> None:
    text = (
        'filter ok phase rcpt-to match rcpt-to regex "^bob@" bypass\n'
        'filter no phase rcpt-to match rcpt-to regex "@localhost$" reject "550 nobody here"\n'
    )
    async with (
        filtered(tmp_path, text, "{ ok, no }") as generation,
        trio.open_nursery() as nursery,
    ):
        client, _ = await open_session(generation, nursery)
        replies = await transaction(client)
        assert replies[-1].startswith("250 2.0.0"), replies
        await client.command("MAIL FROM:<alice@example.org>")
        refused = await client.command("RCPT TO:<carol@localhost>")
        assert refused.startswith("550 5.0.0 nobody here")
        await client.command("QUIT")


NO_ARGUMENTS = "500 5.5.4 Invalid command arguments: command does not accept arguments."


async def test_a_rewrite_of_data_is_refused_and_the_transaction_kept(tmp_path: Path) -> None:
    """As OpenSMTPD: the rewritten DATA is checked, takes no argument, 500."""
    text = 'filter d phase data match mail-from regex "^alice@" rewrite "x"\n'
    async with filtered(tmp_path, text, "d") as generation:
        async with trio.open_nursery() as nursery:
            client, _ = await open_session(generation, nursery)
            replies = await transaction(client)
            assert replies[-1] == NO_ARGUMENTS, replies
            # the transaction is still there: DATA is refused again, RSET ends it
            assert await client.command("DATA") == NO_ARGUMENTS
            assert (await client.command("RSET")).startswith("250 ")
            replies = await transaction(client, sender="dave@example.org", ehlo=False)
            assert replies[-1].startswith("250 2.0.0"), replies
            await client.command("QUIT")
        assert len(stored(generation)) == 1


async def test_a_rewrite_at_commit_is_refused_and_the_message_dropped(tmp_path: Path) -> None:
    """500, and the transaction rolled back (OpenSMTPD 6.8 answers 500 and then
    leaves the session waiting for ever); the session goes on."""
    text = 'filter c phase commit match mail-from regex "^alice@" rewrite "x"\n'
    async with filtered(tmp_path, text, "c") as generation:
        async with trio.open_nursery() as nursery:
            client, _ = await open_session(generation, nursery)
            replies = await transaction(client)
            assert replies[-1] == NO_ARGUMENTS, replies
            assert len(replies) == 5
            replies = await transaction(client, sender="dave@example.org", ehlo=False)
            assert replies[-1].startswith("250 2.0.0"), replies
            await client.command("QUIT")
        assert len(stored(generation)) == 1
        (envelope,) = generation.services.spool.store.iter_envelopes()
        assert str(envelope.sender) == "dave@example.org"


async def test_builtin_filters_alone_take_no_nursery_and_still_decide(tmp_path: Path) -> None:
    # no filter process, so no data-line pipe: the session runs without a nursery
    rule = 'filter f phase rcpt-to match rcpt-to regex "^carol@" reject "550 not carol"\n'
    async with filtered(tmp_path, rule, "f") as generation:
        async with trio.open_nursery() as nursery:
            client, served = await open_session(generation, nursery)
            assert (await transaction(client))[-1].startswith("250 ")
            assert (await client.command("MAIL FROM:<alice@example.org>")).startswith("250 ")
            assert (await client.command("RCPT TO:<carol@localhost>")).startswith("550 ")
            assert (await client.command("QUIT")).startswith("221")
        assert served._nursery is None
        assert len(stored(generation)) == 1

"""Notices committed to a real spool, their recipient resolved by the rules."""

from __future__ import annotations

import email
import email.policy
import pathlib

import attrs

from mta.config.load import load_text
from mta.delivery.result import Result
from mta.dsn.notify import SpoolNotifier
from mta.envelope import NULL_ADDRESS, Address, DsnNotify, Envelope, EnvelopeFlag, EnvelopeKind
from mta.rules.expand import Resolver
from mta.rules.tableset import TableSet
from mta.scheduler.runner import Notice
from mta.spool.spool import Spool
from mta.status import StatusCode
from tests.envelopes import make_envelope

CONFIG = """
table users { alice = "1000:1000:/home/alice" }
action "local" maildir userbase <users>
match from any for domain "localhost" action "local"
"""
ORIGINAL = b"From: alice@localhost\r\nSubject: original\r\n\r\nbody line\r\n"


async def setup(tmp_path: pathlib.Path) -> tuple[Spool, SpoolNotifier, list[Envelope], Envelope]:
    config = load_text(CONFIG, check_interfaces=False).config
    tables = TableSet.open(config, "mx.example.net", [])
    spool = await Spool.open(tmp_path / "spool")
    committed: list[Envelope] = []
    notifier = SpoolNotifier(
        spool, Resolver(config, tables, "mx.example.net"), committed.extend, clock=lambda: 1e9
    )
    txn = await spool.begin()
    (await txn.open_message()).write(ORIGINAL)
    sender = Address("alice", "localhost")
    sent = make_envelope("bob@example.org", dispatcher="out", sender=sender, ctime=int(1e9) - 60)
    [envelope] = await txn.commit([sent])
    return spool, notifier, committed, envelope


async def test_a_failure_notice_goes_through_the_rules_to_the_sender(
    tmp_path: pathlib.Path,
) -> None:
    spool, notifier, committed, envelope = await setup(tmp_path)
    failure = Result.permfail("Error (550 5.1.1 no such user)", StatusCode(5, 1, 1))
    await notifier.notify(Notice(envelope, "failed", failure))
    [bounce] = committed
    assert bounce.sender == NULL_ADDRESS and bounce.rcpt == envelope.sender
    assert bounce.dispatcher == "local" and bounce.kind is EnvelopeKind.MDA
    assert EnvelopeFlag.BOUNCE in bounce.flags
    with await spool.open_message(bounce.msgid) as stream:
        notice = email.message_from_bytes(stream.read(), policy=email.policy.default)
    assert notice["Subject"] == "Delivery status notification: failed"
    assert notice["To"] == "alice@localhost"
    text = notice.as_string()
    assert "bob@example.org" in text and "5.1.1" in text and "Subject: original" in text


async def test_no_notice_when_it_is_not_wanted_or_the_sender_is_refused(
    tmp_path: pathlib.Path,
) -> None:
    spool, notifier, committed, envelope = await setup(tmp_path)
    failure = Result.permfail("Error (gone)")
    for unwanted in (
        attrs.evolve(envelope, sender=NULL_ADDRESS),
        attrs.evolve(envelope, flags=EnvelopeFlag.BOUNCE),
        attrs.evolve(envelope, dsn_notify=DsnNotify.NEVER),
        attrs.evolve(envelope, dsn_notify=DsnNotify.SUCCESS),
    ):
        await notifier.notify(Notice(unwanted, "failed", failure))
    # a sender the rules refuse (not a local domain here): logged, nothing queued
    await notifier.notify(
        Notice(attrs.evolve(envelope, sender=Address("x", "example.com")), "failed", failure)
    )
    assert committed == []
    assert await spool.message_ids() == [envelope.msgid]


async def test_delay_notice_wording(tmp_path: pathlib.Path) -> None:
    spool, notifier, committed, envelope = await setup(tmp_path)
    tempfail = Result.tempfail("Error (450 mailbox busy)")
    await notifier.notify(Notice(envelope, "delayed", tempfail, delay=4 * 3600, ttl=4 * 86400))
    [bounce] = committed
    with await spool.open_message(bounce.msgid) as stream:
        text = stream.read().decode()
    assert "Delivery status notification: delayed" in text
    assert "4 hours" in text and "4 days" in text

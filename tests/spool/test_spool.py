"""The Spool write path: layout, begin / write / commit / abort, reopening, and
what the scheduler reads at start."""

from __future__ import annotations

import os
import pathlib
import stat

import attrs
import pytest
import trio

from mta.errors import SpoolError, SpoolNotFound
from mta.spool import Spool, store
from mta.spool.codec import decode_envelope
from mta.spool.paths import bucket_of
from mta.spool.recovery import Queued
from mta.spool.spool import _MSGID_TRIES, BUCKET_RUN
from mta.spool.writer import FLUSH_AT
from tests.envelopes import make_envelope

from .conftest import (
    Draws,
    bucket_path,
    every_setting,
    evpids,
    files_under,
    message_path,
    queue_message,
    read_message,
)

MESSAGE = b"Received: from client\r\nSubject: hi\r\n\r\nbody line\r\n" * 50


def mode_of(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_open_creates_layout_and_leaves_root_contents(root: pathlib.Path) -> None:
    root.mkdir()
    (root / "mta.sock").write_text("not a socket, but must survive")
    spool = await Spool.open(root)
    for name in ("incoming", "queue", "corrupt", "temporary"):
        assert (root / name).is_dir()
        assert mode_of(root / name) == 0o700
    assert mode_of(root / "offline") == 0o770
    assert (root / "mta.sock").read_text() == "not a socket, but must survive"
    assert spool.recovery.kept_messages == 0
    assert spool.recovery.purged == 0


async def test_open_rejects_a_key_of_the_wrong_size(root: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        await Spool.open(root, key=b"short")


async def test_open_fails_clearly_when_a_subdirectory_is_a_file(root: pathlib.Path) -> None:
    root.mkdir()
    (root / "queue").write_text("oops")
    with pytest.raises(SpoolError, match="not a directory"):
        await Spool.open(root)


async def test_commit_writes_message_and_envelopes_in_the_queue(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    assert txn.msgid != 0
    writer = await txn.open_message()
    for start in range(0, len(MESSAGE), 100):
        writer.write(MESSAGE[start : start + 100])
    assert writer.size == len(MESSAGE)
    assert txn.path == str(root / "incoming" / f"{txn.msgid:08x}")
    assert not os.path.exists(txn.path)  # a small message: no I/O before commit
    envelopes = await txn.commit([make_envelope("a@x.org"), make_envelope("b@y.org")])

    assert not os.path.exists(txn.path)
    # One file: the content as it came (raw), then the envelopes in commit order.
    content, tail = read_message(message_path(root, txn.msgid))
    assert content == MESSAGE
    assert [decode_envelope(blob) for blob in tail.envelopes] == envelopes
    assert [str(e.rcpt) for e in envelopes] == ["a@x.org", "b@y.org"]
    assert len({e.id for e in envelopes}) == 2
    for envelope in envelopes:
        assert envelope.msgid == txn.msgid
        assert envelope.id >> 32 == txn.msgid and envelope.id & 0xFFFFFFFF
    assert files_under(root / "queue") == [f"{bucket_of(txn.msgid)}/{txn.msgid:08x}"]
    assert stat.S_IMODE(message_path(root, txn.msgid).stat().st_mode) == 0o600
    assert await spool.message_ids() == [txn.msgid]
    assert spool.stats.commits == 1


@every_setting
async def test_message_round_trips_with_every_setting(
    root: pathlib.Path, compression: bool, key: bytes | None
) -> None:
    spool = await Spool.open(root, compression=compression, key=key)
    txn = await spool.begin()
    writer = await txn.open_message()
    writer.write(MESSAGE)
    writer.write(b"")
    writer.write(b"last line\r\n")
    (envelope,) = await txn.commit([make_envelope()])
    stored, _tail = read_message(message_path(root, txn.msgid))
    assert (stored == MESSAGE + b"last line\r\n") == (not compression and key is None)
    with await spool.open_message(txn.msgid) as stream:
        assert stream.read() == MESSAGE + b"last line\r\n"
    stream, size = await spool.open_message_sized(txn.msgid)
    with stream:
        assert size == len(stream.read()) == len(MESSAGE) + 11
    assert await spool.load_envelope(envelope.id) == envelope


@every_setting
async def test_a_large_message_s_size_is_known_at_open(
    root: pathlib.Path, compression: bool, key: bytes | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "IN_MEMORY_LIMIT", 64)  # decoded as it is read
    spool = await Spool.open(root, compression=compression, key=key)
    txn = await spool.begin()
    writer = await txn.open_message()
    content = b"".join(b"%08d some line of text\r\n" % n for n in range(1000))
    writer.write(content)
    await txn.commit([make_envelope()])
    stream, size = await spool.open_message_sized(txn.msgid)
    with stream:
        assert size == len(content)
        assert stream.read() == content


async def test_abort_removes_the_transaction(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    writer = await txn.open_message()
    writer.write(MESSAGE)
    await txn.abort()
    assert os.listdir(root / "incoming") == []
    assert await spool.message_ids() == []
    with pytest.raises(RuntimeError):
        writer.write(b"more")
    with pytest.raises(RuntimeError):
        await txn.commit([make_envelope()])
    await txn.abort()  # idempotent


async def test_abort_after_commit_keeps_the_message(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    (await txn.open_message()).write(MESSAGE)
    await txn.commit([make_envelope()])
    await txn.abort()
    assert await spool.message_ids() == [txn.msgid]


async def test_commit_needs_an_envelope(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    with pytest.raises(ValueError, match="envelope"):
        await txn.commit([])
    await txn.abort()


async def test_transactions_get_distinct_msgids_in_shared_buckets(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    txns = [await spool.begin() for _ in range(BUCKET_RUN + 10)]
    assert len({txn.msgid for txn in txns}) == len(txns)
    assert all(txn.msgid for txn in txns)
    buckets = [txn.msgid >> 24 for txn in txns]
    assert len(set(buckets)) == 2  # runs of BUCKET_RUN share a bucket, then the next one
    assert buckets[-1] == (buckets[0] + 1) % 256
    assert os.listdir(root / "incoming") == []
    for txn in txns:
        await txn.abort()
    assert os.listdir(root / "incoming") == []


async def test_msgids_of_queued_messages_are_not_reused(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    first = await spool.begin()
    (await first.open_message()).write(MESSAGE)
    (one, two) = await first.commit([make_envelope(), make_envelope()])
    bucket, low = first.msgid >> 24, first.msgid & 0xFFFFFF
    draws = Draws([low, low ^ 1, low, low ^ 1, low ^ 2])
    monkeypatch.setattr(spool, "_random", draws)
    second = await spool.begin()  # skips the queued message's id
    third = await spool.begin()  # skips the queued and the open transaction's ids
    assert second.msgid == bucket << 24 | low ^ 1
    assert third.msgid == bucket << 24 | low ^ 2
    assert draws.calls == 5
    # An aborted transaction's id is free again.
    await second.abort()
    monkeypatch.setattr(spool, "_random", Draws([low, low ^ 1]))
    assert (await spool.begin()).msgid == bucket << 24 | low ^ 1
    # A queued message's id stays taken until its last envelope goes.
    assert await spool.delete_envelope(one.id) is False
    monkeypatch.setattr(spool, "_random", Draws([low, low ^ 3]))
    assert (await spool.begin()).msgid == bucket << 24 | low ^ 3
    assert await spool.delete_envelope(two.id) is True
    monkeypatch.setattr(spool, "_random", Draws([low]))
    reused = await spool.begin()
    assert reused.msgid == first.msgid
    (await reused.open_message()).write(b"another message\r\n")
    (envelope,) = await reused.commit([make_envelope()])
    assert [e.id for e in await spool.envelopes()] == [envelope.id]


async def test_msgids_of_the_queue_found_at_startup_are_taken(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    (await txn.open_message()).write(MESSAGE)
    await txn.commit([make_envelope()])
    again = await Spool.open(root)
    again._bucket = txn.msgid >> 24
    low = txn.msgid & 0xFFFFFF
    monkeypatch.setattr(again, "_random", Draws([low, low, low ^ 1]))
    assert (await again.begin()).msgid == txn.msgid ^ 1


async def test_a_quarantined_message_keeps_its_id(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    (await txn.open_message()).write(MESSAGE)
    await txn.commit([make_envelope()])
    await spool.quarantine(txn.msgid, "test")
    low = txn.msgid & 0xFFFFFF
    monkeypatch.setattr(spool, "_random", Draws([low, low ^ 1]))
    assert (await spool.begin()).msgid == txn.msgid ^ 1


async def test_no_free_msgid(root: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    low = txn.msgid & 0xFFFFFF
    monkeypatch.setattr(spool, "_random", Draws([low] * _MSGID_TRIES + [0] * _MSGID_TRIES))
    with pytest.raises(SpoolError, match="no free message id"):
        await spool.begin()
    spool._bucket = 0
    with pytest.raises(SpoolError, match="no free message id"):
        await spool.begin()  # 0 is never a msgid


async def test_large_message_reaches_incoming_before_commit(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    writer = await txn.open_message()
    writer.write(MESSAGE * 100)
    assert len(MESSAGE) * 100 >= FLUSH_AT
    assert os.path.getsize(txn.path) >= FLUSH_AT
    await txn.abort()
    assert os.listdir(root / "incoming") == []
    assert os.listdir(bucket_path(root, txn.msgid)) == []


async def test_reopen_purges_uncommitted_and_keeps_committed(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    kept = await spool.begin()
    (await kept.open_message()).write(MESSAGE)
    await kept.commit([make_envelope(), make_envelope()])
    lost = await spool.begin()
    (await lost.open_message()).write(MESSAGE * 100)  # the daemon "dies" before commit
    assert os.path.isfile(lost.path)

    again = await Spool.open(root)
    assert again.recovery.purged == 1
    assert again.recovery.kept_messages == 1
    assert again.recovery.kept_envelopes == 2
    assert again.recovery.quarantined == []
    assert os.listdir(root / "incoming") == []
    assert await again.message_ids() == [kept.msgid]


@pytest.mark.parametrize("content", [MESSAGE, MESSAGE * 100], ids=["small", "large"])
async def test_cancelled_commit_before_publishing_leaves_nothing(
    root: pathlib.Path, content: bytes
) -> None:
    spool = await Spool.open(root)
    txn = await spool.begin()
    (await txn.open_message()).write(content)
    with trio.CancelScope() as scope:
        scope.cancel()
        await txn.commit([make_envelope()])
    assert scope.cancelled_caught
    assert os.listdir(root / "incoming") == []
    assert await spool.message_ids() == []
    assert spool.stats.failures == 1 and spool.stats.batches == 0
    with pytest.raises(RuntimeError, match="aborted"):
        await txn.commit([make_envelope()])


async def test_open_message_head_reads_the_start_and_leaves_the_rest(root: pathlib.Path) -> None:
    spool = await Spool.open(root, compression=True)
    txn = await spool.begin()
    (await txn.open_message()).write(MESSAGE)
    await txn.commit([make_envelope("a@x.org")])
    stream, head = await spool.open_message_head(txn.msgid, 30)
    with stream:
        assert head == MESSAGE[:30]
        assert head + stream.read() == MESSAGE
    with pytest.raises(SpoolNotFound):
        await spool.open_message_head(0x01020304, 30)


async def test_the_scheduler_gets_what_recovery_read_without_reading_it_again(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    first, second = await queue_message(spool, 2), await queue_message(spool, 3)
    kept, gone, *_ = evpids(spool, second)
    changed = attrs.evolve(spool.store.load_envelope(kept), retry=3, last_bounce=7)
    await spool.update_envelope(changed)
    await spool.delete_envelope(gone)
    expected = [Queued.of(envelope) for envelope in await spool.envelopes()]
    assert len(expected) == 4 and Queued.of(changed) in expected
    assert [q.id for q in expected] == sorted(evpids(spool, first) + evpids(spool, second))

    again = await Spool.open(root)
    with monkeypatch.context() as patch:
        patch.setattr(again.store, "iter_envelopes", lambda: pytest.fail("read again"))
        assert await again.queued() == expected
    assert await again.queued() == expected  # later calls read the queue
    third = await Spool.open(root)
    added = await queue_message(third, 1)  # the queue changed: recovery's list is stale
    assert [q.id for q in await third.queued()] == sorted(
        [q.id for q in expected] + evpids(third, added)
    )

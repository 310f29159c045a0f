"""Durability order and group commit."""

from __future__ import annotations

import errno
import os
import pathlib
import threading
import time
from collections.abc import Sequence

import pytest
import trio

from mta.errors import SpoolError
from mta.spool import Spool, Transaction, commit
from mta.spool.paths import SpoolPaths, bucket_of

from .conftest import make_envelope
from .recorder import Recorder

MESSAGE = b"Received: by test\r\n\r\n" + b"x" * 4000 + b"\r\n"


async def start(spool: Spool) -> Transaction:
    txn = await spool.begin()
    (await txn.open_message()).write(MESSAGE)
    return txn


async def test_durability_order_of_one_commit(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txn = await start(spool)
    recorder = Recorder(monkeypatch)
    envelopes = await txn.commit([make_envelope("a@x.org"), make_envelope("b@x.org")])
    recorder.events.append(("returned", "", None))

    work = pathlib.Path(txn.directory)
    queue = root / "queue"
    bucket = queue / bucket_of(txn.msgid)
    published = bucket / f"{txn.msgid:08x}"
    rename = recorder.index("rename", work)
    assert recorder.events[rename][2] == str(published)
    files = [work / "message", *(work / e.evpid_text for e in envelopes)]
    for path in files:
        assert recorder.fsynced(path) == 1
        assert recorder.index("fsync", path) < recorder.index("fsync", work)
    assert recorder.fsynced(work) == 1
    assert recorder.index("fsync", work) < rename
    # After the rename: the new bucket's parent, the bucket and incoming/, before returning.
    for directory in (queue, bucket, root / "incoming"):
        assert recorder.fsynced(directory) == 1
        assert rename < recorder.index("fsync", directory) < recorder.index("returned", "")
    assert len(recorder.events) == 3 + 1 + 1 + 3 + 1


async def test_existing_bucket_parent_is_not_fsynced(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txn = await start(spool)
    (root / "queue" / bucket_of(txn.msgid)).mkdir(mode=0o700)
    recorder = Recorder(monkeypatch)
    await txn.commit([make_envelope()])
    assert recorder.fsynced(root / "queue") == 0
    assert recorder.fsynced(root / "queue" / bucket_of(txn.msgid)) == 1


async def test_concurrent_commits_share_batches_and_directory_fsyncs(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txns = [await start(spool) for _ in range(50)]
    recorder = Recorder(monkeypatch)

    def slow_shared_fsync(path: str) -> None:
        if path == str(root / "incoming"):
            time.sleep(0.02)  # a slow disk: commits pile up behind the batch in flight

    recorder.before_fsync = slow_shared_fsync
    results: dict[int, list[object]] = {}

    async def one(txn: Transaction) -> None:
        results[txn.msgid] = list(await txn.commit([make_envelope()]))

    async with trio.open_nursery() as nursery:
        for txn in txns:
            nursery.start_soon(one, txn)

    stats = spool.stats
    assert len(results) == 50
    assert stats.commits == 50 and stats.failures == 0
    assert 1 <= stats.batches < stats.commits
    assert stats.max_batch > 1
    # One incoming/ fsync per batch, not per commit; bucket fsyncs at most one per bucket per batch.
    assert recorder.fsynced(root / "incoming") == stats.batches
    buckets = {bucket_of(txn.msgid) for txn in txns}
    bucket_fsyncs = sum(recorder.fsynced(root / "queue" / b) for b in buckets)
    assert len(buckets) <= 2  # consecutive transactions share a bucket
    assert bucket_fsyncs <= stats.batches * len(buckets)
    assert bucket_fsyncs < stats.commits
    # Per-transaction fsyncs are not shared: message, envelope, incoming/<msgid>.
    assert stats.file_fsyncs == 100
    assert sorted(await spool.message_ids()) == sorted(results)
    assert os.listdir(root / "incoming") == []


class Gate:
    """Holds the first publishing batch in its worker thread until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        original = commit._publish

        def gated(paths: SpoolPaths, msgids: Sequence[int]) -> commit._BatchResult:
            self.calls += 1
            if self.calls == 1:
                self.entered.set()
                self.release.wait(10)
            return original(paths, msgids)

        monkeypatch.setattr(commit, "_publish", gated)

    async def wait_entered(self) -> None:
        await trio.to_thread.run_sync(self.entered.wait, 10)


async def test_cancelled_follower_is_withdrawn(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    leader, follower = await start(spool), await start(spool)
    gate = Gate(monkeypatch)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader.commit, [make_envelope()])
        await gate.wait_entered()
        with trio.CancelScope() as scope:
            nursery.start_soon(gate_release_later, gate, scope)
            await follower.commit([make_envelope()])
    assert scope.cancelled_caught
    assert await spool.message_ids() == [leader.msgid]
    assert os.listdir(root / "incoming") == []
    later = await start(spool)
    await later.commit([make_envelope()])  # the publisher is not stuck
    assert sorted(await spool.message_ids()) == sorted([leader.msgid, later.msgid])


async def gate_release_later(gate: Gate, scope: trio.CancelScope) -> None:
    await trio.sleep(0.05)  # the follower is queued behind the gated batch
    scope.cancel()
    await trio.sleep(0.05)
    gate.release.set()


async def test_cancelled_leader_still_publishes_its_batch_and_hands_over(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    first, second = await start(spool), await start(spool)
    gate = Gate(monkeypatch)
    committed: list[int] = []

    async def commit_second() -> None:
        await second.commit([make_envelope()])
        committed.append(second.msgid)

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(commit_second_after, gate, commit_second)
            nursery.start_soon(cancel_then_release, gate, scope)
            await first.commit([make_envelope()])
    # The first commit was published (its caller was cancelled after the fact) and the
    # follower was led by someone: nothing is stuck or half-done.
    assert committed == [second.msgid]
    assert sorted(await spool.message_ids()) == sorted([first.msgid, second.msgid])
    assert os.listdir(root / "incoming") == []


async def commit_second_after(gate: Gate, commit_second: object) -> None:
    await gate.wait_entered()
    assert callable(commit_second)
    await commit_second()


async def cancel_then_release(gate: Gate, scope: trio.CancelScope) -> None:
    await gate.wait_entered()
    await trio.sleep(0.05)
    scope.cancel()
    await trio.sleep(0.05)
    gate.release.set()


async def test_a_failed_rename_fails_only_its_transaction(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    good, bad = await start(spool), await start(spool)
    rename = os.rename

    def failing_rename(source: str, target: str) -> None:
        if source == bad.directory:
            raise OSError(errno.EIO, "Input/output error", source)
        rename(source, target)

    monkeypatch.setattr(os, "rename", failing_rename)
    outcome: dict[int, object] = {}

    async def attempt(txn: Transaction) -> None:
        try:
            await txn.commit([make_envelope()])
            outcome[txn.msgid] = "ok"
        except SpoolError as exc:
            outcome[txn.msgid] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, good)
        nursery.start_soon(attempt, bad)
    assert outcome[good.msgid] == "ok"
    assert isinstance(outcome[bad.msgid], SpoolError)
    assert "Input/output error" in str(outcome[bad.msgid])
    assert await spool.message_ids() == [good.msgid]
    assert os.listdir(root / "incoming") == []
    assert spool.stats.failures == 1

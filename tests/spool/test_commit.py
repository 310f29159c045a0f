"""Durability order and group commit."""

from __future__ import annotations

import errno
import os
import pathlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest
import trio
import trio.testing

from mta.envelope import Envelope
from mta.errors import SpoolError
from mta.spool import Spool, Transaction, commit
from mta.spool.commit import CommitJob
from mta.spool.paths import SpoolPaths, bucket_of
from mta.spool.writer import FLUSH_AT
from tests.envelopes import make_envelope

from .conftest import (
    Draws,
    bucket_path,
    files_under,
    message_path,
    read_message,
)
from .recorder import Recorder

MESSAGE = b"Received: by test\r\n\r\n" + b"x" * 4000 + b"\r\n"


@pytest.fixture(autouse=True)
def one_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batching tests below reason about one batch in flight at a time;
    test_lanes_let_commits_overlap sets the lanes itself."""
    monkeypatch.setattr(commit, "LANES", 1)


async def start(spool: Spool, content: bytes = MESSAGE) -> Transaction:
    txn = await spool.begin()
    (await txn.open_message()).write(content)
    return txn


async def test_durability_order_of_one_commit(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txn = await start(spool)
    recorder = Recorder(monkeypatch)
    envelopes = await txn.commit([make_envelope("a@x.org"), make_envelope("b@x.org")])
    recorder.events.append(("returned", "", None))

    incoming = pathlib.Path(txn.path)
    queue = root / "queue"
    bucket = queue / bucket_of(txn.msgid)
    published = bucket / f"{txn.msgid:08x}"
    # The whole message (content, envelopes, trailer) is one file, fsynced once, before
    # the rename that publishes it; the rename keeps the inode that was fsynced.
    assert recorder.fsynced(incoming) == 1
    fsync = recorder.index("fsync", incoming)
    rename = recorder.index("rename", incoming)
    assert fsync < rename
    assert recorder.events[rename][2] == str(published)
    assert recorder.events[fsync][2] == published.stat().st_ino
    # After the rename: the bucket, before returning (it was made durable with the
    # spool: queue/ itself needs no fsync).
    assert recorder.fsynced(bucket) == 1
    assert rename < recorder.index("fsync", bucket) < recorder.index("returned", "")
    assert recorder.fsynced(queue) == 0
    # incoming/ is never fsynced: a name left there by a crash is purged at startup.
    assert recorder.fsynced(root / "incoming") == 0
    assert len(recorder.events) == 1 + 1 + 1 + 1
    assert spool.stats.file_fsyncs == 1 and spool.stats.dir_fsyncs == 1
    content, tail = read_message(published)
    assert content == MESSAGE
    assert len(tail.envelopes) == len(envelopes) == 2


async def test_every_bucket_exists_from_the_start(root: pathlib.Path) -> None:
    await Spool.open(root)
    assert sorted(os.listdir(root / "queue")) == [f"{n:02x}" for n in range(256)]


async def test_a_bucket_removed_by_hand_is_made_again_durably(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txn = await start(spool)
    bucket_path(root, txn.msgid).rmdir()
    recorder = Recorder(monkeypatch)
    await txn.commit([make_envelope()])
    assert recorder.fsynced(root / "queue") == 1
    assert recorder.fsynced(bucket_path(root, txn.msgid)) == 1
    assert await spool.message_ids() == [txn.msgid]


async def test_a_large_message_is_fsynced_once_at_commit(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    recorder = Recorder(monkeypatch)
    txn = await start(spool, MESSAGE * 100)  # in incoming/ before the commit
    assert os.path.getsize(txn.path) >= FLUSH_AT
    assert recorder.events == []  # written, not fsynced, while DATA arrives
    await txn.commit([make_envelope()])
    assert recorder.fsynced(txn.path) == 1
    assert recorder.index("fsync", txn.path) < recorder.index("rename", txn.path)
    assert read_message(message_path(root, txn.msgid))[0] == MESSAGE * 100


async def test_concurrent_commits_share_batches_and_directory_fsyncs(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txns = [await start(spool) for _ in range(50)]
    recorder = Recorder(monkeypatch)
    queue = root / "queue"

    def slow_shared_fsync(path: str) -> None:
        if os.path.dirname(path) == str(queue):
            time.sleep(0.02)  # a slow disk: commits pile up behind the batch in flight

    recorder.before_fsync = slow_shared_fsync
    results: dict[int, list[Envelope]] = {}

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
    # Bucket fsyncs: at most one per bucket per batch, not one per commit.
    buckets = {bucket_of(txn.msgid) for txn in txns}
    assert len(buckets) <= 2  # consecutive transactions share a bucket
    bucket_fsyncs = sum(recorder.fsynced(queue / b) for b in buckets)
    assert bucket_fsyncs <= stats.batches * len(buckets)
    assert bucket_fsyncs < stats.commits
    assert recorder.fsynced(queue) == 0  # the buckets exist from the start
    assert stats.dir_fsyncs == bucket_fsyncs
    assert recorder.fsynced(root / "incoming") == 0
    # The message file fsync is each transaction's own.
    assert stats.file_fsyncs == 50
    assert sum(recorder.fsynced(txn.path) for txn in txns) == 50
    assert sorted(await spool.message_ids()) == sorted(results)
    assert os.listdir(root / "incoming") == []


async def test_the_files_and_directories_of_a_batch_are_fsynced_side_by_side(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    first = await start(spool)
    piled = [await start(spool) for _ in range(8)]
    gate = Gate(monkeypatch)
    recorder = Recorder(monkeypatch)
    queue = root / "queue"
    # every fsync of the second batch waits for the others of its kind: one after
    # the other, the first would time out and fail the batch
    files = threading.Barrier(len(piled), timeout=10)
    buckets = {bucket_of(txn.msgid) for txn in piled}
    directories = threading.Barrier(len(buckets), timeout=10)

    def together(path: str) -> None:
        if gate.calls < 2:
            return
        if os.path.dirname(path) == str(root / "incoming"):
            files.wait()
        elif os.path.dirname(path) == str(queue):
            directories.wait()

    recorder.before_fsync = together
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.commit, [make_envelope()])
        await gate.wait_entered()
        for txn in piled:
            nursery.start_soon(txn.commit, [make_envelope()])
        await trio.sleep(0.05)  # all piled up behind the first batch
        gate.release.set()
    assert len(gate.batches) == 2 and len(gate.batches[1]) == len(piled)
    assert spool.stats.failures == 0
    assert sorted(await spool.message_ids()) == sorted(t.msgid for t in [first, *piled])


async def test_batches_are_bounded(root: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit, "MAX_BATCH", 3)
    spool = await Spool.open(root)
    txns = [await start(spool) for _ in range(10)]
    async with trio.open_nursery() as nursery:
        for txn in txns:
            nursery.start_soon(txn.commit, [make_envelope()])
    assert spool.stats.commits == 10
    assert spool.stats.max_batch <= 3
    assert spool.stats.batches >= 4
    assert len(await spool.message_ids()) == 10


class Gate:
    """Holds publishing batches number ``held`` (1 is the first) in their worker
    thread until each is released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, held: Sequence[int] = (1,)) -> None:
        self.entered = {number: threading.Event() for number in held}
        self.released = {number: threading.Event() for number in held}
        self.calls = 0
        self.batches: list[list[int]] = []
        original = commit._publish

        def gated(
            paths: SpoolPaths, jobs: Sequence[CommitJob], unsure: commit._Unsure
        ) -> commit._BatchResult:
            self.calls += 1
            number = self.calls
            self.batches.append([job.msgid for job in jobs])
            if number in self.entered:
                self.entered[number].set()
                self.released[number].wait(10)
            return original(paths, jobs, unsure)

        monkeypatch.setattr(commit, "_publish", gated)

    @property
    def release(self) -> threading.Event:
        """The release of the first held batch."""
        return self.released[min(self.released)]

    async def wait_entered(self, number: int = 1) -> None:
        await trio.to_thread.run_sync(self.entered[number].wait, 10)


@pytest.mark.parametrize("content", [MESSAGE, MESSAGE * 100], ids=["small", "large"])
async def test_cancelled_follower_is_withdrawn(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    spool = await Spool.open(root)
    leader, follower = await start(spool), await start(spool, content)
    gate = Gate(monkeypatch)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader.commit, [make_envelope()])
        await gate.wait_entered()
        with trio.CancelScope() as scope:
            nursery.start_soon(gate_release_later, gate, scope)
            await follower.commit([make_envelope()])
    assert scope.cancelled_caught
    assert gate.batches == [[leader.msgid]]  # the follower never reached a batch
    assert await spool.message_ids() == [leader.msgid]
    assert os.listdir(root / "incoming") == []
    assert spool.stats.failures == 1
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
    assert spool.stats.failures == 0


async def commit_second_after(gate: Gate, commit_second: Callable[[], Awaitable[None]]) -> None:
    await gate.wait_entered()
    await commit_second()


async def cancel_then_release(gate: Gate, scope: trio.CancelScope) -> None:
    await gate.wait_entered()
    await trio.sleep(0.05)
    scope.cancel()
    await trio.sleep(0.05)
    gate.release.set()


async def test_cancelled_follower_already_in_a_batch_is_committed(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower cancelled once its job is in a batch waits for the batch, and the
    message it published is committed: its id stays taken, nothing counts it failed."""
    spool = await Spool.open(root)
    txns = [await start(spool) for _ in range(3)]
    first, second, third = txns
    gate = Gate(monkeypatch, held=(1, 2))
    outcome: dict[str, object] = {}

    async def commit_third(scope: trio.CancelScope) -> None:
        with scope:
            outcome["third"] = await third.commit([make_envelope()])

    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.commit, [make_envelope()])
        await gate.wait_entered(1)
        nursery.start_soon(second.commit, [make_envelope()])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(commit_third, scope)
        await trio.testing.wait_all_tasks_blocked()
        gate.released[1].set()
        await gate.wait_entered(2)  # second leads a batch holding third
        assert gate.batches == [[first.msgid], [second.msgid, third.msgid]]
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        gate.released[2].set()
    assert "third" in outcome  # its commit returned: the message is in the queue
    assert sorted(await spool.message_ids()) == sorted(t.msgid for t in (first, second, third))
    assert spool.stats.commits == 3 and spool.stats.failures == 0
    # Its id is not handed out again while it is queued.
    free = next(low for low in range(1, 5) if all(t.msgid & 0xFFFFFF != low for t in txns))
    monkeypatch.setattr(spool, "_random", Draws([third.msgid & 0xFFFFFF] * 3 + [free]))
    assert (await spool.begin()).msgid == (third.msgid >> 24) << 24 | free


async def test_a_failed_rename_fails_only_its_transaction(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    good, bad = await start(spool), await start(spool)
    rename = os.rename

    def failing_rename(source: str, target: str) -> None:
        if source == bad.path:
            raise OSError(errno.EIO, "Input/output error", source)
        rename(source, target)

    monkeypatch.setattr(os, "rename", failing_rename)
    outcome = await attempt_all([good, bad])
    assert outcome[good.msgid] == "ok"
    assert isinstance(outcome[bad.msgid], SpoolError)
    assert "Input/output error" in str(outcome[bad.msgid])
    assert await spool.message_ids() == [good.msgid]
    assert os.listdir(root / "incoming") == []
    assert spool.stats.failures == 1


async def attempt_all(
    txns: Sequence[Transaction], before: Transaction | None = None, gate: Gate | None = None
) -> dict[int, object]:
    """Commit ``txns`` concurrently: msgid -> "ok" or the SpoolError raised.  With
    ``before`` and ``gate``: ``before`` is committed first and held in its batch so
    that ``txns`` all wait, then make one batch."""
    outcome: dict[int, object] = {}

    async def attempt(txn: Transaction) -> None:
        try:
            await txn.commit([make_envelope()])
            outcome[txn.msgid] = "ok"
        except SpoolError as exc:
            outcome[txn.msgid] = exc

    async with trio.open_nursery() as nursery:
        if before is not None and gate is not None:
            nursery.start_soon(attempt, before)
            await gate.wait_entered()
        for txn in txns:
            nursery.start_soon(attempt, txn)
        if gate is not None:
            await trio.testing.wait_all_tasks_blocked()
            gate.release.set()
    return outcome


async def test_a_failed_write_fails_only_its_transaction(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    lead, first, bad, last = [await start(spool) for _ in range(4)]
    gate = Gate(monkeypatch)
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") == bad.path:
            raise OSError(errno.EIO, "Input/output error")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    outcome = await attempt_all([first, bad, last], lead, gate)
    assert {frozenset(batch) for batch in gate.batches} == {
        frozenset([lead.msgid]),
        frozenset([first.msgid, bad.msgid, last.msgid]),
    }
    assert outcome[lead.msgid] == outcome[first.msgid] == outcome[last.msgid] == "ok"
    assert "Input/output error" in str(outcome[bad.msgid])
    assert sorted(await spool.message_ids()) == sorted([lead.msgid, first.msgid, last.msgid])
    assert os.listdir(root / "incoming") == []


async def test_a_failed_bucket_fsync_fails_only_that_bucket(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    lead, good = await start(spool), await start(spool)
    spool._bucket_left = 0  # the next transaction goes to the next bucket
    bad = await start(spool)
    assert bucket_of(good.msgid) != bucket_of(bad.msgid)
    recorder = Recorder(monkeypatch)

    def failing_bucket(path: str) -> None:
        if path == str(bucket_path(root, bad.msgid)):
            raise OSError(errno.EIO, "Input/output error", path)

    recorder.before_fsync = failing_bucket
    gate = Gate(monkeypatch)
    outcome = await attempt_all([good, bad], lead, gate)
    assert sorted(gate.batches[1]) == sorted([good.msgid, bad.msgid])
    assert outcome[lead.msgid] == outcome[good.msgid] == "ok"
    assert "syncing queue directory" in str(outcome[bad.msgid])
    # Renamed but not known durable: taken back out of the queue.
    assert sorted(await spool.message_ids()) == sorted([lead.msgid, good.msgid])
    assert files_under(root / "queue") == sorted(
        f"{bucket_of(t.msgid)}/{t.msgid:08x}" for t in (lead, good)
    )
    assert spool.stats.commits == 2 and spool.stats.failures == 1


async def test_a_bug_while_publishing_fails_the_batch_and_takes_it_back(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    txns = [await start(spool), await start(spool, MESSAGE * 100)]

    def broken(path: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(commit, "fsync_dir", broken)  # after the renames
    outcome = await attempt_all(txns)
    assert all("publishing failed" in str(outcome[txn.msgid]) for txn in txns)
    assert files_under(root / "queue") == [] and os.listdir(root / "incoming") == []
    monkeypatch.undo()
    later = await start(spool)
    await later.commit([make_envelope()])  # the publisher keeps going
    assert await spool.message_ids() == [later.msgid]


async def test_lanes_let_commits_overlap(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two lanes a second commit starts at once beside a slow first batch; a
    third waits for a lane, then leads a batch of everything that waited."""
    monkeypatch.setattr(commit, "LANES", 2)
    spool = await Spool.open(root)
    txns = [await start(spool) for _ in range(4)]
    first, second, third, fourth = txns
    gate = Gate(monkeypatch, held=(1, 2))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.commit, [make_envelope()])
        await gate.wait_entered(1)
        nursery.start_soon(second.commit, [make_envelope()])
        await gate.wait_entered(2)  # both batches are in their threads at once
        nursery.start_soon(third.commit, [make_envelope()])
        nursery.start_soon(fourth.commit, [make_envelope()])
        await trio.testing.wait_all_tasks_blocked()
        assert gate.calls == 2  # no lane free: they wait
        gate.released[2].set()
        await trio.testing.wait_all_tasks_blocked()
        gate.released[1].set()
    assert [sorted(batch) for batch in gate.batches] == [
        [first.msgid],
        [second.msgid],
        sorted([third.msgid, fourth.msgid]),
    ]
    assert spool.stats.commits == 4 and spool.stats.batches == 3
    assert sorted(await spool.message_ids()) == sorted(t.msgid for t in txns)

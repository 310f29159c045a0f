"""The read / update side of the spool (what the scheduler and deliveries call)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib
import threading

import attrs
import pytest

from mta.envelope import Envelope
from mta.errors import CorruptEnvelope, CorruptMessage, SpoolNotFound
from mta.spool import Spool, store
from mta.spool.paths import SpoolPaths
from tests.envelopes import make_envelope

from .conftest import (
    KEY,
    bucket_path,
    encode_content,
    envelope_path,
    every_checked_setting,
    every_setting,
    files_under,
    forget,
    message_file,
    message_path,
    read_message,
    rewrite_message,
    seal_envelope,
    snapshot,
)
from .recorder import Recorder
from .test_msgfile import forge, framed

MESSAGE = b"Received: by test\r\nSubject: s\r\n\r\n" + b"body line\r\n" * 300


async def queue_message(spool: Spool, content: bytes = MESSAGE, rcpts: int = 2) -> list[int]:
    txn = await spool.begin()
    (await txn.open_message()).write(content)
    envelopes = await txn.commit([make_envelope(f"r{n}@example.org") for n in range(rcpts)])
    return [envelope.id for envelope in envelopes]


@every_setting
async def test_listing_and_loading(
    root: pathlib.Path, compression: bool, key: bytes | None
) -> None:
    spool = await Spool.open(root, compression=compression, key=key)
    first = await queue_message(spool)
    second = await queue_message(spool, rcpts=1)
    msgids = sorted({evpid >> 32 for evpid in first + second})
    assert await spool.message_ids() == msgids
    envelopes = await spool.envelopes()
    assert sorted(e.id for e in envelopes) == sorted(first + second)
    for envelope in envelopes:
        assert await spool.load_envelope(envelope.id) == envelope
    assert spool.store.envelope_ids(first[0] >> 32) == sorted(first)
    assert spool.store.envelope_ids(1) == []  # no such message


async def test_listing_ignores_what_is_not_a_message(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    (evpid, _) = await queue_message(spool)
    msgid = evpid >> 32
    bucket = bucket_path(root, msgid)
    await spool.update_envelope(await spool.load_envelope(evpid))  # an envelope file
    (bucket / f"{msgid:08x}.1234.tmp").write_bytes(b"")
    (bucket / "README").write_bytes(b"")
    other = (msgid + (1 << 24)) & 0xFFFFFFFF or 1
    (bucket / f"{other:08x}").write_bytes(b"in the wrong bucket")
    (root / "queue" / "zz").mkdir()
    assert await spool.message_ids() == [msgid]
    assert len(await spool.envelopes()) == 2


def test_parse_entry() -> None:
    assert store.parse_entry("0a000001") == (0x0A000001, None)
    assert store.parse_entry("0a00000100000002") == (None, 0x0A000001_00000002)
    for name in ("0a000001.v1", "0a000001.tmp", "message", "00000000", "0a00000100000000"):
        assert store.parse_entry(name) == (None, None)


async def test_update_envelope_is_durable_and_atomic(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root, compression=True, key=KEY)
    evpid, _other = await queue_message(spool)
    envelope = await spool.load_envelope(evpid)
    changed = attrs.evolve(envelope, retry=3, errorline="421 try later\r\ninjected: yes")
    recorder = Recorder(monkeypatch)
    await spool.update_envelope(changed)
    assert await spool.load_envelope(evpid) == changed
    bucket = bucket_path(root, evpid >> 32)
    renames = [event for event in recorder.events if event[0] == "rename"]
    assert len(renames) == 1
    source, target = str(renames[0][1]), str(renames[0][2])
    assert target == str(envelope_path(root, evpid))
    assert source.endswith(".tmp") and os.path.dirname(source) == str(bucket)
    assert recorder.index("fsync", source) < recorder.index("rename", source)
    assert recorder.index("rename", source) < recorder.index("fsync", bucket)
    assert len(recorder.events) == 3
    assert not [name for name in os.listdir(bucket) if name.endswith(".tmp")]


@every_setting
async def test_an_envelope_file_supersedes_the_committed_copy(
    root: pathlib.Path, compression: bool, key: bytes | None
) -> None:
    spool = await Spool.open(root, compression=compression, key=key)
    evpid, other = await queue_message(spool)
    msgid = evpid >> 32
    committed = message_path(root, msgid).read_bytes()
    original = await spool.load_envelope(evpid)
    first = attrs.evolve(original, retry=1)
    await spool.update_envelope(first)
    second = attrs.evolve(original, retry=2, errorline="later")
    await spool.update_envelope(second)
    assert message_path(root, msgid).read_bytes() == committed  # never rewritten
    assert store.read_envelope_file(str(envelope_path(root, evpid)), key, evpid) == second
    assert not envelope_path(root, other).exists()
    assert await spool.load_envelope(evpid) == second
    assert sorted(await spool.envelopes(), key=lambda e: e.id) == sorted(
        [second, await spool.load_envelope(other)], key=lambda e: e.id
    )
    # A reopened spool (recovery) keeps the change.
    again = await Spool.open(root, compression=compression, key=key)
    assert again.recovery.quarantined == []
    assert await again.load_envelope(evpid) == second


async def test_update_of_a_missing_envelope(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    evpid, _ = await queue_message(spool)
    envelope = await spool.load_envelope(evpid)
    await spool.delete_envelope(evpid)
    with pytest.raises(SpoolNotFound):
        await spool.update_envelope(envelope)
    unknown = attrs.evolve(envelope, id=evpid ^ 1)
    with pytest.raises(SpoolNotFound):
        await spool.update_envelope(unknown)  # its message has no such envelope
    other_message = attrs.evolve(envelope, msgid=1, id=1 << 32 | 1)
    with pytest.raises(SpoolNotFound):
        await spool.update_envelope(other_message)  # no such message
    assert not [p for p in bucket_path(root, evpid >> 32).iterdir() if p.name.endswith(".tmp")]
    assert not envelope_path(root, evpid ^ 1).exists()


async def test_an_empty_envelope_file_hides_the_envelope(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    hidden, kept = await queue_message(spool)
    envelope = await spool.load_envelope(hidden)
    envelope_path(root, hidden).write_bytes(b"")  # what a deletion leaves
    with pytest.raises(SpoolNotFound):
        await spool.load_envelope(hidden)
    assert [e.id for e in await spool.envelopes()] == [kept]
    assert spool.store.envelope_ids(hidden >> 32) == [kept]
    with pytest.raises(SpoolNotFound):
        await spool.update_envelope(envelope)
    with pytest.raises(SpoolNotFound):
        await spool.delete_envelope(hidden)
    assert envelope_path(root, hidden).read_bytes() == b""


async def test_delete_envelopes_then_the_message(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    first, second, third = await queue_message(spool, rcpts=3)
    msgid = first >> 32
    await spool.update_envelope(attrs.evolve(await spool.load_envelope(third), retry=1))
    assert await spool.delete_envelope(first) is False
    assert message_path(root, msgid).is_file()
    assert envelope_path(root, first).read_bytes() == b""  # deleted: empty
    with pytest.raises(SpoolNotFound):
        await spool.load_envelope(first)
    with pytest.raises(SpoolNotFound):
        await spool.delete_envelope(first)
    assert await spool.delete_envelope(third) is False
    assert envelope_path(root, third).read_bytes() == b""
    assert [e.id for e in await spool.envelopes()] == [second]
    assert await spool.delete_envelope(second) is True
    # The message file and every envelope file are gone.
    assert os.listdir(bucket_path(root, msgid)) == []
    assert await spool.message_ids() == []
    assert await spool.envelopes() == []
    with pytest.raises(SpoolNotFound):
        await spool.open_message(msgid)
    with pytest.raises(SpoolNotFound):
        await spool.delete_envelope(second)
    with pytest.raises(SpoolNotFound):
        await spool.load_envelope(second)


async def test_deleting_one_envelope_does_not_sync(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    first, second = await queue_message(spool)
    recorder = Recorder(monkeypatch)
    await spool.delete_envelope(first)
    await spool.delete_envelope(second)
    assert [event[0] for event in recorder.events] == ["rename"]  # the empty file: no fsync


def _store_with(root: pathlib.Path, *messages: tuple[int, int]) -> store.Store:
    """A store holding message files written by hand: (msgid, envelope count),
    the envelope ids ``msgid << 32 | 1`` and on."""
    paths = SpoolPaths(root)
    paths.create()
    content = encode_content(MESSAGE, compress=False, key=None)
    for msgid, count in messages:
        blobs = [
            seal_envelope(make_envelope(msgid=msgid, id=msgid << 32 | n))
            for n in range(1, count + 1)
        ]
        bucket_path(root, msgid).mkdir(exist_ok=True)
        message_path(root, msgid).write_bytes(message_file(content, blobs))
    return store.Store(paths, compress=False, key=None)


def test_concurrent_deletes_of_the_last_envelopes(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads delete the two last envelopes of one message: one of them removes
    the message.  Without the store's lock both would only mark their envelope."""
    root = tmp_path / "spool"
    msgid = 0x0A000001
    envelopes = [make_envelope(msgid=msgid, id=msgid << 32 | n) for n in (1, 2)]
    states = _store_with(root, (msgid, 2))
    both_read = threading.Barrier(2)
    real = store.Store._committed

    def meet(self: store.Store, msgid: int) -> dict[int, Envelope]:
        result = real(self, msgid)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait(timeout=0.2)  # meet the other thread, if it can get here
        return result

    monkeypatch.setattr(store.Store, "_committed", meet)
    results: dict[int, bool] = {}

    def delete(evpid: int) -> None:
        results[evpid] = states.delete_envelope(evpid)

    threads = [threading.Thread(target=delete, args=(e.id,)) for e in envelopes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results.values()) == [False, True]
    assert os.listdir(bucket_path(root, msgid)) == []


def test_deletes_of_different_messages_run_in_parallel(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal records a finished delivery: it never waits for the removal of
    another message (each thread waits inside for the other to come in)."""
    first, second = 0x0A000001, 0x0A000002  # different locks
    assert first % store.LOCK_STRIPES != second % store.LOCK_STRIPES
    states = _store_with(tmp_path / "spool", (first, 1), (second, 1))
    both_inside = threading.Barrier(2, timeout=5)
    real = store.Store._committed

    def meet(self: store.Store, msgid: int) -> dict[int, Envelope]:
        result = real(self, msgid)
        both_inside.wait()
        return result

    monkeypatch.setattr(store.Store, "_committed", meet)
    results: dict[int, bool | Exception] = {}

    def delete(evpid: int) -> None:
        try:
            results[evpid] = states.delete_envelope(evpid)
        except Exception as exc:
            results[evpid] = exc

    threads = [threading.Thread(target=delete, args=(m << 32 | 1,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {first << 32 | 1: True, second << 32 | 1: True}
    assert states.message_ids() == []


@every_setting
async def test_large_messages_stream_and_are_verified_first(
    root: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    compression: bool,
    key: bytes | None,
) -> None:
    monkeypatch.setattr(store, "IN_MEMORY_LIMIT", 1000)
    spool = await Spool.open(root, compression=compression, key=key)
    content = b"Received: x\r\n\r\n" + os.urandom(300_000)
    (evpid, *_) = await queue_message(spool, content)
    with await spool.open_message(evpid >> 32) as stream:
        assert not isinstance(stream, io.BytesIO)
        parts = []
        while chunk := stream.read(7777):
            parts.append(chunk)
    assert b"".join(parts) == content


@pytest.mark.parametrize("limit", [1000, store.IN_MEMORY_LIMIT])
@pytest.mark.parametrize(
    "content",
    [MESSAGE, b"", MESSAGE * 1000, b"\x01 looks encrypted", b"\x1f\x8b looks gzip'd"],
    ids=["small", "empty", "large", "ambiguous-1", "ambiguous-2"],
)
async def test_open_message_returns_exactly_the_content(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch, limit: int, content: bytes
) -> None:
    """Raw content is read in place; the envelope section after it is never handed out."""
    monkeypatch.setattr(store, "IN_MEMORY_LIMIT", limit)
    spool = await Spool.open(root)
    (evpid, *_) = await queue_message(spool, content)
    with await spool.open_message(evpid >> 32) as stream:
        assert stream.read() == content
        assert stream.read() == b""
    with await spool.open_message(evpid >> 32) as stream:
        parts = []
        while chunk := stream.read(333):
            parts.append(chunk)
    assert b"".join(parts) == content


@every_setting
async def test_every_setting_reads_back_exactly(
    root: pathlib.Path, compression: bool, key: bytes | None
) -> None:
    spool = await Spool.open(root, compression=compression, key=key)
    for content in (b"", b"x", MESSAGE):
        (evpid, *_) = await queue_message(spool, content)
        with await spool.open_message(evpid >> 32) as stream:
            assert stream.read() == content


@pytest.mark.parametrize("limit", [1000, store.IN_MEMORY_LIMIT])
@every_checked_setting
async def test_a_damaged_message_is_refused_before_any_content(
    root: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    limit: int,
    compression: bool,
    key: bytes | None,
) -> None:
    monkeypatch.setattr(store, "IN_MEMORY_LIMIT", limit)
    spool = await Spool.open(root, compression=compression, key=key)
    (evpid, *_) = await queue_message(spool, MESSAGE * 10)
    path = message_path(root, evpid >> 32)
    data = bytearray(path.read_bytes())
    length = spool.store.message_size(evpid >> 32)
    data[length - 3] ^= 0x40  # the GCM tag or the gzip trailer: detectable only at the very end
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptMessage):
        await spool.open_message(evpid >> 32)


async def test_a_damaged_trailer_or_section_is_refused(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    (evpid, _) = await queue_message(spool)
    msgid = evpid >> 32
    path = message_path(root, msgid)
    data = bytearray(path.read_bytes())
    data[len(MESSAGE) + 10] ^= 0x01  # in the envelope section
    path.write_bytes(bytes(data))
    forget(spool, msgid)
    with pytest.raises(CorruptMessage, match="checksum"):
        await spool.open_message(msgid)
    with pytest.raises(CorruptMessage, match="checksum"):
        await spool.load_envelope(evpid)
    with pytest.raises(CorruptMessage):
        spool.store.message_size(msgid)
    path.write_bytes(bytes(data[:-1]))  # truncated
    forget(spool, msgid)
    with pytest.raises(CorruptMessage, match="no trailer"):
        await spool.open_message(msgid)
    with pytest.raises(CorruptMessage, match="no trailer"):
        await spool.delete_envelope(evpid)


async def test_stream_reader_rechecks_while_reading(root: pathlib.Path) -> None:
    spool = await Spool.open(root, key=KEY)
    (evpid, *_) = await queue_message(spool, MESSAGE * 100)
    data = bytearray(read_message(message_path(root, evpid >> 32))[0])
    data[-1] ^= 1
    reader = store._DecodedReader(io.BytesIO(bytes(data)), len(data), KEY)
    with pytest.raises(CorruptMessage):
        while reader.read(4096):
            pass
    reader.close()


# -- the content CRC: a damaged content is refused, raw too ----------------------

LONG_MESSAGE = b"Subject: crc\r\nFrom: a@example.org\r\n\r\n" + b"body line\r\n" * 30_000


def flip_byte(path: pathlib.Path, position: int) -> None:
    with open(path, "r+b") as file:  # in place, as a bad disk would (same inode)
        file.seek(position)
        byte = file.read(1)
        file.seek(position)
        file.write(bytes([byte[0] ^ 0x20]))


@pytest.mark.parametrize("in_memory", [True, False], ids=["read-once", "two-passes"])
@every_setting
async def test_a_flipped_byte_anywhere_in_the_content_is_refused(
    root: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    compression: bool,
    key: bytes | None,
    in_memory: bool,
) -> None:
    """Headers, body, first or last byte, in every setting: CorruptMessage when
    the message is opened, so no reader gets a byte of it."""
    if not in_memory:
        monkeypatch.setattr(store, "IN_MEMORY_LIMIT", 100)
        monkeypatch.setattr(store, "RAW_IN_MEMORY_LIMIT", 100)
    spool = await Spool.open(root, compression=compression, key=key)
    (evpid, *_) = await queue_message(spool, LONG_MESSAGE)
    msgid = evpid >> 32
    path = message_path(root, msgid)
    length = spool.store.message_size(msgid)
    original = path.read_bytes()
    for position in (0, 5, 40, length // 2, length - 1):
        flip_byte(path, position)
        with pytest.raises(CorruptMessage, match="content checksum mismatch"):
            await spool.open_message(msgid)
        with pytest.raises(CorruptMessage):
            await spool.open_message_head(msgid, 100)
        path.write_bytes(original)
    with await spool.open_message(msgid) as stream:
        assert stream.read() == LONG_MESSAGE


async def test_raw_content_changed_after_it_was_opened_is_refused_at_its_end(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large raw message is checked, then streamed: a change in between makes the
    stream fail before its last bytes, so no reader can complete the message."""
    monkeypatch.setattr(store, "RAW_IN_MEMORY_LIMIT", 1000)
    spool = await Spool.open(root)
    (evpid, *_) = await queue_message(spool, LONG_MESSAGE)
    path = message_path(root, evpid >> 32)
    stream = await spool.open_message(evpid >> 32)
    flip_byte(path, len(LONG_MESSAGE) // 2)
    received = bytearray()
    with pytest.raises(CorruptMessage, match="content checksum mismatch"):
        while chunk := stream.read(4096):
            received += chunk
    stream.close()
    assert len(received) < len(LONG_MESSAGE)
    flip_byte(path, len(LONG_MESSAGE) // 2)  # back as it was
    stream = await spool.open_message(evpid >> 32)
    os.truncate(path, 1000)  # shrunk under the reader
    with pytest.raises(CorruptMessage, match="truncated"):
        stream.read()
    stream.close()


async def test_a_version_1_message_file_still_reads(root: pathlib.Path) -> None:
    """A queue written before the content CRC: read as it is, its raw content
    unchecked (nothing to check it against), its gzip content by its own CRC."""
    paths = SpoolPaths(root)
    paths.create()
    for msgid, compress in ((0x0C000001, False), (0x0C000002, True)):
        content = encode_content(MESSAGE, compress=compress, key=None)
        blob = seal_envelope(make_envelope(msgid=msgid, id=msgid << 32 | 1))
        bucket_path(root, msgid).mkdir(exist_ok=True)
        message_path(root, msgid).write_bytes(forge(content, framed(blob), count=1, version=1))
    spool = await Spool.open(root)
    assert spool.recovery.kept_messages == 2 and spool.recovery.quarantined == []
    for msgid in (0x0C000001, 0x0C000002):
        with await spool.open_message(msgid) as stream:
            assert stream.read() == MESSAGE
    flip_byte(message_path(root, 0x0C000002), 30)
    with pytest.raises(CorruptMessage, match="gzip"):
        await spool.open_message(0x0C000002)


async def test_corrupt_envelope_file_on_load_and_skipped_in_listing(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    bad, good = await queue_message(spool)
    await spool.update_envelope(attrs.evolve(await spool.load_envelope(bad), retry=1))
    path = envelope_path(root, bad)
    path.write_bytes(path.read_bytes().replace(b'"dispatcher":"relay"', b'"dispatcher":"local"'))
    with pytest.raises(CorruptEnvelope, match="checksum"):
        await spool.load_envelope(bad)
    with caplog.at_level(logging.WARNING, logger="mta.spool"):
        assert [e.id for e in await spool.envelopes()] == [good]
    assert f"evpid={bad:016x}" in caplog.text


async def test_corrupt_envelope_in_the_message_skips_the_message(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    bad, good = await queue_message(spool)
    (other, *_) = await queue_message(spool, rcpts=1)
    path = message_path(root, bad >> 32)
    _content, tail = read_message(path)
    blobs = [
        blob.replace(b'"dispatcher":"relay"', b'"dispatcher":"local"') for blob in tail.envelopes
    ]
    rewrite_message(path, sealed=blobs)  # a valid trailer around damaged envelopes
    forget(spool, bad >> 32)
    with pytest.raises(CorruptEnvelope, match="checksum"):
        await spool.load_envelope(good)
    with caplog.at_level(logging.WARNING, logger="mta.spool"):
        assert [e.id for e in await spool.envelopes()] == [other]
    assert f"msgid={bad >> 32:08x}" in caplog.text


async def test_envelope_file_holding_another_envelope(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    first, second = await queue_message(spool)
    await spool.update_envelope(await spool.load_envelope(second))
    os.replace(envelope_path(root, second), envelope_path(root, first))
    with pytest.raises(CorruptEnvelope, match="holds envelope"):
        await spool.load_envelope(first)


async def test_message_holding_an_envelope_of_another_message(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    (evpid, _) = await queue_message(spool)
    (foreign,) = await queue_message(spool, rcpts=1)
    stranger = await spool.load_envelope(foreign)
    rewrite_message(message_path(root, evpid >> 32), sealed=[seal_envelope(stranger)])
    forget(spool, evpid >> 32)
    with pytest.raises(CorruptEnvelope, match="in message"):
        spool.store.envelope_ids(evpid >> 32)
    with pytest.raises(CorruptEnvelope, match="in message"):
        await spool.load_envelope(evpid)
    assert await spool.load_envelope(foreign) == stranger  # its own message is fine


async def test_quarantine_moves_the_whole_message(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    (evpid, other) = await queue_message(spool)
    (neighbour, *_) = await queue_message(spool)
    msgid = evpid >> 32
    assert neighbour >> 56 == msgid >> 24  # the same bucket
    await spool.update_envelope(attrs.evolve(await spool.load_envelope(evpid), retry=1))
    await spool.delete_envelope(other)
    before = {
        name: data
        for name, data in snapshot(bucket_path(root, msgid)).items()
        if name.startswith(f"{msgid:08x}")
    }
    assert sorted(before) == sorted([f"{msgid:08x}", f"{evpid:016x}", f"{other:016x}"])
    with caplog.at_level(logging.WARNING, logger="mta.spool"):
        target = await spool.quarantine(msgid, "operator said so\nforged: line")
    assert pathlib.Path(target) == root / "corrupt" / f"{msgid:08x}"
    assert snapshot(pathlib.Path(target)) == before  # moved whole, never altered
    assert read_message(pathlib.Path(target) / f"{msgid:08x}")[0] == MESSAGE
    assert await spool.message_ids() == [neighbour >> 32]
    assert files_under(bucket_path(root, msgid)) == [f"{neighbour >> 32:08x}"]
    with pytest.raises(SpoolNotFound):
        await spool.load_envelope(evpid)
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert 'reason="operator said so\\nforged: line"' in record.getMessage()
    with pytest.raises(SpoolNotFound):
        await spool.quarantine(msgid, "again")
    # A second quarantine of the same msgid never overwrites the first.
    (again, *_) = await queue_message(spool)
    os.rename(message_path(root, again >> 32), message_path(root, msgid))
    assert await spool.quarantine(msgid, "again") == f"{target}.1"


@every_setting
async def test_message_size_is_the_encoded_content_length(
    root: pathlib.Path, compression: bool, key: bytes | None
) -> None:
    spool = await Spool.open(root, compression=compression, key=key)
    (evpid, _) = await queue_message(spool)
    size = spool.store.message_size(evpid >> 32)
    assert size == len(read_message(message_path(root, evpid >> 32))[0])
    assert (size == len(MESSAGE)) == (not compression and key is None)
    assert size < message_path(root, evpid >> 32).stat().st_size  # not the envelopes
    with pytest.raises(SpoolNotFound):
        spool.store.message_size(1)


def test_store_on_a_stopped_daemon_spool(root: pathlib.Path) -> None:
    """mtactl's view: the same queue, read synchronously."""
    paths = SpoolPaths(root)
    paths.create()
    msgid = 0x0B000001
    envelopes = [make_envelope(msgid=msgid, id=msgid << 32 | n) for n in (7, 3)]
    content = encode_content(MESSAGE, compress=True, key=KEY)
    blobs = [seal_envelope(e, compress=True, key=KEY) for e in envelopes]
    bucket_path(root, msgid).mkdir(exist_ok=True)
    message_path(root, msgid).write_bytes(message_file(content, blobs))
    states = store.Store(paths, compress=False, key=KEY)  # other settings read back too
    assert states.message_ids() == [msgid]
    assert states.envelope_ids(msgid) == [msgid << 32 | 3, msgid << 32 | 7]
    loaded: list[Envelope] = list(states.iter_envelopes())
    assert sorted(loaded, key=lambda e: e.id) == sorted(envelopes, key=lambda e: e.id)
    with states.open_message(msgid) as stream:
        assert stream.read() == MESSAGE

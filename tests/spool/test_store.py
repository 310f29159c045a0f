"""The read / update side of the spool (what the scheduler and deliveries call)."""

from __future__ import annotations

import io
import logging
import os
import pathlib

import attrs
import pytest

from mta.errors import CorruptEnvelope, CorruptMessage, SpoolNotFound
from mta.spool import Spool, store
from mta.spool.paths import bucket_of

from .conftest import KEY, make_envelope
from .recorder import Recorder

SETTINGS = [(False, None), (True, None), (False, KEY), (True, KEY)]
MESSAGE = b"Received: by test\r\nSubject: s\r\n\r\n" + b"body line\r\n" * 300


async def queue_message(spool: Spool, content: bytes = MESSAGE, rcpts: int = 2) -> list[int]:
    txn = await spool.begin()
    (await txn.open_message()).write(content)
    envelopes = await txn.commit([make_envelope(f"r{n}@example.org") for n in range(rcpts)])
    return [envelope.id for envelope in envelopes]


def message_dir(root: pathlib.Path, msgid: int) -> pathlib.Path:
    return root / "queue" / bucket_of(msgid) / f"{msgid:08x}"


@pytest.mark.parametrize(("compression", "key"), SETTINGS)
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
    directory = message_dir(root, evpid >> 32)
    renames = [event for event in recorder.events if event[0] == "rename"]
    assert len(renames) == 1
    source, target = str(renames[0][1]), str(renames[0][2])
    assert target == str(directory / f"{evpid:016x}")
    assert source.endswith(".tmp") and os.path.dirname(source) == str(directory)
    assert recorder.index("fsync", source) < recorder.index("rename", source)
    assert recorder.index("rename", source) < recorder.index("fsync", directory)
    assert not [name for name in os.listdir(directory) if name.endswith(".tmp")]


async def test_update_of_a_missing_envelope(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    evpid, _ = await queue_message(spool)
    envelope = await spool.load_envelope(evpid)
    await spool.delete_envelope(evpid)
    with pytest.raises(SpoolNotFound):
        await spool.update_envelope(envelope)
    assert not [p for p in message_dir(root, evpid >> 32).iterdir() if p.name.endswith(".tmp")]


async def test_delete_envelopes_then_the_message(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    first, second = await queue_message(spool)
    msgid = first >> 32
    assert await spool.delete_envelope(first) is False
    assert message_dir(root, msgid).is_dir()
    with pytest.raises(SpoolNotFound):
        await spool.load_envelope(first)
    with pytest.raises(SpoolNotFound):
        await spool.delete_envelope(first)
    assert await spool.delete_envelope(second) is True
    assert not message_dir(root, msgid).exists()
    assert await spool.message_ids() == []
    with pytest.raises(SpoolNotFound):
        await spool.open_message(msgid)


@pytest.mark.parametrize(("compression", "key"), SETTINGS)
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
@pytest.mark.parametrize(("compression", "key"), SETTINGS[1:])
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
    path = message_dir(root, evpid >> 32) / "message"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # the GCM tag or the gzip trailer: detectable only at the very end
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptMessage):
        await spool.open_message(evpid >> 32)


async def test_stream_reader_rechecks_while_reading(root: pathlib.Path) -> None:
    spool = await Spool.open(root, key=KEY)
    (evpid, *_) = await queue_message(spool, MESSAGE * 100)
    path = message_dir(root, evpid >> 32) / "message"
    size = path.stat().st_size
    with open(path, "rb") as file:
        data = bytearray(file.read())
    data[-1] ^= 1
    reader = store._DecodedReader(io.BytesIO(bytes(data)), size, KEY)
    with pytest.raises(CorruptMessage):
        while reader.read(4096):
            pass
    reader.close()


async def test_corrupt_envelope_on_load_and_skipped_in_listing(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    bad, good = await queue_message(spool)
    path = message_dir(root, bad >> 32) / f"{bad:016x}"
    path.write_bytes(path.read_bytes().replace(b'"dispatcher":"relay"', b'"dispatcher":"local"'))
    with pytest.raises(CorruptEnvelope, match="checksum"):
        await spool.load_envelope(bad)
    with caplog.at_level(logging.WARNING, logger="mta.spool"):
        assert [e.id for e in await spool.envelopes()] == [good]
    assert f"evpid={bad:016x}" in caplog.text


async def test_envelope_file_holding_another_envelope(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    first, second = await queue_message(spool)
    directory = message_dir(root, first >> 32)
    os.replace(directory / f"{second:016x}", directory / f"{first:016x}")
    with pytest.raises(CorruptEnvelope, match="holds envelope"):
        await spool.load_envelope(first)


async def test_quarantine_moves_the_whole_message(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    (evpid, _) = await queue_message(spool)
    msgid = evpid >> 32
    with caplog.at_level(logging.WARNING, logger="mta.spool"):
        target = await spool.quarantine(msgid, "operator said so\nforged: line")
    assert pathlib.Path(target) == root / "corrupt" / f"{msgid:08x}"
    assert (pathlib.Path(target) / "message").read_bytes() == MESSAGE
    assert await spool.message_ids() == []
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert 'reason="operator said so\\nforged: line"' in record.getMessage()
    with pytest.raises(SpoolNotFound):
        await spool.quarantine(msgid, "again")


async def test_message_size(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    (evpid, _) = await queue_message(spool)
    assert spool.store.message_size(evpid >> 32) == len(MESSAGE)
    with pytest.raises(SpoolNotFound):
        spool.store.message_size(1)

"""Startup recovery: purge uncommitted work, quarantine anything broken, convert the
format 1 queue, keep the rest."""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
from collections.abc import Callable

import attrs
import pytest

from mta.envelope import Envelope
from mta.spool import Quarantined, Spool, recovery
from mta.spool.paths import bucket_of
from tests.envelopes import make_envelope

from .conftest import (
    KEY,
    QUEUED_MESSAGE,
    assigned,
    bucket_path,
    encode_content,
    envelope_path,
    every_setting,
    evpids,
    files_under,
    message_path,
    queue_message,
    read_message,
    rewrite_message,
    seal_envelope,
    snapshot,
    write_v1_message,
)
from .recorder import Recorder

MESSAGE = QUEUED_MESSAGE


def files_of(root: pathlib.Path, msgid: int) -> dict[str, bytes]:
    """The message file and the envelope files of ``msgid`` in its bucket."""
    return {
        name: data
        for name, data in snapshot(bucket_path(root, msgid)).items()
        if name.startswith(f"{msgid:08x}")
    }


def spool_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "mta.spool"]


@every_setting
async def test_clean_spool_is_kept_as_is(
    root: pathlib.Path, compression: bool, key: bytes | None
) -> None:
    spool = await Spool.open(root, compression=compression, key=key)
    msgids = {await queue_message(spool) for _ in range(3)}
    first, second = evpids(spool, min(msgids))
    await spool.update_envelope(attrs.evolve(await spool.load_envelope(first), retry=5))
    await spool.delete_envelope(second)
    before = snapshot(root / "queue")
    again = await Spool.open(root, compression=compression, key=key)
    report = again.recovery
    assert (report.kept_messages, report.kept_envelopes) == (3, 5)
    assert (report.purged, report.removed, report.quarantined) == (0, 0, [])
    assert set(await again.message_ids()) == msgids
    assert snapshot(root / "queue") == before
    assert (await again.load_envelope(first)).retry == 5


async def test_uncommitted_work_is_purged(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    kept = await queue_message(spool)
    for _ in range(2):
        txn = await spool.begin()
        (await txn.open_message()).write(MESSAGE * 100)  # large: reaches incoming/ now
        assert os.path.isfile(txn.path)
    (root / "incoming" / "stray-file").write_bytes(b"x")
    # A transaction of the spool before format 2 was a directory.
    old = root / "incoming" / "0a000001"
    old.mkdir()
    (old / "message").write_bytes(MESSAGE)
    (old / "0a00000100000001").write_bytes(seal_envelope(assigned(0x0A000001, 1)[0]))
    (root / "temporary" / "scratch").write_bytes(b"y")
    (root / "temporary" / "dir").mkdir()
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        again = await Spool.open(root)
    assert again.recovery.purged == 4
    assert again.recovery.removed == 2
    assert os.listdir(root / "incoming") == [] and os.listdir(root / "temporary") == []
    assert await again.message_ids() == [kept]
    lines = spool_lines(caplog)
    assert sum("purge uncommitted transaction" in line for line in lines) == 4
    assert sum("remove temporary" in line for line in lines) == 2
    assert lines[-1] == "spool: recovered kept=1 envelopes=2 purged=4 removed=2 quarantined=0"
    assert all("\n" not in line for line in lines)


async def test_stray_temporary_files_are_removed(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool)
    evpid, _ = evpids(spool, msgid)
    await spool.update_envelope(await spool.load_envelope(evpid))
    bucket = bucket_path(root, msgid)
    before = snapshot(bucket)
    (bucket / f"{evpid:016x}.1234abcd.tmp").write_bytes(b"half an update")
    (bucket / f"{msgid:08x}.4321.tmp").write_bytes(b"half a conversion")
    (root / "queue" / "junk.tmp").write_bytes(b"")
    again = await Spool.open(root)
    assert again.recovery.removed == 3
    assert again.recovery.kept_messages == 1 and again.recovery.quarantined == []
    assert snapshot(bucket) == before
    assert len(os.listdir(root / "queue")) == 256  # every bucket, and nothing else


async def test_message_whose_envelopes_are_all_deleted_is_removed(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    kept = await queue_message(spool)
    msgid = await queue_message(spool)
    for evpid in evpids(spool, msgid):  # a crash before the last deletion removed it
        envelope_path(root, evpid).write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        again = await Spool.open(root)
    assert again.recovery.removed == 1
    assert again.recovery.quarantined == []
    assert (again.recovery.kept_messages, again.recovery.kept_envelopes) == (1, 2)
    assert files_of(root, msgid) == {}
    assert await again.message_ids() == [kept]
    assert any("remove message without envelopes" in line for line in spool_lines(caplog))


async def test_orphan_envelope_files_are_removed(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    kept = await queue_message(spool)
    msgid = await queue_message(spool)
    first, second = evpids(spool, msgid)
    await spool.update_envelope(await spool.load_envelope(first))
    await spool.delete_envelope(second)
    # A crash after the last deletion removed the message file, before its envelope files.
    message_path(root, msgid).unlink()
    assert sorted(files_of(root, msgid)) == [f"{first:016x}", f"{second:016x}"]
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        again = await Spool.open(root)
    assert again.recovery.removed == 2
    assert again.recovery.quarantined == []
    assert files_of(root, msgid) == {}
    assert files_under(root / "queue") == [f"{bucket_of(kept)}/{kept:08x}"]
    lines = spool_lines(caplog)
    assert sum("remove envelope of a removed message" in line for line in lines) == 2


# -- damage: each is found, and the message moves whole to corrupt/ ------------


def flip(path: pathlib.Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def content_length(path: pathlib.Path) -> int:
    return len(read_message(path)[0])


Damage = Callable[[pathlib.Path, int, list[Envelope]], None]


def damage_truncated(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    path.write_bytes(path.read_bytes()[:-40])


def damage_extended(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    path.write_bytes(b"x" + path.read_bytes())


def damage_content(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    flip(path, content_length(path) // 2)


def damage_gzip_end(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    flip(path, content_length(path) - 1)  # the gzip length check


def damage_content_under_its_crc(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    """Damage the content and write a trailer that vouches for it (as if it was
    damaged before it was stored): the gzip CRC or GCM tag still catches it."""
    path = message_path(root, msgid)
    content = bytearray(read_message(path)[0])
    content[len(content) - 1] ^= 0x01
    rewrite_message(path, content=bytes(content))


def damage_trailer(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    flip(path, path.stat().st_size - 1)  # its CRC


def damage_section(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    flip(path, content_length(path) + 20)


def damage_envelope_in_section(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    blobs = list(read_message(path)[1].envelopes)
    blobs[0] = b"version: 3\nrcpt: root@localhost\n"
    rewrite_message(path, sealed=blobs)  # the trailer is valid: the envelope is not


def damage_foreign_in_section(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    blobs = list(read_message(path)[1].envelopes)
    stranger = make_envelope(msgid=0x01020304, id=0x01020304_00000001)
    blobs[1] = seal_envelope(stranger, key=KEY)
    rewrite_message(path, sealed=blobs)


def damage_twice_in_section(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    path = message_path(root, msgid)
    blobs = list(read_message(path)[1].envelopes)
    rewrite_message(path, sealed=[blobs[0], blobs[0]])


def damage_envelope_file(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    envelope_path(root, envelopes[0].id).write_bytes(b"version: 3\nrcpt: root@localhost\n")


def damage_swapped_envelope_file(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    # the first envelope, under the second's name
    envelope_path(root, envelopes[1].id).write_bytes(seal_envelope(envelopes[0], key=KEY))


def damage_unknown_envelope_file(root: pathlib.Path, msgid: int, envelopes: list[Envelope]) -> None:
    known = {e.id for e in envelopes}
    unknown = next(msgid << 32 | low for low in range(1, 4) if msgid << 32 | low not in known)
    other = attrs.evolve(envelopes[0], id=unknown)
    envelope_path(root, unknown).write_bytes(seal_envelope(other, key=KEY))


def damage_unknown_empty_envelope_file(
    root: pathlib.Path, msgid: int, envelopes: list[Envelope]
) -> None:
    known = {e.id for e in envelopes}
    unknown = next(msgid << 32 | low for low in range(1, 4) if msgid << 32 | low not in known)
    envelope_path(root, unknown).write_bytes(b"")


DAMAGES: dict[str, tuple[Damage, str]] = {
    "truncated message": (damage_truncated, "no trailer"),
    "extended message": (damage_extended, "trailer does not match"),
    "flipped bit in the raw content": (damage_content, "content checksum mismatch"),
    "flipped bit in the content": (damage_content, "content checksum mismatch"),
    "damaged gzip content": (damage_gzip_end, "content checksum mismatch"),
    "content damaged under its CRC": (damage_content_under_its_crc, "authentication failed"),
    "gzip content damaged under its CRC": (damage_content_under_its_crc, "gzip"),
    "damaged trailer": (damage_trailer, "checksum mismatch"),
    "damaged envelope section": (damage_section, "checksum mismatch"),
    "bad envelope in the message": (damage_envelope_in_section, "bad header"),
    "envelope of another message": (damage_foreign_in_section, "of another message"),
    "the same envelope twice": (damage_twice_in_section, "of another message"),
    "bad envelope file": (damage_envelope_file, "bad header"),
    "envelope file under the wrong name": (damage_swapped_envelope_file, "holds envelope"),
    "envelope file of an unknown envelope": (damage_unknown_envelope_file, "unknown envelope"),
    "empty file of an unknown envelope": (damage_unknown_empty_envelope_file, "unknown envelope"),
}


@pytest.mark.parametrize("read", ["whole", "streamed"])
@pytest.mark.parametrize("damage", list(DAMAGES))
async def test_broken_messages_are_quarantined_whole(
    root: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
    read: str,
) -> None:
    if read == "streamed":  # as a message file too large to be read at once
        monkeypatch.setattr(recovery, "SMALL_FILE", 0)
    function, reason = DAMAGES[damage]
    compression, key = (True, None) if "gzip" in damage or "truncated" in damage else (False, KEY)
    if "raw" in damage:
        compression, key = False, None
    spool = await Spool.open(root, compression=compression, key=key)
    good = await queue_message(spool)
    bad = await queue_message(spool)
    envelopes = [await spool.load_envelope(evpid) for evpid in evpids(spool, bad)]
    for envelope in envelopes:  # so that the message has envelope files too
        await spool.update_envelope(attrs.evolve(envelope, retry=1))
    function(root, bad, envelopes)
    before = files_of(root, bad)
    assert len(before) >= 3
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        again = await Spool.open(root, compression=compression, key=key)
    (item,) = again.recovery.quarantined
    assert item.path == f"queue/{bucket_of(bad)}/{bad:08x}"
    assert reason in item.reason
    assert again.recovery.kept_messages == 1
    assert await again.message_ids() == [good]
    # The message file and its envelope files, moved together, never altered.
    assert snapshot(root / "corrupt" / f"{bad:08x}") == before
    assert files_of(root, bad) == {}
    (line,) = [line for line in spool_lines(caplog) if line.startswith("spool: quarantine ")]
    assert line.startswith(f'spool: quarantine path="queue/{bucket_of(bad)}/{bad:08x}" to=')
    assert "reason=" in line
    # A second start finds nothing more to do.
    third = await Spool.open(root, compression=compression, key=key)
    assert third.recovery.quarantined == [] and third.recovery.kept_messages == 1


async def test_wrong_key_quarantines_everything(root: pathlib.Path) -> None:
    spool = await Spool.open(root, key=KEY)
    msgids = {await queue_message(spool) for _ in range(2)}
    again = await Spool.open(root, key=bytes(32))
    assert {item.path.rsplit("/", 1)[1] for item in again.recovery.quarantined} == {
        f"{msgid:08x}" for msgid in msgids
    }
    assert all("wrong key" in item.reason for item in again.recovery.quarantined)
    assert await again.message_ids() == []


async def test_encrypted_queue_without_a_key_is_quarantined(root: pathlib.Path) -> None:
    spool = await Spool.open(root, key=KEY)
    await queue_message(spool)
    again = await Spool.open(root)
    (item,) = again.recovery.quarantined
    assert "no queue key" in item.reason


async def test_queue_written_with_other_settings_is_kept(root: pathlib.Path) -> None:
    plain = await Spool.open(root)
    first = await queue_message(plain)
    packed = await Spool.open(root, compression=True, key=KEY)
    second = await queue_message(packed)
    assert packed.recovery.kept_messages == 1
    again = await Spool.open(root, compression=False, key=KEY)
    assert again.recovery.kept_messages == 2
    for msgid in (first, second):
        with await again.open_message(msgid) as stream:
            assert stream.read() == MESSAGE


async def test_misplaced_entries_are_quarantined(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool)
    evpid, _ = evpids(spool, msgid)
    await spool.update_envelope(await spool.load_envelope(evpid))
    other_bucket = root / "queue" / f"{((msgid >> 24) + 1) % 256:02x}"
    other_bucket.mkdir(exist_ok=True)
    message_path(root, msgid).rename(other_bucket / f"{msgid:08x}")
    envelope_path(root, evpid).rename(other_bucket / f"{evpid:016x}")
    (root / "queue" / "evil\nname").mkdir()
    (root / "queue" / "ab.v1").write_text("?")
    (other_bucket / "README").write_text("?")
    (other_bucket / "sub").mkdir()
    (other_bucket / "0a000001.v1").write_text("a file, not a directory")
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        again = await Spool.open(root)
    reasons = sorted(item.reason for item in again.recovery.quarantined)
    assert reasons == [
        "envelope in the wrong bucket",
        "message in the wrong bucket",
        "unexpected entry in a queue bucket",
        "unexpected entry in a queue bucket",
        "unexpected entry in a queue bucket",
        "unexpected entry in queue/",
        "unexpected entry in queue/",
    ]
    assert all("\n" not in line for line in spool_lines(caplog))
    assert any('"queue/evil\\nname"' in line for line in spool_lines(caplog))
    assert os.listdir(other_bucket) == []
    assert await again.message_ids() == []


async def test_quarantine_never_overwrites(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool)
    (root / "corrupt" / f"{msgid:08x}").mkdir()
    damage_trailer(root, msgid, [])
    again = await Spool.open(root)
    assert again.recovery.quarantined == [
        Quarantined(
            f"queue/{bucket_of(msgid)}/{msgid:08x}",
            "message file: envelope section checksum mismatch",
        )
    ]
    assert (root / "corrupt" / f"{msgid:08x}.1" / f"{msgid:08x}").is_file()
    assert os.listdir(root / "corrupt" / f"{msgid:08x}") == []


# -- the format 1 queue ------------------------------------------------------


V1_MSGID = 0x0A0B0C0D


def v1_envelopes() -> list[Envelope]:
    envelopes = assigned(V1_MSGID, 3, first_low=0x100)
    # One of them changed since its commit (format 1 rewrote its file in place).
    envelopes[1] = attrs.evolve(envelopes[1], retry=4, errorline="451 later")
    return envelopes


def v1_names(envelopes: list[Envelope]) -> list[str]:
    return sorted(["message", *(e.evpid_text for e in envelopes)])


@every_setting
async def test_a_format_1_message_is_converted(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture, compression: bool, key: bytes | None
) -> None:
    envelopes = v1_envelopes()
    directory = write_v1_message(root, MESSAGE, envelopes, compress=compression, key=key)
    old = snapshot(directory)
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        spool = await Spool.open(root, compression=compression, key=key)
    report = spool.recovery
    assert (report.kept_messages, report.kept_envelopes) == (1, 3)
    assert (report.purged, report.removed, report.quarantined) == (0, 0, [])
    assert files_under(root / "queue") == [f"{bucket_of(V1_MSGID)}/{V1_MSGID:08x}"]
    # The content is copied as it was stored; the envelope files become the section.
    content, tail = read_message(message_path(root, V1_MSGID))
    assert content == old["message"]
    assert list(tail.envelopes) == [
        old[e.evpid_text] for e in sorted(envelopes, key=lambda e: e.id)
    ]
    # It reads back identically.
    assert await spool.message_ids() == [V1_MSGID]
    assert sorted(await spool.envelopes(), key=lambda e: e.id) == envelopes
    for envelope in envelopes:
        assert await spool.load_envelope(envelope.id) == envelope
    with await spool.open_message(V1_MSGID) as stream:
        assert stream.read() == MESSAGE
    assert any("convert message to format 2" in line for line in spool_lines(caplog))
    # ... and behaves like any other message.
    assert await spool.delete_envelope(envelopes[0].id) is False
    again = await Spool.open(root, compression=compression, key=key)
    assert (again.recovery.kept_messages, again.recovery.kept_envelopes) == (1, 2)
    assert again.recovery.removed == 0 and again.recovery.quarantined == []
    for envelope in envelopes[1:]:
        assert await again.delete_envelope(envelope.id) is (envelope is envelopes[-1])
    assert files_under(root / "queue") == []


async def test_conversion_is_durable_before_the_old_copy_goes(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_v1_message(root, MESSAGE, v1_envelopes())
    bucket = bucket_path(root, V1_MSGID)
    target = message_path(root, V1_MSGID)
    moved = f"{directory}.v1"
    recorder = Recorder(monkeypatch)
    real_rmtree = shutil.rmtree

    def rmtree(path: str, *args: object, **kwargs: object) -> None:
        recorder.events.append(("rmtree", str(path), None))
        real_rmtree(path, ignore_errors=True)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    await Spool.open(root)
    # First the old directory is renamed (so a crash resumes, never repeats) ...
    rename_old = recorder.index("rename", directory)
    assert recorder.events[rename_old][2] == moved
    first_sync = recorder.index("fsync", bucket)
    assert rename_old < first_sync
    # ... then the new file is written, fsynced, renamed into place, the bucket fsynced ...
    (temp_rename,) = [e for e in recorder.events if e[0] == "rename" and e[2] == str(target)]
    temp = temp_rename[1]
    assert temp.endswith(".tmp") and os.path.dirname(temp) == str(bucket)
    assert first_sync < recorder.index("fsync", temp) < recorder.index("rename", temp)
    last_sync = max(i for i, e in enumerate(recorder.events) if e[:2] == ("fsync", str(bucket)))
    assert recorder.index("rename", temp) < last_sync
    # ... and only then the old copy is removed.
    assert last_sync < recorder.index("rmtree", moved)
    assert not os.path.exists(moved)


async def test_a_conversion_interrupted_before_the_new_file_is_resumed(
    root: pathlib.Path,
) -> None:
    envelopes = v1_envelopes()
    name = f"{V1_MSGID:08x}.v1"
    directory = write_v1_message(root, MESSAGE, envelopes, compress=True, key=KEY, name=name)
    bucket = directory.parent
    (bucket / f"{V1_MSGID:08x}.999.tmp").write_bytes(b"half of the new file")
    spool = await Spool.open(root, compression=True, key=KEY)
    assert (spool.recovery.kept_messages, spool.recovery.kept_envelopes) == (1, 3)
    assert spool.recovery.removed == 1 and spool.recovery.quarantined == []
    assert os.listdir(bucket) == [f"{V1_MSGID:08x}"]
    assert sorted(await spool.envelopes(), key=lambda e: e.id) == envelopes
    with await spool.open_message(V1_MSGID) as stream:
        assert stream.read() == MESSAGE


async def test_a_conversion_interrupted_after_the_new_file_is_finished(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    envelopes = v1_envelopes()
    directory = write_v1_message(root, MESSAGE, envelopes)
    saved = root.parent / "saved"
    shutil.copytree(directory, saved)
    await Spool.open(root)  # converts
    converted = message_path(root, V1_MSGID).read_bytes()
    # A crash before the old copy was removed: it is still there, renamed.
    shutil.copytree(saved, f"{directory}.v1")
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        spool = await Spool.open(root)
    assert (spool.recovery.kept_messages, spool.recovery.kept_envelopes) == (1, 3)
    assert spool.recovery.quarantined == []
    assert os.listdir(directory.parent) == [f"{V1_MSGID:08x}"]
    assert message_path(root, V1_MSGID).read_bytes() == converted  # not converted again
    assert sorted(await spool.envelopes(), key=lambda e: e.id) == envelopes
    assert any("remove converted message" in line for line in spool_lines(caplog))
    assert not any("convert message to format 2" in line for line in spool_lines(caplog))


async def test_format_1_and_format_2_messages_side_by_side(root: pathlib.Path) -> None:
    old = write_v1_message(root, MESSAGE, v1_envelopes(), compress=True)
    spool = await Spool.open(root, compression=True)
    spool._bucket = V1_MSGID >> 24  # the next message goes to the same bucket
    new = await queue_message(spool)
    old_msgid = V1_MSGID + 1
    write_v1_message(root, b"", assigned(old_msgid, 1))  # an empty message
    again = await Spool.open(root, compression=True)
    assert old.parent == bucket_path(root, new)
    assert (again.recovery.kept_messages, again.recovery.kept_envelopes) == (3, 6)
    assert await again.message_ids() == sorted([V1_MSGID, old_msgid, new])
    with await again.open_message(old_msgid) as stream:
        assert stream.read() == b""


async def test_temporary_files_of_a_format_1_message_are_removed(root: pathlib.Path) -> None:
    directory = write_v1_message(root, MESSAGE, v1_envelopes())
    (directory / "0a0b0c0d00000100.abcd.tmp").write_bytes(b"half an update")
    spool = await Spool.open(root)
    assert spool.recovery.removed == 1
    assert (spool.recovery.kept_messages, spool.recovery.kept_envelopes) == (1, 3)


async def test_a_format_1_message_without_envelopes_is_removed(root: pathlib.Path) -> None:
    directory = write_v1_message(root, MESSAGE, v1_envelopes())
    for path in directory.iterdir():
        if path.name != "message":
            path.unlink()
    spool = await Spool.open(root)
    assert spool.recovery.removed == 1
    assert spool.recovery.quarantined == [] and spool.recovery.kept_messages == 0
    assert os.listdir(directory.parent) == []


def v1_damage_missing_message(directory: pathlib.Path) -> None:
    (directory / "message").unlink()


def v1_damage_envelope(directory: pathlib.Path) -> None:
    (directory / "0a0b0c0d00000100").write_bytes(b"version: 3\nrcpt: root@localhost\n")


def v1_damage_empty_envelope(directory: pathlib.Path) -> None:
    (directory / "0a0b0c0d00000101").write_bytes(b"")


def v1_damage_foreign_envelope(directory: pathlib.Path) -> None:
    (directory / "0a0b0c0d00000100").rename(directory / "0102030400000100")


def v1_damage_swapped_envelope(directory: pathlib.Path) -> None:
    first = directory / "0a0b0c0d00000100"
    first.write_bytes((directory / "0a0b0c0d00000101").read_bytes())


def v1_damage_unknown_file(directory: pathlib.Path) -> None:
    (directory / "notes.txt").write_text("?")


def v1_damage_subdirectory(directory: pathlib.Path) -> None:
    (directory / "sub").mkdir()


def v1_damage_message(directory: pathlib.Path) -> None:
    path = directory / "message"
    path.write_bytes(path.read_bytes()[:-40])


V1_DAMAGES: dict[str, tuple[Callable[[pathlib.Path], None], str]] = {
    "message missing": (v1_damage_missing_message, "message file missing"),
    "bad envelope": (v1_damage_envelope, "bad header"),
    "empty envelope": (v1_damage_empty_envelope, "bad header"),
    "envelope of another message": (v1_damage_foreign_envelope, "of another message"),
    "envelope under the wrong name": (v1_damage_swapped_envelope, "holds envelope"),
    "unknown file": (v1_damage_unknown_file, "unexpected file 'notes.txt'"),
    "subdirectory": (v1_damage_subdirectory, "unexpected non-file 'sub'"),
    "truncated message": (v1_damage_message, "authentication failed"),
}


@pytest.mark.parametrize("interrupted", [False, True], ids=["fresh", "renamed"])
@pytest.mark.parametrize("damage", list(V1_DAMAGES))
async def test_a_broken_format_1_message_is_quarantined(
    root: pathlib.Path, damage: str, interrupted: bool
) -> None:
    function, reason = V1_DAMAGES[damage]
    name = f"{V1_MSGID:08x}.v1" if interrupted else f"{V1_MSGID:08x}"
    directory = write_v1_message(root, MESSAGE, v1_envelopes(), key=KEY, name=name)
    function(directory)
    before = snapshot(directory)
    spool = await Spool.open(root, key=KEY)
    (item,) = spool.recovery.quarantined
    assert item.path == f"queue/{bucket_of(V1_MSGID)}/{name}"
    assert reason in item.reason
    assert snapshot(root / "corrupt" / name) == before
    assert os.listdir(directory.parent) == []
    assert spool.recovery.kept_messages == 0


async def test_an_encrypted_format_1_queue_without_a_key_is_quarantined(
    root: pathlib.Path,
) -> None:
    write_v1_message(root, MESSAGE, v1_envelopes(), key=KEY)
    spool = await Spool.open(root)
    (item,) = spool.recovery.quarantined
    assert "no queue key" in item.reason
    assert await spool.message_ids() == []


async def test_a_format_1_content_file_is_copied_as_is(root: pathlib.Path) -> None:
    """The content of a large message is streamed into the new file unchanged."""
    content = os.urandom(3 << 20)
    write_v1_message(root, content, v1_envelopes(), compress=True, key=KEY)
    stored = encode_content(content, compress=True, key=KEY)
    spool = await Spool.open(root, compression=True, key=KEY)
    assert spool.store.message_size(V1_MSGID) == len(stored)
    with await spool.open_message(V1_MSGID) as stream:
        assert stream.read() == content

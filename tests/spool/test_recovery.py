"""Startup recovery: purge uncommitted work, quarantine anything broken, keep the rest."""

from __future__ import annotations

import logging
import os
import pathlib

import pytest

from mta.spool import Quarantined, Spool
from mta.spool.paths import bucket_of

from .conftest import KEY, make_envelope

MESSAGE = b"Received: by test\r\nSubject: s\r\n\r\n" + b"body line\r\n" * 200


async def queue_message(spool: Spool, rcpts: int = 2) -> int:
    txn = await spool.begin()
    (await txn.open_message()).write(MESSAGE)
    await txn.commit([make_envelope(f"r{n}@example.org") for n in range(rcpts)])
    return txn.msgid


def message_dir(root: pathlib.Path, msgid: int) -> pathlib.Path:
    return root / "queue" / bucket_of(msgid) / f"{msgid:08x}"


def snapshot(directory: pathlib.Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes() if path.is_file() else b"<dir>" for path in directory.iterdir()
    }


def spool_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "mta.spool"]


async def test_clean_spool_is_kept_as_is(root: pathlib.Path) -> None:
    spool = await Spool.open(root, compression=True, key=KEY)
    msgids = {await queue_message(spool) for _ in range(3)}
    again = await Spool.open(root, compression=True, key=KEY)
    report = again.recovery
    assert (report.kept_messages, report.kept_envelopes) == (3, 6)
    assert (report.purged, report.removed, report.quarantined) == (0, 0, [])
    assert set(await again.message_ids()) == msgids


async def test_uncommitted_work_is_purged(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await Spool.open(root)
    kept = await queue_message(spool)
    for _ in range(2):
        txn = await spool.begin()
        (await txn.open_message()).write(MESSAGE * 100)  # large: reaches incoming/ now
    (root / "incoming" / "stray-file").write_bytes(b"x")
    (root / "temporary" / "scratch").write_bytes(b"y")
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        again = await Spool.open(root)
    assert again.recovery.purged == 3
    assert again.recovery.removed == 1
    assert os.listdir(root / "incoming") == [] and os.listdir(root / "temporary") == []
    assert await again.message_ids() == [kept]
    lines = spool_lines(caplog)
    assert sum("purge uncommitted transaction" in line for line in lines) == 3
    assert sum("remove temporary" in line for line in lines) == 1
    assert lines[-1] == "spool: recovered kept=1 envelopes=2 purged=3 removed=1 quarantined=0"
    assert all("\n" not in line for line in lines)


async def test_stray_temporary_files_are_removed(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool)
    directory = message_dir(root, msgid)
    before = snapshot(directory)
    (directory / f"{msgid:08x}00000001.1234abcd.tmp").write_bytes(b"half an update")
    (root / "queue" / "junk.tmp").write_bytes(b"")
    again = await Spool.open(root)
    assert again.recovery.removed == 2
    assert again.recovery.kept_messages == 1
    assert snapshot(directory) == before


async def test_message_left_without_envelopes_is_removed(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool)
    for path in message_dir(root, msgid).iterdir():
        if path.name != "message":
            path.unlink()
    again = await Spool.open(root)
    assert again.recovery.removed == 1
    assert again.recovery.quarantined == []
    assert not message_dir(root, msgid).exists()


def damage_truncate(directory: pathlib.Path) -> None:
    path = directory / "message"
    path.write_bytes(path.read_bytes()[:-40])


def damage_bitflip(directory: pathlib.Path) -> None:
    path = directory / "message"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def damage_missing_message(directory: pathlib.Path) -> None:
    (directory / "message").unlink()


def envelope_files(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(path for path in directory.iterdir() if path.name != "message")


def damage_envelope(directory: pathlib.Path) -> None:
    envelope_files(directory)[0].write_bytes(b"version: 3\nrcpt: root@localhost\n")


def damage_empty_envelope(directory: pathlib.Path) -> None:
    envelope_files(directory)[1].write_bytes(b"")


def damage_foreign_envelope(directory: pathlib.Path) -> None:
    first = envelope_files(directory)[0]
    first.rename(directory / f"{0x01020304:08x}{first.name[8:]}")


def damage_swapped_envelope(directory: pathlib.Path) -> None:
    first, second = envelope_files(directory)
    first.write_bytes(second.read_bytes())


def damage_unknown_file(directory: pathlib.Path) -> None:
    (directory / "notes.txt").write_text("?")


def damage_subdirectory(directory: pathlib.Path) -> None:
    (directory / "sub").mkdir()


DAMAGES = {
    "truncated message": (damage_truncate, "gzip"),
    "flipped bit": (damage_bitflip, "authentication failed"),
    "message missing": (damage_missing_message, "message file missing"),
    "bad envelope": (damage_envelope, "bad header"),
    "empty envelope": (damage_empty_envelope, "bad header"),
    "envelope of another message": (damage_foreign_envelope, "of another message"),
    "envelope under the wrong name": (damage_swapped_envelope, "holds envelope"),
    "unknown file": (damage_unknown_file, "unexpected file 'notes.txt'"),
    "subdirectory": (damage_subdirectory, "unexpected non-file 'sub'"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
async def test_broken_messages_are_quarantined_whole(
    root: pathlib.Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    function, reason = DAMAGES[damage]
    compression, key = (True, None) if damage == "truncated message" else (False, KEY)
    spool = await Spool.open(root, compression=compression, key=key)
    good = await queue_message(spool)
    bad = await queue_message(spool)
    directory = message_dir(root, bad)
    function(directory)
    before = snapshot(directory)
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        again = await Spool.open(root, compression=compression, key=key)
    (item,) = again.recovery.quarantined
    assert item.path == f"queue/{bucket_of(bad)}/{bad:08x}"
    assert reason in item.reason
    assert again.recovery.kept_messages == 1
    assert await again.message_ids() == [good]
    assert snapshot(root / "corrupt" / f"{bad:08x}") == before  # moved, never altered
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
    other_bucket = f"{((msgid >> 24) + 1) % 256:02x}"
    (root / "queue" / other_bucket).mkdir(exist_ok=True)
    message_dir(root, msgid).rename(root / "queue" / other_bucket / f"{msgid:08x}")
    (root / "queue" / "evil\nname").mkdir()
    (root / "queue" / other_bucket / "README").write_text("?")
    with caplog.at_level(logging.INFO, logger="mta.spool"):
        again = await Spool.open(root)
    reasons = sorted(item.reason for item in again.recovery.quarantined)
    assert reasons == [
        "message in the wrong bucket",
        "unexpected entry in a queue bucket",
        "unexpected entry in queue/",
    ]
    assert all("\n" not in line for line in spool_lines(caplog))
    assert any('"queue/evil\\nname"' in line for line in spool_lines(caplog))


async def test_quarantine_never_overwrites(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool)
    (root / "corrupt" / f"{msgid:08x}").mkdir()
    (message_dir(root, msgid) / "message").unlink()
    again = await Spool.open(root)
    assert again.recovery.quarantined == [
        Quarantined(f"queue/{bucket_of(msgid)}/{msgid:08x}", "message file missing")
    ]
    assert (root / "corrupt" / f"{msgid:08x}.1").is_dir()
    assert (root / "corrupt" / f"{msgid:08x}").is_dir()

"""Fixtures and helpers for the spool tests: a fresh spool root, envelope factories,
the on-disk layout (format 2, and format 1 built by hand for the conversion tests)."""

from __future__ import annotations

import pathlib
import zlib
from collections.abc import Iterable, Sequence

import pytest

from mta.envelope import Envelope
from mta.spool import Spool
from mta.spool.codec import encode_envelope
from mta.spool.msgfile import Tail, encode_tail, read_tail
from mta.spool.paths import SpoolPaths, bucket_of
from mta.spool.seal import StreamEncoder, seal_buffer
from tests.envelopes import make_envelope

KEY = bytes(range(32))

# Every queue compression / encryption setting: (compression, key).
SETTINGS = [(False, None), (True, None), (False, KEY), (True, KEY)]
SETTING_IDS = ["raw", "gzip", "aes", "gzip+aes"]
every_setting = pytest.mark.parametrize(("compression", "key"), SETTINGS, ids=SETTING_IDS)
# The settings whose content carries a check (gzip CRC, GCM tag).
every_checked_setting = pytest.mark.parametrize(
    ("compression", "key"), SETTINGS[1:], ids=SETTING_IDS[1:]
)


def assigned(msgid: int, count: int = 2, first_low: int = 1) -> list[Envelope]:
    """``count`` envelopes of message ``msgid`` with ids ``msgid << 32 | first_low + n``."""
    return [
        make_envelope(f"r{n}@example.org", msgid=msgid, id=msgid << 32 | first_low + n)
        for n in range(count)
    ]


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "spool"


QUEUED_MESSAGE = b"Received: by test\r\nSubject: s\r\n\r\n" + b"body line\r\n" * 200


async def queue_message(spool: Spool, rcpts: int = 2) -> int:
    """Commit :data:`QUEUED_MESSAGE` for ``rcpts`` recipients; returns its msgid."""
    txn = await spool.begin()
    (await txn.open_message()).write(QUEUED_MESSAGE)
    await txn.commit([make_envelope(f"r{n}@example.org") for n in range(rcpts)])
    return txn.msgid


def forget(spool: Spool, msgid: int) -> None:
    """As if ``msgid`` had been committed by an earlier run: the store reads its
    envelopes from the file again (a commit remembers them, mta.spool.index)."""
    spool.store._index.drop(msgid)


def evpids(spool: Spool, msgid: int) -> list[int]:
    """The envelopes of ``msgid`` in the queue, in id order."""
    return spool.store.envelope_ids(msgid)


# -- the layout --------------------------------------------------------------


def bucket_path(root: pathlib.Path, msgid: int) -> pathlib.Path:
    return root / "queue" / bucket_of(msgid)


def message_path(root: pathlib.Path, msgid: int) -> pathlib.Path:
    """The committed message file (format 2)."""
    return bucket_path(root, msgid) / f"{msgid:08x}"


def envelope_path(root: pathlib.Path, evpid: int) -> pathlib.Path:
    """The envelope file that supersedes the committed copy of ``evpid``."""
    return bucket_path(root, evpid >> 32) / f"{evpid:016x}"


def files_under(directory: pathlib.Path) -> list[str]:
    """Every file (not directory) under ``directory``, relative to it, sorted."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir())


def snapshot(directory: pathlib.Path) -> dict[str, bytes]:
    """The files under ``directory`` (relative name -> content)."""
    return {name: (directory / name).read_bytes() for name in files_under(directory)}


def read_message(path: pathlib.Path) -> tuple[bytes, Tail]:
    """The encoded content and the tail of the message file at ``path``."""
    with open(path, "rb") as file:
        tail = read_tail(file, path.stat().st_size)
        file.seek(0)
        return file.read(tail.content_length), tail


def rewrite_message(
    path: pathlib.Path, content: bytes | None = None, sealed: Sequence[bytes] | None = None
) -> None:
    """Rewrite the message file at ``path`` with another encoded content and / or other
    sealed envelopes, keeping a valid trailer (to test the checks behind it)."""
    old_content, tail = read_message(path)
    content = old_content if content is None else content
    blobs = tail.envelopes if sealed is None else sealed
    path.write_bytes(message_file(content, blobs))


def message_file(content: bytes, sealed: Sequence[bytes]) -> bytes:
    """A message file (version 2): the encoded ``content``, then ``sealed`` envelopes."""
    return content + encode_tail(len(content), sealed, crc=zlib.crc32(content))


# -- encodings ---------------------------------------------------------------


def encode_content(content: bytes, *, compress: bool, key: bytes | None) -> bytes:
    """Message content as the spool stores it with these settings."""
    encoder = StreamEncoder(compress=compress, key=key)
    return encoder.encode(content) + encoder.finish()


def seal_envelope(envelope: Envelope, *, compress: bool = False, key: bytes | None = None) -> bytes:
    """An envelope as an envelope file (and a message file's section) holds it."""
    return seal_buffer(encode_envelope(envelope), compress=compress, key=key)


def write_v1_message(
    root: pathlib.Path,
    content: bytes,
    envelopes: Sequence[Envelope],
    *,
    compress: bool = False,
    key: bytes | None = None,
    name: str | None = None,
) -> pathlib.Path:
    """A committed message as the spool wrote it before format 2: the directory
    ``queue/<bucket>/<msgid>/`` (or ``name``) holding ``message`` and one file per
    envelope.  Creates the spool layout if needed; returns the directory."""
    SpoolPaths(root).create()
    msgid = envelopes[0].msgid
    assert all(envelope.msgid == msgid for envelope in envelopes)
    directory = bucket_path(root, msgid) / (name or f"{msgid:08x}")
    directory.mkdir(mode=0o700)
    (directory / "message").write_bytes(encode_content(content, compress=compress, key=key))
    for envelope in envelopes:
        sealed = seal_envelope(envelope, compress=compress, key=key)
        (directory / envelope.evpid_text).write_bytes(sealed)
    return directory


class Draws:
    """Stands in for a random source (a spool's ``_random``): ``getrandbits``
    returns ``values`` in order, whatever the number of bits asked for."""

    def __init__(self, values: Iterable[int]) -> None:
        self._values = iter(values)
        self.calls = 0

    def getrandbits(self, bits: int) -> int:
        self.calls += 1
        return next(self._values)

"""The messages the store remembers: bounded, least recently used first out, and
what they save: each envelope of a message decoded once however many of its
envelopes are loaded, updated and deleted."""

from __future__ import annotations

import pathlib
from typing import Any

import attrs
import pytest

from mta.envelope import Envelope
from mta.errors import SpoolNotFound
from mta.spool import Spool, store
from mta.spool.index import MessageIndex
from mta.spool.store import Store
from tests.envelopes import make_envelope

from .conftest import evpids, message_path, queue_message


def envelopes(msgid: int, count: int) -> dict[int, Envelope]:
    return {
        msgid << 32 | n: make_envelope(f"r{n}@example.org", msgid=msgid, id=msgid << 32 | n)
        for n in range(1, count + 1)
    }


def test_the_least_recently_used_messages_go_first() -> None:
    index = MessageIndex(limit=5)
    index.put(1, envelopes(1, 2))
    index.put(2, envelopes(2, 2))
    assert index.get(1) is not None  # 2 is the least recently used now
    index.put(3, envelopes(3, 2))
    assert (index.get(2), len(index), index.size) == (None, 2, 4)
    assert index.get(1) is not None and index.get(3) is not None
    big = index.put(4, envelopes(4, 9))  # more than the limit: remembered alone
    assert (index.get(4), len(index), index.size) == (big, 1, 9)
    index.put(4, envelopes(4, 1))  # again: replaces
    assert index.size == 1
    index.drop(4)
    index.drop(5)
    assert (len(index), index.size) == (0, 0)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = store.decode_sealed_envelope

    def counted(*args: Any) -> Envelope:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(store, "decode_sealed_envelope", counted)
    return calls


async def test_delivering_a_message_decodes_each_envelope_once(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool, 20)
    decodes = count_decodes(monkeypatch)
    ids = evpids(spool, msgid)
    updated = attrs.evolve(await spool.load_envelope(ids[0]), retry=1)
    await spool.update_envelope(updated)
    assert len(decodes) == 20  # the message's envelopes, once
    assert await spool.load_envelope(ids[0]) == updated  # its own file: one more
    for evpid in ids[1:]:
        assert (await spool.load_envelope(evpid)).id == evpid
        assert await spool.delete_envelope(evpid) is False
    assert len(decodes) == 21
    assert evpids(spool, msgid) == [ids[0]]
    assert await spool.delete_envelope(ids[0]) is True
    assert not message_path(root, msgid).exists()
    assert list(bucket_files(root, msgid)) == []
    with pytest.raises(SpoolNotFound):
        await spool.load_envelope(ids[0])


def bucket_files(root: pathlib.Path, msgid: int) -> list[pathlib.Path]:
    return list(message_path(root, msgid).parent.glob(f"{msgid:08x}*"))


async def test_deletions_made_before_the_store_started_are_read_from_the_disk(
    root: pathlib.Path,
) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool, 3)
    first, second, third = evpids(spool, msgid)
    assert spool.store.delete_envelope(second) is False  # remembered by this store
    fresh = Store(spool.paths, compress=False, key=None)  # a restart: nothing remembered
    assert fresh.envelope_ids(msgid) == [first, third]
    with pytest.raises(SpoolNotFound):
        fresh.delete_envelope(second)
    assert fresh.delete_envelope(third) is False
    assert fresh.delete_envelope(first) is True  # the last one: the message goes
    assert bucket_files(root, msgid) == []
    assert fresh.envelope_ids(msgid) == []

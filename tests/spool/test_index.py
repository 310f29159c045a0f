"""The messages the store remembers: bounded, least recently used first out, and
what they save: each envelope of a message decoded once however many of its
envelopes are loaded, updated and deleted."""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.envelope import Envelope
from mta.errors import SpoolNotFound
from mta.spool import Spool, store
from mta.spool.index import MessageIndex
from mta.spool.paths import SpoolPaths
from mta.spool.store import Store
from tests.envelopes import make_envelope

from .conftest import evpids, message_file, message_path, queue_message, seal_envelope


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
    assert len(decodes) == 0  # remembered from the commit: none read back
    assert await spool.load_envelope(ids[0]) == updated  # its own file: one decode
    for evpid in ids[1:]:
        assert (await spool.load_envelope(evpid)).id == evpid
        assert await spool.delete_envelope(evpid) is False
    assert len(decodes) == 1
    assert evpids(spool, msgid) == [ids[0]]
    assert await spool.delete_envelope(ids[0]) is True
    assert not message_path(root, msgid).exists()
    assert list(bucket_files(root, msgid)) == []
    with pytest.raises(SpoolNotFound):
        await spool.load_envelope(ids[0])


async def test_what_a_commit_remembers_is_what_the_file_holds(root: pathlib.Path) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool, 5)
    fresh = Store(spool.paths, compress=False, key=None)  # a restart: read from the file
    for evpid in evpids(spool, msgid):
        assert await spool.load_envelope(evpid) == fresh.load_envelope(evpid)
    assert evpids(spool, msgid) == fresh.envelope_ids(msgid)


async def test_a_restarted_store_decodes_each_envelope_once(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = await Spool.open(root)
    msgid = await queue_message(spool, 20)
    fresh = Store(spool.paths, compress=False, key=None)  # nothing remembered
    decodes = count_decodes(monkeypatch)
    for evpid in evpids(spool, msgid):
        assert fresh.load_envelope(evpid).id == evpid
        fresh.delete_envelope(evpid)
    assert len(decodes) == 20  # the message's envelopes, once
    assert fresh.envelope_ids(msgid) == []


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


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["load", "update", "delete"]),
        st.integers(0, 1),  # which message
        st.integers(0, 3),  # which of its envelopes
        st.integers(1, 5),  # the retry count an update writes
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, limit=st.sampled_from([1, 4, 100]))
def test_a_remembering_store_answers_as_the_disk_does(
    ops: list[tuple[str, int, int, int]], limit: int
) -> None:
    # random loads, updates and deletions through one store that remembers
    # (with room for no, one or every message), checked after each step against
    # a store that has seen nothing (the disk) and a plain model
    with tempfile.TemporaryDirectory() as directory:
        paths = SpoolPaths(os.path.join(directory, "spool"))
        paths.create()
        model: dict[int, dict[int, Envelope]] = {}
        for msgid in (0x0A000001, 0x0B000002):
            committed = envelopes(msgid, 4)
            sealed = [seal_envelope(envelope) for envelope in committed.values()]
            os.makedirs(paths.bucket_dir(msgid), exist_ok=True)
            pathlib.Path(paths.message_file(msgid)).write_bytes(message_file(b"hi\r\n", sealed))
            model[msgid] = committed
        remembering = Store(paths, compress=False, key=None)
        remembering._index = MessageIndex(limit=limit)
        msgids = list(model)
        for op, which, n, retry in ops:
            msgid = msgids[which]
            evpid = msgid << 32 | n + 1
            live = model[msgid]
            if op == "load":
                if evpid in live:
                    assert remembering.load_envelope(evpid) == live[evpid]
                else:
                    with pytest.raises(SpoolNotFound):
                        remembering.load_envelope(evpid)
            elif op == "update":
                changed = attrs.evolve(envelopes(msgid, 4)[evpid], retry=retry)
                if evpid in live:
                    remembering.update_envelope(changed)
                    live[evpid] = changed
                else:
                    with pytest.raises(SpoolNotFound):
                        remembering.update_envelope(changed)
            elif evpid in live:
                del live[evpid]
                assert remembering.delete_envelope(evpid) is (not live)
            else:
                with pytest.raises(SpoolNotFound):
                    remembering.delete_envelope(evpid)
            disk = Store(paths, compress=False, key=None)
            for each in msgids:
                expected = sorted(model[each])
                assert remembering.envelope_ids(each) == disk.envelope_ids(each) == expected
                assert os.path.exists(paths.message_file(each)) is bool(expected)
                for other, envelope in model[each].items():
                    assert disk.load_envelope(other) == envelope

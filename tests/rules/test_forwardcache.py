"""The short-lived cache of ``.forward`` reads."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mta.errors import TemporaryFailure
from mta.rules.forwardcache import TTL, ForwardCache
from mta.tables.values import UserInfo

ALICE = UserInfo("alice", 1000, 1000, "/home/alice")
BOB = UserInfo("bob", 1001, 1001, "/home/bob")


class Reader:
    def __init__(self, texts: dict[str, str | None]) -> None:
        self.texts = texts
        self.calls: list[str] = []

    async def __call__(self, info: UserInfo) -> str | None:
        self.calls.append(info.username)
        text = self.texts[info.username]
        if text == "fail":
            raise TemporaryFailure("unreachable home")
        return text


async def test_results_are_kept_for_the_ttl(autojump_clock: trio.testing.MockClock) -> None:
    cache = ForwardCache()
    reader = Reader({"alice": "bob\n", "bob": None})
    assert await cache.read(ALICE, reader) == "bob\n"
    assert await cache.read(BOB, reader) is None
    reader.texts["alice"] = "carol\n"
    await trio.sleep(TTL / 2)
    assert await cache.read(ALICE, reader) == "bob\n"
    assert await cache.read(BOB, reader) is None
    assert reader.calls == ["alice", "bob"]
    await trio.sleep(TTL / 2)
    assert await cache.read(ALICE, reader) == "carol\n"
    assert reader.calls == ["alice", "bob", "alice"]


async def test_failures_are_not_cached() -> None:
    cache = ForwardCache()
    reader = Reader({"alice": "fail"})
    for _ in range(2):
        with pytest.raises(TemporaryFailure):
            await cache.read(ALICE, reader)
    assert reader.calls == ["alice", "alice"]


async def test_the_cache_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    cache = ForwardCache(max_entries=2)
    users = [UserInfo(f"u{n}", n, n, f"/home/u{n}") for n in range(5)]
    reader = Reader({u.username: None for u in users})
    for user in users:
        await cache.read(user, reader)
        assert len(cache._entries) <= 2
    cache.clear()
    await cache.read(users[0], reader)
    assert reader.calls == ["u0", "u1", "u2", "u3", "u4", "u0"]

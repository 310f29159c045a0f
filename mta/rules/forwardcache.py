"""A short-lived cache of ``.forward`` reads, so a busy user costs no thread hop per RCPT.

Reading a ``.forward`` file blocks (it stats the home directory and the file),
so it runs in a worker thread; under load the same few users receive mail many
times a second, and the hop to the thread and back costs more than the read.
A result (the text, or "no file") is reused for :data:`TTL` seconds of trio's
clock, so an edited or new ``.forward`` takes effect within that time.
Failures are never cached: the next recipient tries again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from mta.tables.values import UserInfo

__all__ = ["MAX_ENTRIES", "TTL", "ForwardCache"]

TTL = 1.0
MAX_ENTRIES = 4096

_Key = tuple[str, int, str]


class ForwardCache:
    """``.forward`` texts by user, each kept for :data:`TTL` seconds."""

    def __init__(self, ttl: float = TTL, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[_Key, tuple[float, str | None]] = {}

    async def read(
        self, info: UserInfo, reader: Callable[[UserInfo], Awaitable[str | None]]
    ) -> str | None:
        """The ``.forward`` text of ``info`` (None: no file), from the cache or
        from ``reader`` (whose exceptions pass through, uncached)."""
        key = (info.directory, info.uid, info.username)
        now = trio.current_time()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        text = await reader(info)
        if len(self._entries) >= self.max_entries:
            self._prune(trio.current_time())
        self._entries[key] = (trio.current_time() + self.ttl, text)
        return text

    def _prune(self, now: float) -> None:
        live = {key: entry for key, entry in self._entries.items() if entry[0] > now}
        if len(live) >= self.max_entries:
            live.clear()
        self._entries = live

    def clear(self) -> None:
        self._entries.clear()

"""The ``data-line`` phase: a message streamed through a chain of filter
processes and read back.

What smtpd writes to the spool (the headers it adds, then the client's
lines) goes, line by line, to the first filter that registered
``data-line``; each filter's output lines go to the next one, and the last
one's output is what is kept.  Lines travel as OpenSMTPD sends them: without
their CRLF, dot-escaped (a line starting with ``.`` gets another one), and
``.`` alone ends the message (:class:`LineSplitter`, :func:`unescape`).

:class:`DataLinePipe` runs the stages concurrently (a task forwards each
filter's output to the next), so a filter is never blocked writing while
nobody reads it, and nothing holds more than a bounded number of lines.
A filter failing ends the pipe with :class:`~mta.filters.process.FilterFailed`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import cast

import trio

from mta.filters.process import FilterFailed, FilterProcess

__all__ = ["DataLinePipe", "LineSplitter", "escape", "unescape"]


def escape(line: bytes) -> bytes:
    """A content line as the protocol carries it (``.x`` is sent ``..x``)."""
    return b"." + line if line.startswith(b".") else line


def unescape(line: bytes) -> bytes:
    """A line a filter returned, as content again."""
    return line[1:] if line.startswith(b".") else line


class LineSplitter:
    """CRLF content in any chunks to whole lines (without their CRLF)."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        lines = (self._partial + data).split(b"\r\n")
        self._partial = lines.pop()
        return lines

    def finish(self) -> list[bytes]:
        """The last line, when the content did not end with CRLF."""
        rest, self._partial = self._partial, b""
        return [rest] if rest else []


class DataLinePipe:
    """One message through ``stages`` (the processes, in chain order) for
    ``session``; the output, CRLF lines, goes to ``sink`` as it comes."""

    def __init__(
        self, session: int, stages: list[FilterProcess], sink: Callable[[bytes], None]
    ) -> None:
        self.session = session
        self.stages = stages
        self.sink = sink
        self.token = secrets.randbits(64)
        self._splitter = LineSplitter()
        self._done = trio.Event()
        self._failure: FilterFailed | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        """Open each stage's output and start the forwarding tasks in ``nursery``."""
        outputs = [stage.open_data(self.session) for stage in self.stages]
        for index, output in enumerate(outputs):
            following = self.stages[index + 1] if index + 1 < len(self.stages) else None
            nursery.start_soon(self._forward, output, following)

    async def _forward(
        self,
        output: trio.MemoryReceiveChannel[list[bytes | None]],
        following: FilterProcess | None,
    ) -> None:
        try:
            async with output:
                async for batch in output:
                    end = batch.index(None) if None in batch else len(batch)
                    lines = cast("list[bytes]", batch[:end])
                    if following is None:
                        if lines:
                            self.sink(b"".join([unescape(line) + b"\r\n" for line in lines]))
                        if end < len(batch):
                            self._done.set()
                            return
                    else:
                        if end < len(batch):
                            lines.append(b".")
                        await following.data_lines(self.session, self.token, lines)
                        if end < len(batch):
                            return
            # the channel closed without the final ".": the filter failed
            self._fail(FilterFailed("a filter stopped in the middle of the message"))
        except FilterFailed as exc:
            self._fail(exc)

    def _fail(self, exc: FilterFailed) -> None:
        if self._failure is None:
            self._failure = exc
        self._done.set()

    async def feed(self, data: bytes) -> None:
        """Content (CRLF lines, unescaped) to the first filter: the whole lines
        of ``data`` in one write."""
        lines = [escape(line) for line in self._splitter.feed(data)]
        await self.stages[0].data_lines(self.session, self.token, lines)

    async def finish(self) -> None:
        """End the message and wait for the last filter's output to be complete;
        FilterFailed if a filter failed on the way."""
        lines = [escape(line) for line in self._splitter.finish()]
        try:
            await self.stages[0].data_lines(self.session, self.token, [*lines, b"."])
        except FilterFailed as exc:
            self._fail(exc)
        await self._done.wait()
        self.close()
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Stop listening for this message's output (any stage)."""
        for stage in self.stages:
            stage.close_data(self.session)

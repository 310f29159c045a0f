"""Happy eyeballs (RFC 8305 §5): connect to the first of several addresses
that answers, without waiting for a dead one's full timeout first.

:func:`first_of` starts an attempt on the first candidate, and on the next
one ``delay`` seconds later or as soon as the previous attempt failed,
whichever comes first; the first attempt to succeed wins, the others are
cancelled (those that succeeded too late are handed to ``discard``).  An
attempt is any coroutine that yields a resource or raises :class:`OSError`
(the relay agent's takes its connection-limit tokens, then connects), so
the racing is tested here without sockets.  The candidates come in the
order to try them: :func:`~mta.relay.route.interleave` alternates the
families, so a broken IPv6 path costs ``delay``, not a connect timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import attrs
import trio

__all__ = ["DELAY", "Race", "first_of"]

DELAY = 0.25  # seconds, RFC 8305's recommended Connection Attempt Delay

T = TypeVar("T")


@attrs.define
class Race(Generic[T]):
    """How a race went: the winner (candidate and resource) if any, and the
    error of each candidate whose attempt failed; candidates whose attempt
    was cancelled are in neither."""

    winner: tuple[str, T] | None = None
    failures: dict[str, OSError] = attrs.Factory(dict)


async def first_of(
    candidates: Sequence[str],
    attempt: Callable[[str], Awaitable[T]],
    *,
    discard: Callable[[T], Awaitable[None]],
    delay: float = DELAY,
) -> Race[T]:
    """Race ``attempt(candidate)`` over ``candidates``, staggered by ``delay``;
    see the module docstring.  When cancelled, a resource already won is
    discarded before the cancellation goes on."""
    race: Race[T] = Race()

    async def run(candidate: str, failed: trio.Event, done: trio.CancelScope) -> None:
        try:
            got = await attempt(candidate)
        except OSError as exc:
            race.failures[candidate] = exc
            failed.set()
            return
        if race.winner is not None:
            with trio.CancelScope(shield=True):
                await discard(got)
            return
        race.winner = (candidate, got)
        done.cancel()

    try:
        async with trio.open_nursery() as nursery:
            for candidate in candidates:
                failed = trio.Event()
                nursery.start_soon(run, candidate, failed, nursery.cancel_scope)
                with trio.move_on_after(delay):
                    await failed.wait()
    except BaseException:
        if race.winner is not None:
            with trio.CancelScope(shield=True):
                await discard(race.winner[1])
        raise
    return race

"""Read deadlines of many sessions, checked by one task.

A session waits for its client several times per message; giving every wait
a cancel scope of its own (``trio.move_on_at``) costs more than the read.
Instead each session holds one :class:`Deadline` and one cancel scope for its
whole command loop: before a read it sets ``deadline.at`` (a float), after the
read it sets it back to infinity.  The :class:`Watchdog` task looks at every
registered deadline each ``tick`` seconds and cancels the scope of a session
whose deadline has passed; the session sees :class:`trio.Cancelled` and, with
:attr:`Deadline.expired` set, treats it as a timeout.  A deadline is thus
enforced at most one tick late.
"""

from __future__ import annotations

import math

import trio

__all__ = ["Deadline", "Watchdog", "tick_for"]

MAX_TICK = 1.0
MIN_TICK = 0.005


def tick_for(*timeouts: float) -> float:
    """A tick a twentieth of the shortest timeout, between 5 ms and one second."""
    return min(MAX_TICK, max(MIN_TICK, min(timeouts) / 20))


class Deadline:
    """When the wait in progress must end (infinity: no wait in progress)."""

    __slots__ = ("at", "expired", "scope")

    def __init__(self, scope: trio.CancelScope) -> None:
        self.at = math.inf
        self.expired = False
        self.scope = scope

    def expire(self) -> None:
        self.expired = True
        self.scope.cancel()


class Watchdog:
    """Cancels the scope of every registered :class:`Deadline` that has passed."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._deadlines: set[Deadline] = set()

    def __len__(self) -> int:
        return len(self._deadlines)

    def add(self, deadline: Deadline) -> None:
        self._deadlines.add(deadline)

    def discard(self, deadline: Deadline) -> None:
        self._deadlines.discard(deadline)

    def check(self, now: float) -> int:
        """Expire the deadlines passed at ``now``; return how many."""
        due = [d for d in self._deadlines if d.at <= now]
        for deadline in due:
            self._deadlines.discard(deadline)
            deadline.expire()
        return len(due)

    async def run(self) -> None:
        """Check every ``tick`` seconds, forever."""
        while True:
            await trio.sleep(self.tick)
            self.check(trio.current_time())

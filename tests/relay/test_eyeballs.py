"""Happy eyeballs racing, with attempts faked on trio's virtual clock (no sockets)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import trio
import trio.testing

from mta.relay.eyeballs import first_of


class Attempts:
    """``plan[candidate]`` = (seconds, succeeds); records starts and discards."""

    def __init__(self, plan: Mapping[str, tuple[float, bool]], *, shield: bool = False) -> None:
        self.plan = plan
        self.shield = shield
        self.started: list[tuple[str, float]] = []
        self.discarded: list[str] = []

    async def __call__(self, candidate: str) -> str:
        self.started.append((candidate, trio.current_time()))
        seconds, succeeds = self.plan[candidate]
        with trio.CancelScope(shield=self.shield):
            await trio.sleep(seconds)
        if not succeeds:
            raise ConnectionRefusedError(f"{candidate} refused")
        return f"stream to {candidate}"

    async def discard(self, resource: str) -> None:
        self.discarded.append(resource)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_quick_first_candidate_is_the_only_attempt(clock: trio.testing.MockClock) -> None:
    attempts = Attempts({"a": (0.05, True), "b": (0.01, True)})
    race = await first_of(["a", "b"], attempts, discard=attempts.discard, delay=0.25)
    assert race.winner == ("a", "stream to a")
    assert [c for c, _ in attempts.started] == ["a"]
    assert race.failures == {}


async def test_a_silent_candidate_lets_the_next_start_after_the_delay(
    clock: trio.testing.MockClock,
) -> None:
    attempts = Attempts({"v6": (300.0, True), "v4": (0.01, True)})
    start = trio.current_time()
    race = await first_of(["v6", "v4"], attempts, discard=attempts.discard, delay=0.25)
    assert race.winner == ("v4", "stream to v4")
    assert attempts.started[1][1] - start == pytest.approx(0.25)
    assert trio.current_time() - start == pytest.approx(0.26)  # not the 300 s
    assert race.failures == {}  # the silent one was cancelled, not failed


async def test_a_failure_starts_the_next_candidate_at_once(clock: trio.testing.MockClock) -> None:
    attempts = Attempts({"a": (0.01, False), "b": (0.01, True)})
    start = trio.current_time()
    race = await first_of(["a", "b"], attempts, discard=attempts.discard, delay=10)
    assert race.winner == ("b", "stream to b")
    assert attempts.started[1][1] - start == pytest.approx(0.01)
    assert isinstance(race.failures["a"], ConnectionRefusedError)


async def test_every_candidate_failing(clock: trio.testing.MockClock) -> None:
    attempts = Attempts({"a": (0.01, False), "b": (1.0, False), "c": (0.5, False)})
    race = await first_of(["a", "b", "c"], attempts, discard=attempts.discard, delay=0.25)
    assert race.winner is None
    assert set(race.failures) == {"a", "b", "c"}


async def test_a_late_success_is_discarded(clock: trio.testing.MockClock) -> None:
    # the first attempt cannot be interrupted (shielded) and succeeds after the winner
    attempts = Attempts({"a": (0.3, True), "b": (0.01, True)}, shield=True)
    race = await first_of(["a", "b"], attempts, discard=attempts.discard, delay=0.25)
    assert race.winner == ("b", "stream to b")
    assert attempts.discarded == ["stream to a"]


async def test_no_candidates() -> None:
    attempts = Attempts({})
    race = await first_of([], attempts, discard=attempts.discard)
    assert race.winner is None
    assert race.failures == {}


async def test_cancelled_from_outside_discards_the_winner(
    clock: trio.testing.MockClock,
) -> None:
    # "b" wins at 0.26 s; the shielded "a" keeps the race open until 0.3 s,
    # and the caller is cancelled at 0.28 s, before the race returns
    attempts = Attempts({"a": (0.3, True), "b": (0.01, True)}, shield=True)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_later() -> None:
                await trio.sleep(0.28)
                scope.cancel()

            nursery.start_soon(cancel_later)
            await first_of(["a", "b"], attempts, discard=attempts.discard, delay=0.25)
            pytest.fail("the race should have been cancelled")
    assert scope.cancelled_caught
    assert sorted(attempts.discarded) == ["stream to a", "stream to b"]

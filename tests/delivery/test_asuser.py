"""File deliveries in a child process of the target user (the daemon runs as root)."""

from __future__ import annotations

import os
import pathlib
import time

import pytest

from mta.delivery.asuser import run_as_user
from mta.delivery.result import Outcome
from mta.errors import PermanentFailure, TemporaryFailure
from mta.tables.values import UserInfo

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")

NOBODY = UserInfo("nobody", 65534, 65534, "/nonexistent")


async def test_the_work_runs_as_the_user(shared: pathlib.Path) -> None:
    target = shared / "out"

    def work() -> None:
        target.write_text(f"{os.getuid()} {os.getgid()} {os.getgroups()} {os.getcwd()}")

    result = await run_as_user(NOBODY, work)
    assert result.outcome is Outcome.OK
    assert target.read_text() == "65534 65534 [65534] /"
    assert target.stat().st_uid == 65534


async def test_supplementary_groups_are_added_never_root(shared: pathlib.Path) -> None:
    target = shared / "groups"

    def work() -> None:
        target.write_text(" ".join(str(g) for g in sorted(os.getgroups())))

    result = await run_as_user(NOBODY, work, groups=(0, 8, 65534))
    assert result.outcome is Outcome.OK
    assert target.read_text() == "8 65534"


async def test_failures_keep_their_class_and_reason() -> None:
    def permanent() -> None:
        raise PermanentFailure("no such folder")

    def temporary() -> None:
        raise TemporaryFailure("disk full")

    def crash() -> None:
        raise RuntimeError("bug")

    def not_root() -> None:  # the user cannot write where root can
        pathlib.Path("/root/mta-should-not-exist").write_text("x")

    result = await run_as_user(NOBODY, permanent)
    assert result.outcome is Outcome.PERMFAIL and result.text == "Error (no such folder)"
    result = await run_as_user(NOBODY, temporary)
    assert result.outcome is Outcome.TEMPFAIL and result.text == "Error (disk full)"
    assert (await run_as_user(NOBODY, crash)).outcome is Outcome.TEMPFAIL
    assert (await run_as_user(NOBODY, not_root)).outcome is Outcome.TEMPFAIL
    assert not os.path.exists("/root/mta-should-not-exist")


async def test_root_is_refused_and_a_hung_child_is_killed() -> None:
    root = UserInfo("root", 0, 0, "/root")
    assert (await run_as_user(root, lambda: None)).outcome is Outcome.PERMFAIL

    def hang() -> None:
        time.sleep(30)

    started = time.monotonic()
    result = await run_as_user(NOBODY, hang, time_limit=0.3)
    assert result.outcome is Outcome.TEMPFAIL and "timeout" in result.text
    assert time.monotonic() - started < 10

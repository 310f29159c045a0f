"""File deliveries in a worker thread with the user's file-system identity."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest

from mta import threads
from mta.delivery import fsidentity
from mta.delivery.fsidentity import run_with_fs_identity
from mta.delivery.maildir import deliver_maildir
from mta.delivery.result import Outcome
from mta.errors import PermanentFailure, TemporaryFailure
from mta.tables.values import UserInfo

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or fsidentity._LIBC is None, reason="needs root on Linux"
)

NOBODY = UserInfo("nobody", 65534, 65534, "/nonexistent")


@pytest.fixture(autouse=True)
def no_groups() -> Iterator[None]:
    """As the daemon runs: root without supplementary groups."""
    saved = os.getgroups()
    os.setgroups([])
    yield
    os.setgroups(saved)


def fs_ids() -> tuple[int, int]:
    """This thread's file-system uid and gid, as the kernel sees them."""
    status = pathlib.Path("/proc/thread-self/status").read_text().splitlines()
    uid = next(line for line in status if line.startswith("Uid:")).split()[4]
    gid = next(line for line in status if line.startswith("Gid:")).split()[4]
    return int(uid), int(gid)


async def test_files_are_the_users_and_the_thread_is_root_again(shared: pathlib.Path) -> None:
    seen: list[tuple[int, int]] = []

    def work() -> None:
        seen.append(fs_ids())
        deliver_maildir(str(shared / "box"), [b"Subject: x\r\n\r\nbody\r\n"])

    assert fsidentity.available()
    assert (await run_with_fs_identity(NOBODY, work)).outcome is Outcome.OK
    assert seen == [(65534, 65534)]
    (message,) = (shared / "box" / "new").iterdir()
    for path in (shared / "box", shared / "box" / "new", message):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    # every worker thread is root again afterwards
    for _ in range(threads.MAX_WORKERS):
        assert await threads.run_sync(fs_ids) == (0, 0)


async def test_the_user_gets_only_the_users_access(shared: pathlib.Path) -> None:
    private = shared / "root-only"
    private.mkdir(mode=0o700)

    def work() -> None:
        deliver_maildir(str(private / "box"), [b"\r\n"])

    result = await run_with_fs_identity(NOBODY, work)
    assert result.outcome is Outcome.TEMPFAIL
    assert "Permission denied" in result.text
    assert not (private / "box").exists()


async def test_outcomes_and_refusals() -> None:
    def permanent() -> None:
        raise PermanentFailure("no\nsuch")

    def temporary() -> None:
        raise TemporaryFailure("later")

    result = await run_with_fs_identity(NOBODY, permanent)
    assert (result.outcome, result.text) == (Outcome.PERMFAIL, "Error (no\\nsuch)")
    result = await run_with_fs_identity(NOBODY, temporary)
    assert (result.outcome, result.text) == (Outcome.TEMPFAIL, "Error (later)")
    root = UserInfo("root", 0, 0, "/root")
    result = await run_with_fs_identity(root, temporary)
    assert result.outcome is Outcome.PERMFAIL and "not allowed" in result.text


async def test_not_available_with_supplementary_groups() -> None:
    os.setgroups([4])
    assert not fsidentity.available()
    result = await run_with_fs_identity(NOBODY, lambda: None)
    assert result.outcome is Outcome.TEMPFAIL


def test_drop_supplementary_groups() -> None:
    os.setgroups([4, 5])
    fsidentity.drop_supplementary_groups()
    assert os.getgroups() == []

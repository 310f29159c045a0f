"""Running a file delivery as its user, when the daemon runs as root.

OpenSMTPD forks ``mail.maildir`` / ``mail.local`` as the target user; we fork
the daemon itself: the child drops to the user (supplementary groups, gid,
uid, in that order, then the home directory as working directory, in a
session of its own; the supplementary groups are the user's group and any the
caller adds, such as the mail spool's group for a system mailbox), runs the
blocking delivery function, and exits with 0, 75 (temporary failure) or 73
(permanent failure), the reason written to a pipe the parent reads.  The child
only calls the function and ``os._exit``: it never returns into the event
loop, logs nothing and imports nothing, so the parent's threads and locks do
not matter to it.  Past the time limit the child is killed and the delivery is
a temporary failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import trio

from mta.delivery.result import Result
from mta.errors import PermanentFailure
from mta.log import visible
from mta.tables.values import UserInfo

__all__ = ["EX_CANTCREAT", "EX_TEMPFAIL", "TIME_LIMIT", "run_as_user"]

EX_TEMPFAIL = 75
EX_CANTCREAT = 73
TIME_LIMIT = 300.0
_REASON_MAX = 400


def _child(
    user: UserInfo, groups: tuple[int, ...], work: Callable[[], None], reason_fd: int
) -> None:
    status = EX_TEMPFAIL
    try:
        os.setsid()
        os.setgroups([user.gid, *(g for g in groups if g not in (0, user.gid))])
        os.setgid(user.gid)
        os.setuid(user.uid)
        try:
            os.chdir(user.directory)
        except OSError:
            os.chdir("/")
        try:
            work()
            status = 0
        except PermanentFailure as exc:
            status = EX_CANTCREAT
            os.write(reason_fd, str(exc).encode("utf-8", "replace")[:_REASON_MAX])
        except BaseException as exc:  # temporary failures, OSError, anything else
            os.write(reason_fd, str(exc).encode("utf-8", "replace")[:_REASON_MAX])
    except BaseException:  # could not even drop privileges: never deliver as root
        status = EX_TEMPFAIL
    finally:
        os._exit(status)


async def run_as_user(
    user: UserInfo,
    work: Callable[[], None],
    *,
    groups: tuple[int, ...] = (),
    time_limit: float = TIME_LIMIT,
) -> Result:
    """Run ``work()`` in a child process as ``user``; its outcome as a Result.

    ``groups``: supplementary groups besides the user's own (group 0 never)."""
    if user.uid == 0:
        return Result.permfail(f"Error (MDA not allowed to deliver to: {user.username})")
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return Result.tempfail(f"Error (fork: {exc.strerror})")
    if pid == 0:
        os.close(read_fd)
        _child(user, groups, work, write_fd)  # never returns
    os.close(write_fd)
    reason = b""
    timed_out = False
    async with trio.lowlevel.FdStream(read_fd) as pipe:
        with trio.move_on_after(time_limit) as scope:
            while data := await pipe.receive_some(4096):
                reason += data[: _REASON_MAX - len(reason)]
        if scope.cancelled_caught:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _pid, status = await trio.to_thread.run_sync(os.waitpid, pid, 0)
    text = visible(reason.decode("utf-8", "replace").strip(), _REASON_MAX)
    if timed_out:
        return Result.tempfail("Error (terminated; timeout)")
    if os.WIFSIGNALED(status):
        return Result.tempfail(f"Error (terminated; signal {os.WTERMSIG(status)})")
    code = os.WEXITSTATUS(status)
    if code == 0:
        return Result.ok()
    if code == EX_CANTCREAT:
        return Result.permfail(f"Error ({text or 'delivery failed'})")
    return Result.tempfail(f"Error ({text or 'delivery failed'})")

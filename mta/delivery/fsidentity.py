"""File deliveries as the user without a process per delivery (Linux).

On Linux a thread's file-system uid and gid (``setfsuid(2)``, ``setfsgid(2)``)
belong to that thread alone, and the kernel decides every file access and
every new file's owner by them: a root thread that takes the user's
file-system identity also loses, for that thread only, the capabilities that
bypass file permissions (``CAP_DAC_OVERRIDE``, ``CAP_FOWNER``, ``CAP_CHOWN``...),
and gets them back when it returns to uid 0.  So a maildir or mbox delivery
run this way opens, creates and links exactly what the user could, with the
user's ownership, as the forked child of :mod:`mta.delivery.asuser` does,
at the cost of two system calls instead of a fork of the whole daemon.

The supplementary groups are not per thread through the C library, so this
path is only used when the daemon has none (:func:`drop_supplementary_groups`
at start, as root): the delivery then has the user's uid and primary group
and nothing else.  A delivery that needs another group (the system mailbox's
dot lock in a group-writable ``/var/mail``) forks as before.

Unlike a child process, a thread cannot be killed: file deliveries to local
disks do not hang, so there is no time limit here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable

from mta import threads
from mta.delivery.result import Result
from mta.errors import PermanentFailure, TemporaryFailure
from mta.log import get_logger, visible
from mta.tables.values import UserInfo

__all__ = ["available", "deliver_as_user", "drop_supplementary_groups", "run_with_fs_identity"]

log = get_logger("delivery")

_REASON_MAX = 400
_QUERY = ctypes.c_uint(0xFFFFFFFF)  # an invalid id: changes nothing, returns the current one


def _load_libc() -> ctypes.PyDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # PyDLL: the calls keep the interpreter lock.  setfsuid/setfsgid return at
        # once; a CDLL call would release and take back the lock around each of the
        # eight calls of a delivery, and every time a busy event loop could take it
        # (measured: a handoff to the loop thread and back each time)
        libc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    if not hasattr(libc, "setfsuid") or not hasattr(libc, "setfsgid"):
        return None
    return libc


_LIBC = _load_libc()


def drop_supplementary_groups() -> None:
    """As root: leave the daemon with no supplementary groups (root needs
    none: it bypasses file permissions), so that a thread with a user's
    file-system identity carries no group of root's."""
    if os.geteuid() == 0 and os.getgroups():
        try:
            os.setgroups([])
        except OSError as exc:
            log.warning("delivery: cannot drop supplementary groups: %s", exc.strerror)


def available() -> bool:
    """Whether deliveries may run in threads with the user's file-system identity."""
    return _LIBC is not None and os.geteuid() == 0 and not os.getgroups()


def _current() -> tuple[int, int]:
    assert _LIBC is not None
    uid = _LIBC.setfsuid(_QUERY) & 0xFFFFFFFF
    gid = _LIBC.setfsgid(_QUERY) & 0xFFFFFFFF
    return uid, gid


def _set_identity(uid: int, gid: int) -> None:
    assert _LIBC is not None
    _LIBC.setfsgid(ctypes.c_uint(gid))
    _LIBC.setfsuid(ctypes.c_uint(uid))
    if _current() != (uid, gid):
        raise TemporaryFailure("cannot take the user's file-system identity")


def _restore_root() -> None:
    assert _LIBC is not None
    _LIBC.setfsuid(ctypes.c_uint(0))
    _LIBC.setfsgid(ctypes.c_uint(0))
    if _current() != (0, 0):
        # a worker thread left with a user's identity would do the daemon's
        # next file work as that user: stop everything instead
        log.critical("delivery: cannot restore the worker thread's identity; exiting")
        os._exit(70)


def _as_user(user: UserInfo, work: Callable[[], None]) -> None:
    _set_identity(user.uid, user.gid)
    try:
        work()
    finally:
        _restore_root()


async def run_with_fs_identity(user: UserInfo, work: Callable[[], None]) -> Result:
    """Run ``work()`` in a worker thread with ``user``'s file-system identity;
    its outcome as a Result (the same as :func:`~mta.delivery.asuser.run_as_user`'s)."""
    refused = _refused(user)
    if refused is not None:
        return refused
    return await threads.run_sync(_outcome, user, work)


def deliver_as_user(user: UserInfo, work: Callable[[], None]) -> Result:
    """:func:`run_with_fs_identity` in the calling worker thread (blocking): for
    a delivery that does more in the same trip to the thread."""
    refused = _refused(user)
    if refused is not None:
        return refused
    return _outcome(user, work)


def _outcome(user: UserInfo, work: Callable[[], None]) -> Result:
    try:
        _as_user(user, work)
    except PermanentFailure as exc:
        return Result.permfail(f"Error ({_reason(exc) or 'delivery failed'})")
    except Exception as exc:  # temporary failures, OSError, anything else
        return Result.tempfail(f"Error ({_reason(exc) or 'delivery failed'})")
    return Result.ok()


def _refused(user: UserInfo) -> Result | None:
    if user.uid == 0:
        return Result.permfail(f"Error (MDA not allowed to deliver to: {user.username})")
    if not available():
        return Result.tempfail("Error (per-thread file-system identity is not available)")
    return None


def _reason(exc: BaseException) -> str:
    return visible(str(exc).strip(), _REASON_MAX)

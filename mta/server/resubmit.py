"""Re-submitting one file of the offline drop (:mod:`mta.server.offline`).

:func:`resubmit_file` submits a file ``mta-sendmail`` left in
``<spool>/offline/`` (:mod:`mta.enqueue.offline`) through the local enqueue
socket, as ``mta-sendmail`` would have for its owner: the envelope it
stored, the message it prepared.

Nothing is lost: a file is deleted only after the server committed the
message for every recipient.  When only some were accepted the file is
rewritten (atomically) with the others; a file that cannot be read, fails its
checks, or whose submission fails is kept and logged, and tried again at the
next start.  As OpenSMTPD, only regular files directly in the directory with a
single link are taken, opened without following symbolic links.
"""

from __future__ import annotations

import enum
import os
import pwd
import stat
from typing import IO

import attrs
import trio

from mta.enqueue.offline import OfflineFile, read_offline, write_offline
from mta.enqueue.submit import ClientTimeouts, Submission, SubmitResult, submit
from mta.errors import SpoolCorrupt
from mta.log import get_logger, visible

__all__ = ["Resubmitted", "resubmit_file"]

log = get_logger("smtpd")


class Resubmitted(enum.Enum):
    """What became of one offline file."""

    DONE = "done"  # every recipient accepted: the file is gone
    NARROWED = "narrowed"  # some accepted: the file now holds the others
    KEPT = "kept"  # nothing accepted, or the file is not usable: left as it was


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _open(path: str) -> tuple[IO[bytes], os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpoolCorrupt("not a regular file")
        if info.st_nlink != 1:
            raise SpoolCorrupt("has several links")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info
    except BaseException:
        os.close(fd)
        raise


def _remove(directory: str, name: str) -> None:
    os.unlink(os.path.join(directory, name))
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _recipients(result: SubmitResult) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*(rcpt for rcpt, _ in result.refused), *result.pending]))


async def resubmit_file(
    directory: str, name: str, socket_path: str, *, timeouts: ClientTimeouts | None = None
) -> Resubmitted:
    """Submit the offline file ``directory/name`` through ``socket_path``."""
    path = os.path.join(directory, name)
    try:
        file, info = await trio.to_thread.run_sync(_open, path)
    except (OSError, SpoolCorrupt) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning("offline: %s: cannot open: %s; kept", visible(name), text)
        return Resubmitted.KEPT
    with file:
        owner = _owner(info.st_uid)
        try:
            checked: OfflineFile = await trio.to_thread.run_sync(read_offline, file)
        except (OSError, SpoolCorrupt) as exc:
            log.warning("offline: %s (owner %s): %s; kept", visible(name), owner, exc)
            return Resubmitted.KEPT
        envelope = checked.envelope
        submission = Submission(
            sender=envelope.sender,
            recipients=envelope.recipients,
            eight_bit=envelope.eight_bit,
            dsn_ret=envelope.dsn_ret,
            dsn_envid=envelope.dsn_envid,
            dsn_notify=envelope.dsn_notify,
        )
        content = checked.content(file)
        result = await submit(socket_path, submission, content, partial=True, timeouts=timeouts)
        sender = visible(envelope.sender)
        if result.complete:
            try:
                await trio.to_thread.run_sync(_remove, directory, name)
            except OSError as exc:
                log.warning(
                    "offline: %s submitted but cannot be removed (%s): it will be submitted again",
                    visible(name),
                    exc.strerror,
                )
            log.info(
                "offline: enqueued %s owner=%s from=<%s> rcpts=%d",
                visible(name),
                owner,
                sender,
                len(result.delivered),
            )
            return Resubmitted.DONE
        problem = visible(result.problem or "not submitted")
        for rcpt, reply in result.refused:
            log.warning(
                "offline: %s owner=%s from=<%s> to=<%s> refused: %s",
                visible(name),
                owner,
                sender,
                visible(rcpt),
                visible(reply.text),
            )
        if not result.delivered:
            log.warning(
                "offline: %s owner=%s from=<%s>: %s; kept", visible(name), owner, sender, problem
            )
            return Resubmitted.KEPT
        rest = attrs.evolve(envelope, recipients=_recipients(result))
        try:
            await trio.to_thread.run_sync(
                lambda: write_offline(directory, rest, content, name=name)
            )
        except OSError as exc:
            log.warning(
                "offline: %s: accepted for %d recipient(s) but cannot be rewritten (%s); "
                "kept whole, they may get it twice",
                visible(name),
                len(result.delivered),
                exc.strerror,
            )
            return Resubmitted.KEPT
        log.warning(
            "offline: %s owner=%s from=<%s>: enqueued for %d recipient(s), kept for %d: %s",
            visible(name),
            owner,
            sender,
            len(result.delivered),
            len(rest.recipients),
            problem,
        )
        return Resubmitted.NARROWED

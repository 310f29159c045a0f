"""Re-submitting the offline drop once the daemon listens (OpenSMTPD's ``offline_scan``).

``mta-sendmail`` leaves a message in ``<spool>/offline/`` when the daemon is
down (:mod:`mta.enqueue.offline`).  About a second after the listeners are up,
:func:`run_offline_scan` goes through that directory in name (creation) order
and submits each file through the local enqueue socket, as ``mta-sendmail``
would have for its owner: the envelope it stored, the message it prepared.
A second pass a little later takes the files written while the daemon was
starting (after the first pass listed the directory).

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

from mta.enqueue.offline import OfflineFile, is_offline_name, read_offline, write_offline
from mta.enqueue.submit import ClientTimeouts, Submission, SubmitResult, submit
from mta.errors import SpoolCorrupt
from mta.log import get_logger, visible
from mta.spool.paths import SpoolPaths

__all__ = ["Resubmitted", "resubmit_file", "run_offline_scan"]

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


async def _scan(
    directory: str, socket_path: str, timeouts: ClientTimeouts, skip: frozenset[str]
) -> set[str] | None:
    """One pass over the directory (names in ``skip`` left alone); the names seen,
    or None when the directory cannot be read."""
    try:
        names = sorted(await trio.to_thread.run_sync(os.listdir, directory))
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("offline: cannot read %s: %s", directory, exc.strerror)
        return None
    counts = dict.fromkeys(Resubmitted, 0)
    for name in names:
        if name in skip:
            continue
        if not is_offline_name(name):
            if not name.startswith("."):
                log.warning("offline: %s: not an offline message; left alone", visible(name))
            continue
        try:
            outcome = await resubmit_file(directory, name, socket_path, timeouts=timeouts)
        except Exception:  # one bad file must never take the daemon down
            log.exception("offline: %s: re-submission failed; kept", visible(name))
            outcome = Resubmitted.KEPT
        counts[outcome] += 1
    if any(counts.values()):
        log.info(
            "offline: scan done, %d enqueued, %d partly, %d kept",
            counts[Resubmitted.DONE],
            counts[Resubmitted.NARROWED],
            counts[Resubmitted.KEPT],
        )
    return set(names)


async def run_offline_scan(
    spool_dir: str, socket_path: str, *, delay: float = 1.0, settle: float | None = 30.0
) -> None:
    """After ``delay`` seconds, re-submit every file of ``<spool_dir>/offline/``
    through the local socket at ``socket_path``; see the module docstring.

    ``settle`` seconds later, one more pass takes the files that appeared since
    (written by an ``mta-sendmail`` that found the daemon down just before it
    started listening); None: no second pass."""
    await trio.sleep(delay)
    directory = SpoolPaths(spool_dir).offline
    try:
        timeouts = ClientTimeouts.from_env()
    except ValueError:
        timeouts = ClientTimeouts()
    seen = await _scan(directory, socket_path, timeouts, frozenset())
    if seen is None or settle is None:
        return
    await trio.sleep(settle)
    await _scan(directory, socket_path, timeouts, frozenset(seen))
